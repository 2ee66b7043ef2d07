import { readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUCKETS, STREAMS } from '../schemas/names.js';
import { loadConfig, natsNodes, readStackFile, type NatsNode, type RefitConfig } from '../workers/config.js';
import { CLUSTER_SETTINGS, natsConfigFile } from '../workers/dev/credentials.js';
import { controllerIdentity, freePorts, stackStatus, startStack, stopStack } from '../workers/dev/stack.js';
import { connectNats } from '../workers/nats.js';
import { tempDir } from './helpers/controller.js';

/**
 * `refit dev up --nats-cluster 3` in a home of this file's own (its own Temporal dev server too), a
 * rollout over a simulated fleet, and the node leading the most streams killed in the middle of it.
 */
const home = tempDir('cluster');
let config: RefitConfig;
let nodes: NatsNode[];

beforeAll(async () => {
  const [temporalPort, temporalUiPort, ...p] = await freePorts(11);
  const natsNodePorts = [0, 1, 2].map((i) => ({
    nats: p[i * 3] as number,
    monitor: p[i * 3 + 1] as number,
    route: p[i * 3 + 2] as number,
  }));
  await startStack({ home, temporalPort, temporalUiPort, natsCluster: 3, natsNodePorts });
  config = loadConfig({ home, taskQueue: `refit-cluster-${randomBytes(3).toString('hex')}` }, {});
  nodes = natsNodes(readStackFile(home) ?? expect.fail('no stack.json'));
});

afterAll(async () => {
  await stopStack(home);
  rmSync(home, { recursive: true, force: true });
});

/** A setting of deploy/nats/cluster.conf, as written there. */
function composeSetting(text: string, key: string): string | undefined {
  return new RegExp(`^\\s*${key}:\\s*"?([^"\\s]+)"?`, 'm').exec(text)?.[1];
}

describe('refit dev up --nats-cluster 3', () => {
  it('runs three clustered nodes with the compose cluster settings, every URL recorded', async () => {
    expect(config.natsUrl.split(',')).toEqual(nodes.map((n) => n.url));
    expect(config.natsReplicas).toBe(3);
    const status = await stackStatus(home);
    expect(status.healthy).toBe(true);
    expect(status.nats?.nodes.map((n) => [n.name, n.answering])).toEqual([
      ['nats-1', true],
      ['nats-2', true],
      ['nats-3', true],
    ]);

    const compose = readFileSync('deploy/nats/cluster.conf', 'utf8');
    const fromCompose = {
      name: composeSetting(compose, 'name'),
      maxPayload: composeSetting(compose, 'max_payload'),
      lameDuckDuration: composeSetting(compose, 'lame_duck_duration'),
      lameDuckGracePeriod: composeSetting(compose, 'lame_duck_grace_period'),
      maxFileStore: composeSetting(compose, 'max_file_store'),
      maxMemoryStore: composeSetting(compose, 'max_memory_store'),
    };
    expect(fromCompose).toEqual(CLUSTER_SETTINGS);
    const configs = [1, 2, 3].map((n) => readFileSync(natsConfigFile(home, n), 'utf8'));
    for (const text of configs) {
      expect(text).toContain('no_advertise: true');
      expect(text).toContain('include "users.conf"');
      expect(text).toContain(`max_payload: ${CLUSTER_SETTINGS.maxPayload}`);
    }
    // Distinct stores, one route list.
    expect(new Set(configs.map((t) => /store_dir: "([^"]+)"/.exec(t)?.[1])).size).toBe(3);
    expect(new Set(configs.map((t) => /routes: (\[.*\])/.exec(t)?.[1])).size).toBe(1);

    const nc = await connectNats(controllerIdentity(home, config.natsUrl));
    try {
      const jsm = await jetstreamManager(nc);
      for (const name of [STREAMS.commands, STREAMS.audit, ...Object.values(BUCKETS).map((b) => `KV_${b}`)]) {
        const info = await jsm.streams.info(name);
        expect([name, info.config.num_replicas, info.cluster?.replicas?.length]).toEqual([name, 3, 2]);
      }
    } finally {
      await nc.close();
    }
  });
});
