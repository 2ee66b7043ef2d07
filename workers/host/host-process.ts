import type { Logger } from 'pino';
import type { HostDriver } from '../../activities/host/driver.js';
import { SimDriver, type SimFailures } from '../../activities/host/sim/driver.js';
import { Labels } from '../../schemas/common.js';
import { connectNatsWithRetry, identityOfHost, signerFromFile } from '../nats.js';
import type { NatsTls } from '../config.js';
import { connectPolicy, type ConnectPolicy } from '../connect-retry.js';
import { startHostWorker } from './worker.js';
import { lockStateDir } from './state-lock.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { problemText } from '../../schemas/problems.js';
import { RefitError } from '../../schemas/errors.js';
import { openMetricsEndpoint, stepMetricsOn, type MetricsEndpoint, type MetricsSetting } from '../metrics/endpoint.js';
import { AGENT_VERSION } from './version.js';

export class InvalidLabelsError extends RefitError {}

/** `rack=r1,role=hypervisor` → labels, each key and value checked. */
export function parseLabels(text: string): Labels {
  const pairs = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((item) => {
      const eq = item.indexOf('=');
      if (eq <= 0) throw new InvalidLabelsError(`label "${item}" is not key=value`);
      return [item.slice(0, eq), item.slice(eq + 1)] as const;
    });
  const parsed = Labels.safeParse(Object.fromEntries(pairs));
  if (!parsed.success) throw new InvalidLabelsError(`bad labels "${text}": ${problemText(parsed.error, '(labels)')}`);
  return parsed.data;
}

export interface HostOptions {
  hostId: string;
  natsUrl: string;
  /** TLS to NATS (the config's natsTls); absent: plain TCP. */
  natsTls?: NatsTls | undefined;
  /** This host's own NATS credentials. */
  credsFile: string;
  /** Where its steps run: a real host, a lab host or a simulation. */
  driver: HostDriver;
  labels: Labels;
  stateDir: string;
  log: Logger;
  presenceIntervalMs?: number;
  /** The connection's name as the NATS server shows it; default `refit-host_<hostId>`. */
  connectionName?: string;
  /** How long to keep trying to reach NATS at start; default from REFIT_CONNECT_TIMEOUT. */
  connect?: ConnectPolicy;
  /** Where to serve /metrics and /healthz; absent: nowhere (the sim fleet, tests). */
  metrics?: MetricsSetting;
}

export interface RunningHost {
  readonly hostId: string;
  /** Where /metrics and /healthz are served, if anywhere. */
  readonly metricsUrl: string | undefined;
  /** Stops the worker, then drains the connection. */
  stop(): Promise<void>;
  /**
   * Rejects with ServerUnreachableError when NATS was lost for longer than the connect bound (the
   * connection is closed then): the process should stop the host and exit 1. Never resolves.
   */
  lost: Promise<never>;
}

/**
 * One host: its own NATS connection under its own identity, its driver and its host worker. Every
 * way of running hosts starts them here: `refit host`, the simulated fleet, the lab's agents. A NATS
 * server that is not there yet is waited for, as `connect` (or REFIT_CONNECT_TIMEOUT) allows.
 */
export async function startHost(o: HostOptions): Promise<RunningHost> {
  // Before anything else: a second agent on this state dir must not even connect.
  const lock = lockStateDir(o.stateDir, o.hostId);
  let nc: NatsConnection;
  let metrics: MetricsEndpoint | undefined;
  let lost: Promise<never>;
  try {
    // Served while the agent still waits for NATS: /healthz then says so.
    if (o.metrics !== undefined) metrics = await openMetricsEndpoint(o.metrics, o.log, 'host agent');
    ({ nc, lost } = await connectNatsWithRetry(
      {
        url: o.natsUrl,
        credsFile: o.credsFile,
        identity: identityOfHost(o.hostId),
        tls: o.natsTls,
        ...(o.connectionName !== undefined ? { name: o.connectionName } : {}),
      },
      { policy: o.connect ?? connectPolicy(), log: o.log },
    ));
  } catch (err) {
    await metrics?.close();
    lock.release();
    throw err;
  }
  metrics?.followNats(nc, o.natsUrl);
  try {
    const worker = await startHostWorker({
      hostId: o.hostId,
      nc,
      // The host signs its audit events with the key it connects with: its enrolled public key verifies them.
      signer: signerFromFile(o.credsFile),
      driver: o.driver,
      labels: o.labels,
      stateDir: o.stateDir,
      log: o.log,
      instanceId: lock.holder.instanceId,
      ...(o.presenceIntervalMs !== undefined ? { presenceIntervalMs: o.presenceIntervalMs } : {}),
      ...(metrics !== undefined ? { stepMetrics: stepMetricsOn(metrics.registry, 'refit_host', 'this host ran') } : {}),
    });
    if (metrics !== undefined) hostGauges(metrics, o, () => worker.auditBacklog());
    return {
      hostId: o.hostId,
      metricsUrl: metrics?.url,
      lost,
      async stop() {
        await worker.stop();
        await nc.drain().catch(() => nc.close());
        await metrics?.close();
        lock.release();
      },
    };
  } catch (err) {
    await nc.close();
    await metrics?.close();
    lock.release();
    throw err;
  }
}

function hostGauges(metrics: MetricsEndpoint, o: HostOptions, backlog: () => number): void {
  metrics.registry.gauge('refit_host_info', 'This host agent: its host id, version and driver (always 1).', () => [
    { labels: { host_id: o.hostId, version: AGENT_VERSION, driver: o.driver.kind }, value: 1 },
  ]);
  metrics.registry.gauge(
    'refit_audit_spool_depth',
    'Audit events spooled on this host and not yet stored in NATS.',
    () => [{ value: backlog() }],
  );
}

export interface SimHostOptions extends Omit<HostOptions, 'driver'> {
  speed?: number;
  rebootPauseMs?: number;
  fail?: SimFailures;
}

/** One simulated host (the sim driver over its state dir), started like any other. */
export async function startSimHost(o: SimHostOptions): Promise<RunningHost> {
  const { speed, rebootPauseMs, fail, ...host } = o;
  const driver = await SimDriver.open({
    hostId: o.hostId,
    stateDir: o.stateDir,
    log: o.log.child({ hostId: o.hostId }),
    ...(speed !== undefined ? { speed } : {}),
    ...(rebootPauseMs !== undefined ? { rebootPauseMs } : {}),
    ...(fail !== undefined ? { fail } : {}),
  });
  return startHost({ ...host, driver });
}

/** Resolves at the first SIGINT or SIGTERM. */
export function untilStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

/**
 * Run until SIGINT or SIGTERM, then stop; or until the connection is lost for good, then stop what
 * can be stopped and throw its error (the process exits 1, and its supervisor starts it again).
 */
export async function runUntilStopped(running: { stop(): Promise<void>; lost: Promise<never> }): Promise<void> {
  try {
    await Promise.race([untilStopSignal(), running.lost]);
  } catch (err) {
    await running.stop().catch(() => undefined);
    throw err;
  }
  await running.stop();
}
