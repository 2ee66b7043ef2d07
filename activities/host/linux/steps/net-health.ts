import { setTimeout as sleep } from 'node:timers/promises';
import {
  HEALTH_COUNTERS,
  type HealthCounter,
  type StepOutcome,
  type StepParams,
  type VerifyHealth,
} from '../../../../schemas/steps.js';
import { StepCancelledError, StepFailedError, type StepContext } from '../../driver.js';
import type { HostEnv } from '../host-env.js';
import {
  counterDelta,
  ipStatsArgv,
  nstatArgv,
  parseIpStats,
  parseNstatRetransmits,
  type InterfaceCounters,
} from '../net-counters.js';

type Params = StepParams<'net-health'>;

/** The counters at one moment: every interface's, and the host's TCP retransmissions since boot. */
export interface Snapshot {
  interfaces: Map<string, InterfaceCounters>;
  tcpRetransmits: number;
}

export async function snapshot(env: HostEnv): Promise<Snapshot> {
  return {
    interfaces: parseIpStats((await env.run(ipStatsArgv())).stdout),
    tcpRetransmits: parseNstatRetransmits((await env.run(nstatArgv())).stdout),
  };
}

const IF_COUNTERS = HEALTH_COUNTERS.filter(
  (c): c is Exclude<HealthCounter, 'tcpRetransmits'> => c !== 'tcpRetransmits',
);

/** The interfaces a check watches (default: all but lo); fails naming those the host does not have. */
export function watched(first: Snapshot, interfaces: readonly string[] | undefined, what: string): string[] {
  const names = interfaces ? [...interfaces] : [...first.interfaces.keys()].filter((n) => n !== 'lo');
  const missing = names.filter((n) => !first.interfaces.has(n));
  if (missing.length > 0) throw new StepFailedError(`${what}: no interface ${missing.join(', ')} on this host`);
  return names;
}

export interface HealthReport {
  deltas: Record<string, Partial<Record<HealthCounter, number>>>;
  tcpRetransmits: number;
  /** One per counter over its limit: `<interface> <counter> +<increase> (at most <limit>)`. */
  problems: string[];
  /** The counters that grew within their limits, `<interface> <counter> +<increase>`. */
  grew: string[];
}

/** Each counter's increase between two readings against the plan's limits. */
export function compareCounters(
  first: Snapshot,
  second: Snapshot,
  names: readonly string[],
  max: VerifyHealth['max'],
): HealthReport {
  const deltas: HealthReport['deltas'] = {};
  const problems: string[] = [];
  for (const name of names) {
    const a = first.interfaces.get(name) as InterfaceCounters;
    const b = second.interfaces.get(name);
    if (b === undefined) {
      problems.push(`${name} disappeared during the window`);
      continue;
    }
    const d = Object.fromEntries(IF_COUNTERS.map((c) => [c, counterDelta(a[c], b[c])])) as Record<string, number>;
    deltas[name] = d;
    for (const c of IF_COUNTERS) {
      const limit = max[c];
      if (limit !== undefined && (d[c] ?? 0) > limit) problems.push(`${name} ${c} +${d[c]} (at most ${limit})`);
    }
  }
  const retrans = counterDelta(first.tcpRetransmits, second.tcpRetransmits);
  if (max.tcpRetransmits !== undefined && retrans > max.tcpRetransmits)
    problems.push(`host tcpRetransmits +${retrans} (at most ${max.tcpRetransmits})`);
  const grew = Object.entries(deltas).flatMap(([name, d]) =>
    Object.entries(d).flatMap(([c, v]) => (v !== undefined && v > 0 ? [`${name} ${c} +${v}`] : [])),
  );
  return { deltas, tcpRetransmits: retrans, problems, grew };
}

/** A reading as the audit keeps it: the watched interfaces' counters and the retransmissions. */
export const countersOf = (s: Snapshot, names: readonly string[]) => ({
  interfaces: Object.fromEntries(names.flatMap((n) => (s.interfaces.has(n) ? [[n, s.interfaces.get(n)]] : []))),
  tcpRetransmits: s.tcpRetransmits,
});

/**
 * The host's error, drop and overrun counters and its TCP retransmissions, read at the start and again
 * after the plan's window: fails when one grew by more than the plan allows, naming the interface, the
 * counter and how much it grew. Changes nothing.
 */
export async function applyNetHealth(env: HostEnv, params: Params, ctx: StepContext): Promise<StepOutcome> {
  const first = await snapshot(env);
  const names = watched(first, params.interfaces, 'net-health');
  ctx.progress(10, `watching the counters of ${names.join(', ')} for ${params.window / 1000} s`);
  try {
    await sleep(params.window, undefined, { signal: ctx.signal });
  } catch {
    throw new StepCancelledError('net-health: cancelled while watching the counters');
  }
  const second = await snapshot(env);
  const { deltas, tcpRetransmits: retrans, problems, grew } = compareCounters(first, second, names, params.max);
  const seconds = params.window / 1000;
  if (problems.length > 0) throw new StepFailedError(`net-health over ${seconds} s: ${problems.join('; ')}`);
  return {
    changed: false,
    summary: `net-health over ${seconds} s on ${names.join(', ')}: ${grew.length > 0 ? `${grew.join(', ')} (within limits)` : 'no drops, errors or overruns'}; tcpRetransmits +${retrans}`,
    before: {},
    after: { windowMs: params.window, deltas, tcpRetransmits: retrans, max: params.max },
  };
}
