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
import { connectNatsWithRetry, type WatchedNats } from './nats.js';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  backoffDelay,
  connectPolicy,
  connectWithRetry,
  DEFAULT_CONNECT_POLICY,
  seconds,
  ServerUnreachableError,
  type ConnectPolicy,
  type RetryOptions,
} from './connect-retry.js';
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

/** The longest Temporal holds back an activity's heartbeat (and so the news of its cancellation). */
export const HEARTBEAT_THROTTLE = '1s';

export interface ControllerWorker {
  worker: Worker;
  nc: NatsConnection;
  /** Resolves when the worker has stopped. */
  running: Promise<void>;
  shutdown(): Promise<void>;
  /** Where /metrics and /healthz are served, if anywhere. */
  metricsUrl: string | undefined;
}

/** The Temporal worker's concurrency settings the bench varies (docs/BENCHMARKS.md "Where the time goes"). */
export const CONTROLLER_TUNING_KEYS = [
  'maxConcurrentWorkflowTaskExecutions',
  'maxConcurrentActivityTaskExecutions',
  'maxConcurrentWorkflowTaskPolls',
  'maxConcurrentActivityTaskPolls',
  'maxCachedWorkflows',
] as const;
export type ControllerTuning = Partial<Record<(typeof CONTROLLER_TUNING_KEYS)[number], number>>;

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
  opts: {
    maxConcurrentActivities?: number;
    connect?: ConnectPolicy;
    metrics?: MetricsSetting;
    tuning?: ControllerTuning;
  } = {},
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
  opts: { maxConcurrentActivities?: number; connect?: ConnectPolicy; tuning?: ControllerTuning },
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
  const [{ nc, lost: natsLost }, connection] = await bothOrNeither((signal) => [
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
      // An activity hears of its cancellation only in the answer to a heartbeat, and Temporal sends a
      // heartbeat at most every 0.8 × the heartbeat timeout (16 s) unless told otherwise: a cancelled
      // run kept sending its next steps (ovs-convert, a reboot) for up to 16 s after the operator
      // cancelled. With this, each of the activity's heartbeats (every 3 s) goes out.
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
      ...opts.tuning,
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
  // A server lost for longer than the bound stops the worker with that error: the process exits 1
  // and its supervisor (systemd's Restart=always) starts it again.
  const temporalWatch = new AbortController();
  const lost = Promise.race([
    natsLost,
    watchTemporal(connection, config, { policy, log, signal: temporalWatch.signal }),
  ]);
  const ran = worker.run();
  let lostServer: Error | undefined;
  const running = Promise.race([
    ran.then(() => {
      if (lostServer !== undefined) throw lostServer;
    }),
    lost.catch(async (err: unknown) => {
      lostServer = err as Error;
      if (worker.getState() === 'RUNNING') worker.shutdown();
      // Without its server the worker may not finish shutting down: the error is what matters.
      await Promise.race([ran.catch(() => undefined), sleep(LOSS_SHUTDOWN_GRACE_MS)]);
      throw err;
    }),
  ])
    .catch((err: unknown) => {
      log.error({ err }, 'controller worker stopped with an error');
      throw err;
    })
    .finally(async () => {
      temporalWatch.abort();
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

/** How long a controller that lost a server waits for its worker to stop before it exits anyway (ms). */
const LOSS_SHUTDOWN_GRACE_MS = 10_000;

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
  start: (signal: AbortSignal) => [Promise<WatchedNats>, Promise<NativeConnection>],
): Promise<[WatchedNats, NativeConnection]> {
  const giveUp = new AbortController();
  const [n, t] = (await Promise.allSettled(
    start(giveUp.signal).map((p) =>
      p.catch((err: unknown) => {
        giveUp.abort();
        throw err;
      }),
    ),
  )) as [PromiseSettledResult<WatchedNats>, PromiseSettledResult<NativeConnection>];
  if (n.status === 'fulfilled' && t.status === 'fulfilled') return [n.value, t.value];
  if (n.status === 'fulfilled') await n.value.nc.close().catch(() => undefined);
  if (t.status === 'fulfilled') await t.value.close().catch(() => undefined);
  throw n.status === 'rejected' ? n.reason : (t as PromiseRejectedResult).reason;
}

/** Counts of the controller's checks of its Temporal server that failed, and of its returns. */
export const temporalReconnectCounts = { failedChecks: 0, reconnects: 0, givenUp: 0 };

/** How often a controller asks its Temporal server whether it is there (ms). */
export const TEMPORAL_CHECK_MS = 5_000;

/**
 * The worker's own connection retries a lost Temporal server without end and says nothing. This
 * asks the server every TEMPORAL_CHECK_MS (more often while it is lost, as the policy's back-off
 * says), logs each failed check and the return, and rejects once it has been lost for the
 * policy's bound.
 */
export async function watchTemporal(
  connection: NativeConnection,
  config: RefitConfig,
  { policy, log, signal }: RetryOptions & { signal: AbortSignal },
): Promise<void> {
  const ids = { what: 'Temporal', where: config.temporalAddress };
  const bound = Number.isFinite(policy.timeoutMs) ? policy.timeoutMs : DEFAULT_CONNECT_POLICY.timeoutMs;
  let lostAt: number | undefined;
  let failures = 0;
  while (!signal.aborted) {
    const wait = lostAt === undefined ? TEMPORAL_CHECK_MS : Math.min(TEMPORAL_CHECK_MS, backoffDelay(failures, policy));
    await sleep(wait, undefined, { signal }).catch(() => undefined);
    if (signal.aborted) return;
    try {
      await connection.withDeadline(Date.now() + Math.min(TEMPORAL_CHECK_MS, 5_000), () =>
        connection.workflowService.describeNamespace({ namespace: config.temporalNamespace }),
      );
      if (lostAt !== undefined) {
        temporalReconnectCounts.reconnects++;
        log.info(
          { ...ids, attempts: failures, lostForMs: Date.now() - lostAt },
          `reached Temporal at ${config.temporalAddress} again after ${seconds(Date.now() - lostAt)} (attempt ${failures})`,
        );
      }
      lostAt = undefined;
      failures = 0;
    } catch (err) {
      if (signal.aborted) return;
      temporalReconnectCounts.failedChecks++;
      lostAt ??= Date.now();
      failures++;
      const lostFor = Date.now() - lostAt;
      if (lostFor >= bound) {
        temporalReconnectCounts.givenUp++;
        const gaveUp = new ServerUnreachableError(
          `lost Temporal at ${config.temporalAddress}: no answer for ${seconds(lostFor)} over ${failures} attempts (bound: ${seconds(bound)}, set with REFIT_CONNECT_TIMEOUT); last error: ${(err as Error).message}`,
          { cause: err },
        );
        log.error({ ...ids, attempts: failures }, gaveUp.message);
        throw gaveUp;
      }
      log.warn(
        { ...ids, attempt: failures, lostForMs: lostFor, giveUpInMs: bound - lostFor, err: (err as Error).message },
        `lost Temporal at ${config.temporalAddress} (attempt ${failures}: ${(err as Error).message}); giving up in ${seconds(bound - lostFor)}`,
      );
    }
  }
}
