import { setTimeout as sleep } from 'node:timers/promises';
import { HEALTH_COUNTERS, type HealthCounter, type StepOutcome, type StepParams } from '../../../../schemas/steps.js';
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

interface Snapshot {
  interfaces: Map<string, InterfaceCounters>;
  tcpRetransmits: number;
}

async function snapshot(env: HostEnv): Promise<Snapshot> {
  return {
    interfaces: parseIpStats((await env.run(ipStatsArgv())).stdout),
    tcpRetransmits: parseNstatRetransmits((await env.run(nstatArgv())).stdout),
  };
}

const IF_COUNTERS = HEALTH_COUNTERS.filter(
  (c): c is Exclude<HealthCounter, 'tcpRetransmits'> => c !== 'tcpRetransmits',
);

/**
 * The host's error, drop and overrun counters and its TCP retransmissions, read at the start and again
 * after the plan's window: fails when one grew by more than the plan allows, naming the interface, the
 * counter and how much it grew. Changes nothing.
 */
export async function applyNetHealth(env: HostEnv, params: Params, ctx: StepContext): Promise<StepOutcome> {
  const first = await snapshot(env);
  const names = params.interfaces ?? [...first.interfaces.keys()].filter((n) => n !== 'lo');
  const missing = names.filter((n) => !first.interfaces.has(n));
  if (missing.length > 0) throw new StepFailedError(`net-health: no interface ${missing.join(', ')} on this host`);
  ctx.progress(10, `watching the counters of ${names.join(', ')} for ${params.window / 1000} s`);
  try {
    await sleep(params.window, undefined, { signal: ctx.signal });
  } catch {
    throw new StepCancelledError('net-health: cancelled while watching the counters');
  }
  const second = await snapshot(env);
  const deltas: Record<string, Partial<Record<HealthCounter, number>>> = {};
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
      const max = params.max[c];
      if (max !== undefined && (d[c] ?? 0) > max) problems.push(`${name} ${c} +${d[c]} (at most ${max})`);
    }
  }
  const retrans = counterDelta(first.tcpRetransmits, second.tcpRetransmits);
  if (params.max.tcpRetransmits !== undefined && retrans > params.max.tcpRetransmits)
    problems.push(`host tcpRetransmits +${retrans} (at most ${params.max.tcpRetransmits})`);
  const seconds = params.window / 1000;
  if (problems.length > 0) throw new StepFailedError(`net-health over ${seconds} s: ${problems.join('; ')}`);
  const grew = Object.entries(deltas).flatMap(([name, d]) =>
    Object.entries(d).flatMap(([c, v]) => (v !== undefined && v > 0 ? [`${name} ${c} +${v}`] : [])),
  );
  return {
    changed: false,
    summary: `net-health over ${seconds} s on ${names.join(', ')}: ${grew.length > 0 ? `${grew.join(', ')} (within limits)` : 'no drops, errors or overruns'}; tcpRetransmits +${retrans}`,
    before: {},
    after: { windowMs: params.window, deltas, tcpRetransmits: retrans, max: params.max },
  };
}
