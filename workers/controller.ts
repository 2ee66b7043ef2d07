import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createControllerActivities } from '../activities/controller/index.js';
import { BucketFollower } from '../activities/controller/bucket-follower.js';
import { BUCKETS, IDENTITIES } from '../schemas/names.js';
import { CommandStatus } from '../schemas/command.js';
import { HostPresence } from '../schemas/host.js';
import { credsFile, type RefitConfig } from './config.js';
import type { Logger } from './log.js';
import { ensureHostConsumer, ensureMessaging } from './messaging.js';
import { connectNats } from './nats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fromDist = path.basename(path.dirname(here)) === 'dist';
const root = fromDist ? path.resolve(here, '../..') : path.resolve(here, '..');
/** The workflows' entry: compiled JS when running from dist/, the TypeScript source under vitest. */
export const WORKFLOWS_PATH = fromDist
  ? path.join(root, 'dist', 'workflows', 'index.js')
  : path.join(root, 'workflows', 'index.ts');
/** Bundled by `npm run build`, so a worker starts without running webpack. */
export const WORKFLOW_BUNDLE = path.join(root, 'dist', 'workflow-bundle.js');

export interface ControllerWorker {
  worker: Worker;
  nc: NatsConnection;
  /** Resolves when the worker has stopped. */
  running: Promise<void>;
  shutdown(): Promise<void>;
}

let runtimeInstalled = false;

/** The controller: runs the workflows and the activities that reach hosts through NATS. */
export async function startControllerWorker(
  config: RefitConfig,
  log: Logger,
  opts: { maxConcurrentActivities?: number } = {},
): Promise<ControllerWorker> {
  if (!runtimeInstalled) {
    // Step failures are logged by refit itself; the SDK's own warnings would repeat each one in full.
    Runtime.install({
      logger: new DefaultLogger((process.env.REFIT_TEMPORAL_LOG_LEVEL as 'WARN' | undefined) ?? 'ERROR'),
    });
    runtimeInstalled = true;
  }
  const nc = await connectNats({
    url: config.natsUrl,
    credsFile: config.natsCreds ?? credsFile(config.home, IDENTITIES.controller),
    identity: IDENTITIES.controller,
  });
  await ensureMessaging(nc, config.natsReplicas);
  const kvm = new Kvm(nc);
  const results = await BucketFollower.start(await kvm.open(BUCKETS.results), CommandStatus, { keepAll: false, log });
  const presence = await BucketFollower.start(await kvm.open(BUCKETS.hosts), HostPresence, { keepAll: true, log });
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  const worker = await Worker.create({
    connection,
    namespace: config.temporalNamespace,
    taskQueue: config.taskQueue,
    ...(existsSync(WORKFLOW_BUNDLE)
      ? { workflowBundle: { codePath: WORKFLOW_BUNDLE } }
      : { workflowsPath: WORKFLOWS_PATH }),
    activities: createControllerActivities({
      nc,
      results,
      presence,
      leases: await kvm.open(BUCKETS.leases),
      ensureHostConsumer: (hostId) => ensureHostConsumer(nc, hostId),
      log,
    }),
    // Dispatch activities mostly wait on hosts; one per host in flight.
    maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivities ?? 2_000,
  });
  log.info(
    { taskQueue: config.taskQueue, temporal: config.temporalAddress, nats: config.natsUrl },
    'controller worker started',
  );
  const running = worker
    .run()
    .catch((err: unknown) => {
      log.error({ err }, 'controller worker stopped with an error');
      throw err;
    })
    .finally(async () => {
      results.stop();
      presence.stop();
      await nc.drain().catch(() => undefined);
      await connection.close().catch(() => undefined);
    });
  return {
    worker,
    nc,
    running,
    async shutdown() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
    },
  };
}
