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
}

export interface RunningHost {
  readonly hostId: string;
  /** Stops the worker, then drains the connection. */
  stop(): Promise<void>;
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
  try {
    nc = await connectNatsWithRetry(
      {
        url: o.natsUrl,
        credsFile: o.credsFile,
        identity: identityOfHost(o.hostId),
        tls: o.natsTls,
        ...(o.connectionName !== undefined ? { name: o.connectionName } : {}),
      },
      { policy: o.connect ?? connectPolicy(), log: o.log },
    );
  } catch (err) {
    lock.release();
    throw err;
  }
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
    });
    return {
      hostId: o.hostId,
      async stop() {
        await worker.stop();
        await nc.drain().catch(() => nc.close());
        lock.release();
      },
    };
  } catch (err) {
    await nc.close();
    lock.release();
    throw err;
  }
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
