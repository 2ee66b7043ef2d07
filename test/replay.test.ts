import { beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type History } from '@temporalio/worker';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The workflow sources themselves, not the bundle in dist/ that the controller prefers when it exists. */
const WORKFLOWS_SOURCE = path.join(root, 'workflows', 'index.ts');
const HISTORIES = path.join(root, 'test', 'fixtures', 'histories');

// npm installs a protobufjs 8 under each Temporal package (grpc's protobufjs 7 holds the top level),
// and the SDK's historyFromJSON then fails with "type must be a Type": parse with the copy that
// @temporalio/proto, and so the replayer, uses.
const fromWorker = createRequire(createRequire(import.meta.url).resolve('@temporalio/worker'));
const protoJson = createRequire(fromWorker.resolve('@temporalio/proto'))('protobufjs/ext/protojson') as {
  fromJson: (type: unknown, json: unknown, options: { ignoreUnknownFields: boolean }) => History;
};
const protoRoot = fromWorker('@temporalio/proto/lib/patch-protobuf-root') as {
  patchProtobufRoot: (root: unknown) => { lookupType: (name: string) => unknown };
};
const historyType = protoRoot
  .patchProtobufRoot(fromWorker('@temporalio/proto'))
  .lookupType('temporal.api.history.v1.History');

/** A history as `temporal workflow show --output json` prints it. */
function loadHistory(file: string): History {
  const json: unknown = JSON.parse(readFileSync(path.join(HISTORIES, file), 'utf8'));
  return protoJson.fromJson(historyType, json, { ignoreUnknownFields: true });
}

const files = readdirSync(HISTORIES)
  .filter((f) => f.endsWith('.json'))
  .sort();
let code: string;

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  ({ code } = await bundleWorkflowCode({
    workflowsPath: WORKFLOWS_SOURCE,
    logger: new DefaultLogger('WARN'),
  }));
});

describe('recorded rollout histories', () => {
  it('are there to replay', () => expect(files.length).toBeGreaterThan(0));

  // The SDK evaluates the bundle's modules anew for every workflow run: zod's and its schemas' too, if
  // a workflow imported them (through schemas/operators.ts they did, 1 MB of the bundle).
  it('come from a bundle without zod', () => expect(code).not.toContain('node_modules/zod/'));

  it.each(files)('%s replays against the current workflow code without non-determinism', async (file) => {
    await Worker.runReplayHistory({ workflowBundle: { code } }, loadHistory(file), file.replace(/\.json$/, ''));
  });
});
