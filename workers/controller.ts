import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createControllerActivities } from '../activities/controller/index.js';
import { BucketFollower } from '../activities/controller/bucket-follower.js';
import { bucketKeys } from '../activities/controller/bucket-keys.js';
import { BUCKETS, IDENTITIES } from '../schemas/names.js';
import { CommandStatus } from '../schemas/command.js';
import { HostPresence } from '../schemas/host.js';
import { credsFile, temporalTlsOptions, type RefitConfig } from './config.js';
import type { Logger } from './log.js';
import { ensureHostConsumer, ensureMessaging } from './messaging.js';
import { connectNatsWithRetry } from './nats.js';
import { connectPolicy, connectWithRetry, type ConnectPolicy, type RetryOptions } from './connect-retry.js';
import { openMetricsEndpoint, stepMetricsOn, type MetricsEndpoint, type MetricsSetting } from './metrics/endpoint.js';
import {
  appendRolloutGauges,
  appendSdkMetrics,
  checkTemporal,
  freeLoopbackPort,
} from './metrics/controller-metrics.js';

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
  /** Where /metrics and /healthz are served, if anywhere. */
  metricsUrl: string | undefined;
}

let runtimeInstalled = false;
/** The Temporal SDK's own Prometheus exporter, when the runtime was installed with one. */
let sdkMetricsUrl: string | undefined;

/**
 * The controller: runs the workflows and the activities that reach hosts through NATS. It waits
 * for NATS and Temporal together, each as `opts.connect` (default: REFIT_CONNECT_TIMEOUT) allows.
 */
export async function startControllerWorker(
  config: RefitConfig,
  log: Logger,
  opts: { maxConcurrentActivities?: number; connect?: ConnectPolicy; metrics?: MetricsSetting } = {},
): Promise<ControllerWorker> {
  // Served while the controller still waits for its servers: /healthz then says so.
  const metrics = opts.metrics === undefined ? undefined : await openMetricsEndpoint(opts.metrics, log, 'controller');
  try {
    return await startWorker(config, log, opts, metrics);
  } catch (err) {
    await metrics?.close();
    throw err;
  }
}

async function startWorker(
  config: RefitConfig,
  log: Logger,
  opts: { maxConcurrentActivities?: number; connect?: ConnectPolicy },
  metrics: MetricsEndpoint | undefined,
): Promise<ControllerWorker> {
  metrics?.check('temporal', () => 'not connected to Temporal yet');
  if (!runtimeInstalled) {
    // The SDK serves its runtime metrics on a loopback port of its own; refit's /metrics includes them.
    const sdkPort = metrics?.url !== undefined ? await freeLoopbackPort() : undefined;
    // Step failures are logged by refit itself; the SDK's own warnings would repeat each one in full.
    Runtime.install({
      logger: new DefaultLogger((process.env.REFIT_TEMPORAL_LOG_LEVEL as 'WARN' | undefined) ?? 'ERROR'),
      ...(sdkPort !== undefined
        ? {
            telemetryOptions: {
              metrics: {
                prometheus: {
                  bindAddress: `127.0.0.1:${sdkPort}`,
                  countersTotalSuffix: true,
                  unitSuffix: true,
                  useSecondsForDurations: true,
                },
              },
            },
          }
        : {}),
    });
    runtimeInstalled = true;
    if (sdkPort !== undefined) sdkMetricsUrl = `http://127.0.0.1:${sdkPort}`;
  }
  const policy = opts.connect ?? connectPolicy();
  const [nc, connection] = await bothOrNeither((signal) => [
    connectNatsWithRetry(
      {
        url: config.natsUrl,
        credsFile: config.natsCreds ?? credsFile(config.home, IDENTITIES.controller),
        identity: IDENTITIES.controller,
        tls: config.natsTls,
      },
      { policy, log, signal },
    ),
    connectTemporal(config, { policy, log, signal }),
  ]);
  const stops: (() => void)[] = [];
  let worker: Worker;
  try {
    await ensureMessaging(nc, config.natsReplicas, log);
    const kvm = new Kvm(nc);
    const results = await BucketFollower.start(await kvm.open(BUCKETS.results), CommandStatus, { keepAll: false, log });
    stops.push(() => results.stop());
    const presence = await BucketFollower.start(await kvm.open(BUCKETS.hosts), HostPresence, {
      keepAll: true,
      log,
      listKeys: () => bucketKeys(nc, BUCKETS.hosts),
    });
    stops.push(() => presence.stop());
    worker = await Worker.create({
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
        ...(metrics !== undefined
          ? { stepMetrics: stepMetricsOn(metrics.registry, 'refit', 'dispatched by this controller') }
          : {}),
      }),
      // Dispatch activities mostly wait on hosts; one per host in flight.
      maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivities ?? 2_000,
    });
  } catch (err) {
    for (const stop of stops) stop();
    await nc.close().catch(() => undefined);
    await connection.close().catch(() => undefined);
    throw err;
  }
  if (metrics !== undefined) {
    metrics.followNats(nc, config.natsUrl);
    checkTemporal(metrics, connection, worker, config.temporalAddress);
    appendRolloutGauges(metrics, connection, config.temporalNamespace, config.taskQueue);
    appendSdkMetrics(metrics, sdkMetricsUrl);
  }
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
      for (const stop of stops) stop();
      await nc.drain().catch(() => undefined);
      await connection.close().catch(() => undefined);
      await metrics?.close();
    });
  return {
    worker,
    nc,
    running,
    metricsUrl: metrics?.url,
    async shutdown() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
    },
  };
}

/** A connection that answers for the namespace: the port of a server still starting may not yet. */
function connectTemporal(config: RefitConfig, retry: RetryOptions): Promise<NativeConnection> {
  return connectWithRetry(
    { what: 'Temporal', where: config.temporalAddress },
    async () => {
      const connection = await NativeConnection.connect({
        address: config.temporalAddress,
        ...temporalTlsOptions(config.temporalTls),
      });
      try {
        await connection.workflowService.describeNamespace({ namespace: config.temporalNamespace });
        return connection;
      } catch (err) {
        await connection.close().catch(() => undefined);
        throw err;
      }
    },
    retry,
  );
}

/** Both connections, or neither: when one gives up, the other stops trying, or is closed. */
async function bothOrNeither(
  start: (signal: AbortSignal) => [Promise<NatsConnection>, Promise<NativeConnection>],
): Promise<[NatsConnection, NativeConnection]> {
  const giveUp = new AbortController();
  const [n, t] = (await Promise.allSettled(
    start(giveUp.signal).map((p) =>
      p.catch((err: unknown) => {
        giveUp.abort();
        throw err;
      }),
    ),
  )) as [PromiseSettledResult<NatsConnection>, PromiseSettledResult<NativeConnection>];
  if (n.status === 'fulfilled' && t.status === 'fulfilled') return [n.value, t.value];
  if (n.status === 'fulfilled') await n.value.close().catch(() => undefined);
  if (t.status === 'fulfilled') await t.value.close().catch(() => undefined);
  throw n.status === 'rejected' ? n.reason : (t as PromiseRejectedResult).reason;
}
