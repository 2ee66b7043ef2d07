import path from 'node:path';
import type { Logger } from 'pino';
import { enrollHosts } from '../dev/enroll.js';
import { SimDriver, type SimDriverOptions } from '../../activities/host/sim/driver.js';
import type { Labels } from '../../schemas/common.js';
import { credsFile, type NatsTls } from '../config.js';
import { InvalidFailSpecError, type FailSpec } from './fail-spec.js';
import { startHost, type RunningHost } from '../host/host-process.js';
import { RefitError } from '../../schemas/errors.js';

export { parseFailSpec, InvalidFailSpecError, type FailSpec } from './fail-spec.js';

export interface SimFleetOptions {
  home: string;
  natsUrl: string;
  /** TLS to NATS (the config's natsTls); absent: plain TCP. */
  natsTls?: NatsTls | undefined;
  /** How many hosts (named `<prefix>-001`…), or their ids. */
  hosts: number | string[];
  prefix?: string;
  fail?: FailSpec;
  /** Each host keeps its simulated state and journal in `<stateDir>/<hostId>`. */
  stateDir: string;
  speed?: number;
  /** Step durations at speed 1, by kind, instead of the sim's defaults. */
  stepMs?: SimDriverOptions['stepMs'];
  /** A real program every step runs first (see SimDriverOptions). */
  stepCommand?: readonly string[];
  presenceIntervalMs?: number;
  rebootPauseMs?: number;
  /** Labels every host carries besides its own (rack, role, driver), e.g. to make a selector match only this fleet. */
  labels?: Labels;
  log: Logger;
}

export interface SimFleetHandle {
  readonly hostIds: readonly string[];
  /** The simulated host behind each id, to look at its state. */
  readonly hosts: ReadonlyMap<string, SimDriver>;
  stop(): Promise<void>;
  /** Rejects when any host's connection to NATS was lost for longer than the connect bound. */
  lost: Promise<never>;
}

export class SimFleetError extends RefitError {}

const HOSTS_PER_RACK = 20;
/** Connections opened at once: a thousand hosts must not hit the server in one burst. */
const START_CONCURRENCY = 25;

/** `sim-001`, `sim-002`, … `sim-1000`: a host keeps its id (and state dir) whatever the fleet's size. */
export function simHostIds(count: number, prefix = 'sim'): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(i + 1).padStart(3, '0')}`);
}

export function simLabels(index: number): Labels {
  return { rack: `r${Math.floor(index / HOSTS_PER_RACK) + 1}`, role: 'hypervisor', driver: 'sim' };
}

/**
 * A simulated fleet in one process: each host enrolled with its own NATS credentials, its own
 * connection and its own host worker with the sim driver.
 */
export async function startSimFleet(o: SimFleetOptions): Promise<SimFleetHandle> {
  const hostIds = typeof o.hosts === 'number' ? simHostIds(o.hosts, o.prefix) : [...o.hosts];
  for (const host of Object.keys(o.fail ?? {})) {
    if (!hostIds.includes(host)) throw new InvalidFailSpecError(`--fail names ${host}, which is not in the fleet`);
  }
  const enrolled = await enrollHosts(o.home, hostIds);
  if (!enrolled.live) throw new SimFleetError(`no stack runs under ${o.home}; start it with \`refit dev up\``);

  const running = new Map<string, RunningHost>();
  const drivers = new Map<string, SimDriver>();
  async function startOne(hostId: string, index: number): Promise<void> {
    const stateDir = path.join(o.stateDir, hostId);
    const log = o.log.child({ hostId });
    const driverOptions: SimDriverOptions = { hostId, stateDir, log };
    if (o.speed !== undefined) driverOptions.speed = o.speed;
    if (o.rebootPauseMs !== undefined) driverOptions.rebootPauseMs = o.rebootPauseMs;
    if (o.stepMs !== undefined) driverOptions.stepMs = o.stepMs;
    if (o.stepCommand !== undefined) driverOptions.stepCommand = o.stepCommand;
    const fail = o.fail?.[hostId];
    if (fail !== undefined) driverOptions.fail = fail;
    const driver = await SimDriver.open(driverOptions);
    const host = await startHost({
      hostId,
      natsUrl: o.natsUrl,
      natsTls: o.natsTls,
      credsFile: credsFile(o.home, { host: hostId }),
      connectionName: `refit-sim-${hostId}`,
      driver,
      labels: { ...simLabels(index), ...o.labels },
      stateDir,
      log: o.log,
      ...(o.presenceIntervalMs !== undefined ? { presenceIntervalMs: o.presenceIntervalMs } : {}),
    });
    running.set(hostId, host);
    drivers.set(hostId, driver);
  }

  async function stop(): Promise<void> {
    await Promise.all([...running.values()].map((host) => host.stop()));
    running.clear();
  }

  try {
    let next = 0;
    const lanes = Array.from({ length: Math.min(START_CONCURRENCY, hostIds.length) }, async () => {
      for (let i = next++; i < hostIds.length; i = next++) await startOne(hostIds[i] as string, i);
    });
    await Promise.all(lanes);
  } catch (err) {
    await stop();
    throw new SimFleetError(`the simulated fleet did not start: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  o.log.info({ hosts: hostIds.length, simulated: true }, 'simulated fleet started');
  // The first host whose connection is lost for good: the fleet's process should stop and exit.
  const lost = Promise.race([...running.values()].map((host) => host.lost));
  lost.catch(() => undefined);
  return { hostIds, hosts: drivers, stop, lost };
}
