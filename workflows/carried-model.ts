import { Plan, type PlanInput } from '../schemas/plan.js';
import type { RolloutCarried, RolloutInput } from '../schemas/rollout.js';
import { compactCarried, planWithoutHosts } from './carried.js';
import { RolloutMachine } from './rollout-machine.js';
import { newRollout } from './rollout-state.js';

/*
 * What a rollout carries through continue-as-new, modelled without Temporal: the `RolloutMachine`
 * state after every host finished, sized as Temporal's JSON converter serialises it. Used by
 * workflows/carried.test.ts and by the bench's `carried` section (docs/BENCHMARKS.md "What a rollout
 * carries"). Not part of the workflow bundle.
 */

/** When the modelled rollout starts. */
export const MODEL_T0 = Date.UTC(2026, 0, 5, 12);

/** A three-step plan over `hosts`. */
export function modelPlan(hosts: string[], extra: Partial<PlanInput> = {}): Plan {
  return Plan.parse({
    apiVersion: 'refit/v1',
    kind: 'Campaign',
    name: 'carried-test',
    targets: { hosts },
    steps: [{ kind: 'drain' }, { kind: 'verify', params: { targets: [{ address: '10.0.0.1' }] } }, { kind: 'undrain' }],
    ...extra,
  });
}

/** A rollout over `hosts`, resolved, then driven as its loop would: every host started and finished succeeded, but `outcomes`. */
export function finishedRollout(
  hosts: string[],
  plan: Plan,
  o: {
    labels?: Record<string, Record<string, string>>;
    offline?: string[];
    outcomes?: Record<string, 'failed' | 'held'>;
  } = {},
): RolloutCarried {
  const carried = newRollout({ rolloutId: 'r', plan, startedBy: 'test' }, MODEL_T0);
  const machine = new RolloutMachine(plan, carried);
  machine.targetsResolved(
    {
      hostIds: hosts.filter((h) => !o.offline?.includes(h)),
      missing: o.offline ?? [],
      excluded: [],
      labels: o.labels ?? {},
      ...(o.offline ? { offline: o.offline } : {}),
    },
    MODEL_T0,
  );
  for (const h of machine.status.hosts) {
    if (h.state !== 'pending') continue;
    machine.status.counts.pending -= 1;
    Object.assign(h, { state: 'running', attempts: 1 });
    machine.status.counts.running += 1;
    const failed = o.outcomes?.[h.hostId];
    machine.hostFinished(h.hostId, {
      hostId: h.hostId,
      state: failed ?? 'succeeded',
      steps: plan.steps.map((s, index) => ({
        index,
        kind: s.kind,
        mode: 'apply',
        state: failed && index === 1 ? 'failed' : 'succeeded',
      })),
      ...(failed ? { error: `verify: 100% loss to 10.0.0.1 from ${h.hostId}` } : {}),
    });
  }
  return machine.carryOver();
}

/** `n` numbered host ids: x1-000001, x1-000002, … */
export const numberedHosts = (n: number, prefix = 'x1-', width = 6): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i + 1).padStart(width, '0')}`);

export interface CarriedModel {
  hosts: number;
  failed: number;
  racks: number;
  /** Bytes of the continue-as-new input, with the state as it was carried before decision 0024. */
  beforeBytes: number;
  /** The same input with the compact carried state and the plan without its host list. */
  compactBytes: number;
  carried: RolloutCarried;
  plan: Plan;
}

/**
 * A finished rollout of `hosts` numbered hosts in two numbered runs (x1-…, x2-…), 40 hosts a rack,
 * one host in 200 failed with its own message, waves of 200: the continue-as-new input's size in
 * the old and the compact encoding.
 */
export function modelCarried(hosts: number): CarriedModel {
  const ids = numberedHosts(hosts, 'x1-', 5).map((h, i) => (i >= hosts / 2 ? h.replace('x1-', 'x2-') : h));
  const plan = modelPlan(ids, {
    waves: { canary: 1, batchSize: 200, maxInFlight: 200 },
    limits: { perLabel: { rack: 20 } },
    failureBudget: { maxFailedHosts: Math.max(1, Math.ceil(hosts / 100)) },
  });
  const labels = Object.fromEntries(ids.map((h, i) => [h, { rack: `rack-${Math.floor(i / 40)}` }]));
  const outcomes = Object.fromEntries(ids.filter((_, i) => i % 200 === 7).map((h) => [h, 'failed' as const]));
  const carried = finishedRollout(ids, plan, { labels, outcomes });
  const input = (c: NonNullable<RolloutInput['carried']>, p: Plan): RolloutInput => ({
    rolloutId: `bench-scale-${hosts}-abcdef`,
    plan: p,
    startedBy: 'ops@host',
    carried: c,
  });
  return {
    hosts,
    failed: Object.keys(outcomes).length,
    racks: Math.ceil(hosts / 40),
    beforeBytes: JSON.stringify(input(carried, plan)).length,
    compactBytes: JSON.stringify(input(compactCarried(carried, plan), planWithoutHosts(plan))).length,
    carried,
    plan,
  };
}
