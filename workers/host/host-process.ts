import type { Logger } from 'pino';
import type { HostDriver } from '../../activities/host/driver.js';
import { SimDriver, type SimDriverOptions, type SimFailures } from '../../activities/host/sim/driver.js';
import { Labels } from '../../schemas/common.js';
import { connectNats, identityOfHost } from '../nats.js';
import { startHostWorker } from './worker.js';
import { problemText } from '../../schemas/problems.js';

export class InvalidLabelsError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'InvalidLabelsError';
  }
}

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
  if (!parsed.success)
    throw new InvalidLabelsError(
      `bad labels "${text}": ${problemText(parsed.error, '(labels)')}`,
    );
  return parsed.data;
}

export interface SimHostOptions {
  hostId: string;
  natsUrl: string;
  credsFile: string;
  stateDir: string;
  labels: Labels;
  log: Logger;
  presenceIntervalMs?: number;
  speed?: number;
  rebootPauseMs?: number;
  fail?: SimFailures;
}

/** One simulated host with its own connection; stop() stops the worker and drains the connection. */
export async function startSimHost(o: SimHostOptions): Promise<{ stop(): Promise<void> }> {
  const driverOptions: SimDriverOptions = {
    hostId: o.hostId,
    stateDir: o.stateDir,
    log: o.log.child({ hostId: o.hostId }),
  };
  if (o.speed !== undefined) driverOptions.speed = o.speed;
  if (o.rebootPauseMs !== undefined) driverOptions.rebootPauseMs = o.rebootPauseMs;
  if (o.fail !== undefined) driverOptions.fail = o.fail;
  return startHostProcess(o, await SimDriver.open(driverOptions));
}

export type HostProcessOptions = Pick<
  SimHostOptions,
  'hostId' | 'natsUrl' | 'credsFile' | 'stateDir' | 'labels' | 'log' | 'presenceIntervalMs'
>;

/** One host worker with its own NATS connection and the given driver. */
export async function startHostProcess(o: HostProcessOptions, driver: HostDriver): Promise<{ stop(): Promise<void> }> {
  const nc = await connectNats({ url: o.natsUrl, credsFile: o.credsFile, identity: identityOfHost(o.hostId) });
  try {
    const worker = await startHostWorker({
      hostId: o.hostId,
      nc,
      driver,
      labels: o.labels,
      stateDir: o.stateDir,
      log: o.log,
      ...(o.presenceIntervalMs !== undefined ? { presenceIntervalMs: o.presenceIntervalMs } : {}),
    });
    return {
      async stop() {
        await worker.stop();
        await nc.drain().catch(() => nc.close());
      },
    };
  } catch (err) {
    await nc.close();
    throw err;
  }
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
