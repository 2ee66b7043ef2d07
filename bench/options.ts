import path from 'node:path';
import { parseArgs } from 'node:util';
import { RefitError } from '../schemas/errors.js';
import { CONTROLLER_TUNING_KEYS, type ControllerTuning } from '../workers/controller.js';

export const SECTIONS = [
  'dispatch',
  'footprint',
  'throughput',
  'ansible',
  'modelled',
  'history',
  'carried',
  'scale',
] as const;
export type Section = (typeof SECTIONS)[number];
/** `scale` (10,000 hosts, ~30 min) runs only when asked for. */
export const DEFAULT_SECTIONS: readonly Section[] = SECTIONS.filter((s) => s !== 'scale');

export interface BenchOptions {
  sections: Section[];
  /** Fleet sizes of the throughput and Ansible runs. */
  sizes: number[];
  /** refit's maxInFlight and Ansible's forks, capped at N. */
  inFlight: number;
  /** Ansible's command-module runs are measured up to this N and projected above it (they take ~0.5 CPU-s a task). */
  ansibleMax: number;
  /** Also run Ansible's raw module, its floor. */
  ansibleRaw: boolean;
  presenceIntervalMs: number;
  dispatchRounds: number;
  natsRequests: number;
  modelCompressions: number[];
  modelHosts: number;
  modelInFlight: number;
  idleSeconds: number;
  busySeconds: number;
  /** Hosts of the modelled continue-as-new state (`carried`). */
  carriedHosts: number;
  scaleHosts: number;
  scaleFleets: number;
  scaleInFlight: number;
  scalePresenceMs: number;
  /** The controller worker's concurrency settings, beyond its defaults. */
  controllerWorker: ControllerTuning;
  /** The dev server's store: the home's SQLite file (as `refit dev up`), or memory. */
  temporalDb: 'file' | 'memory';
  /** SQLite pragmas of the dev server's store, beyond the stack's own. */
  temporalPragmas: Record<string, string>;
  out: string;
  keepHome: boolean;
}

export class BenchUsageError extends RefitError {}

const FLAGS = {
  sections: 'REFIT_BENCH_SECTIONS',
  sizes: 'REFIT_BENCH_SIZES',
  'in-flight': 'REFIT_BENCH_IN_FLIGHT',
  'ansible-max': 'REFIT_BENCH_ANSIBLE_MAX',
  'ansible-raw': 'REFIT_BENCH_ANSIBLE_RAW',
  'presence-ms': 'REFIT_BENCH_PRESENCE_MS',
  'dispatch-rounds': 'REFIT_BENCH_DISPATCH_ROUNDS',
  'nats-requests': 'REFIT_BENCH_NATS_REQUESTS',
  'model-compressions': 'REFIT_BENCH_MODEL_COMPRESSIONS',
  'model-hosts': 'REFIT_BENCH_MODEL_HOSTS',
  'model-in-flight': 'REFIT_BENCH_MODEL_IN_FLIGHT',
  'idle-seconds': 'REFIT_BENCH_IDLE_SECONDS',
  'busy-seconds': 'REFIT_BENCH_BUSY_SECONDS',
  'carried-hosts': 'REFIT_BENCH_CARRIED_HOSTS',
  'scale-hosts': 'REFIT_BENCH_SCALE_HOSTS',
  'scale-fleets': 'REFIT_BENCH_SCALE_FLEETS',
  'scale-in-flight': 'REFIT_BENCH_SCALE_IN_FLIGHT',
  'scale-presence-ms': 'REFIT_BENCH_SCALE_PRESENCE_MS',
  'controller-worker': 'REFIT_BENCH_CONTROLLER_WORKER',
  'temporal-db': 'REFIT_BENCH_TEMPORAL_DB',
  'temporal-pragmas': 'REFIT_BENCH_TEMPORAL_PRAGMAS',
  out: 'REFIT_BENCH_OUT',
  keep: 'REFIT_BENCH_KEEP',
} as const;
type Flag = keyof typeof FLAGS;

/** `--sizes 10,100` on the command line, or REFIT_BENCH_SIZES=10,100 in the environment; flags win. */
export function benchOptions(argv: string[], env: NodeJS.ProcessEnv, root: string): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: 'string' as const }])),
    strict: true,
  });
  const get = (flag: Flag, fallback: string): string => values[flag] ?? env[FLAGS[flag]] ?? fallback;
  const count = (flag: Flag, fallback: string): number => {
    const n = Number(get(flag, fallback));
    if (!Number.isInteger(n) || n < 1)
      throw new BenchUsageError(`--${flag} / ${FLAGS[flag]} must be a whole number above 0`);
    return n;
  };
  const list = (flag: Flag, fallback: string): number[] =>
    get(flag, fallback)
      .split(',')
      .map((s) => {
        const n = Number(s.trim());
        if (!Number.isInteger(n) || n < 1)
          throw new BenchUsageError(`--${flag} / ${FLAGS[flag]}: "${s}" is not a whole number above 0`);
        return n;
      });
  const sections = get('sections', DEFAULT_SECTIONS.join(','))
    .split(',')
    .map((s) => s.trim());
  for (const s of sections) {
    if (!(SECTIONS as readonly string[]).includes(s))
      throw new BenchUsageError(`unknown section "${s}"; sections are ${SECTIONS.join(', ')}`);
  }
  const controllerWorker: ControllerTuning = {};
  for (const pair of get('controller-worker', '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const [key, value] = pair.split('=');
    if (!(CONTROLLER_TUNING_KEYS as readonly string[]).includes(key ?? ''))
      throw new BenchUsageError(
        `--controller-worker / ${FLAGS['controller-worker']}: "${key ?? ''}" is not one of ${CONTROLLER_TUNING_KEYS.join(', ')}`,
      );
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0)
      throw new BenchUsageError(`--controller-worker / ${FLAGS['controller-worker']}: ${pair} needs a whole number`);
    controllerWorker[key as keyof ControllerTuning] = n;
  }
  const temporalDb = get('temporal-db', 'file');
  if (temporalDb !== 'file' && temporalDb !== 'memory')
    throw new BenchUsageError(`--temporal-db / ${FLAGS['temporal-db']} is file or memory, not "${temporalDb}"`);
  const temporalPragmas: Record<string, string> = {};
  for (const pair of get('temporal-pragmas', '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const m = /^([a-z_]+)=([A-Za-z0-9_-]+)$/.exec(pair);
    if (!m)
      throw new BenchUsageError(`--temporal-pragmas / ${FLAGS['temporal-pragmas']}: "${pair}" is not PRAGMA=VALUE`);
    temporalPragmas[m[1] as string] = m[2] as string;
  }
  const yes = (flag: Flag, fallback: string) => ['1', 'true', 'yes'].includes(get(flag, fallback).toLowerCase());
  return {
    sections: sections as Section[],
    sizes: list('sizes', '10,100,1000'),
    inFlight: count('in-flight', '50'),
    ansibleMax: count('ansible-max', '100'),
    ansibleRaw: yes('ansible-raw', '1'),
    presenceIntervalMs: count('presence-ms', '10000'),
    dispatchRounds: count('dispatch-rounds', '200'),
    natsRequests: count('nats-requests', '2000'),
    modelCompressions: list('model-compressions', '100,25'),
    modelHosts: count('model-hosts', '20'),
    modelInFlight: count('model-in-flight', '10'),
    idleSeconds: count('idle-seconds', '30'),
    busySeconds: count('busy-seconds', '15'),
    carriedHosts: count('carried-hosts', '100000'),
    scaleHosts: count('scale-hosts', '10000'),
    scaleFleets: count('scale-fleets', '4'),
    scaleInFlight: count('scale-in-flight', '200'),
    scalePresenceMs: count('scale-presence-ms', '60000'),
    controllerWorker,
    temporalDb,
    temporalPragmas,
    out: path.resolve(root, get('out', path.join('bench', 'results', 'latest.json'))),
    keepHome: yes('keep', '0'),
  };
}
