import { describe, expect, it } from 'vitest';
import { Plan, type PlanInput } from '../schemas/plan.js';
import type { RolloutCarried, RolloutInput } from '../schemas/rollout.js';
import { compactCarried, decodeIds, encodeIds, expandCarried, expandPlan, planWithoutHosts } from './carried.js';
import { RolloutMachine } from './rollout-machine.js';
import { newRollout } from './rollout-state.js';

const T0 = Date.UTC(2026, 0, 5, 12);

function planOf(hosts: string[], extra: Partial<PlanInput> = {}): Plan {
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
function finishedRollout(
  hosts: string[],
  plan: Plan,
  o: {
    labels?: Record<string, Record<string, string>>;
    offline?: string[];
    outcomes?: Record<string, 'failed' | 'held'>;
  } = {},
): RolloutCarried {
  const carried = newRollout({ rolloutId: 'r', plan, startedBy: 'test' }, T0);
  const machine = new RolloutMachine(plan, carried);
  machine.targetsResolved(
    {
      hostIds: hosts.filter((h) => !o.offline?.includes(h)),
      missing: o.offline ?? [],
      excluded: [],
      labels: o.labels ?? {},
      ...(o.offline ? { offline: o.offline } : {}),
    },
    T0,
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

const numbered = (n: number, prefix = 'x1-', width = 6) =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i + 1).padStart(width, '0')}`);

describe('host ids in runs', () => {
  it('gives back ids in order: numbered runs, gaps, other widths, plain names and odd numbers', () => {
    const ids = [
      ...numbered(5, 'x1-', 3),
      'x1-007',
      'x1-008',
      'pve-fra1',
      'rack2-h9',
      'rack2-h10',
      'rack2-h11',
      'h09',
      'h10',
      'n00',
      '12345678901234567890123',
      'a1',
    ];
    const runs = encodeIds(ids);
    expect(decodeIds(runs)).toEqual(ids);
    expect(runs[0]).toEqual(['x1-', 1, 5, 3]);
    expect(runs).toContain('pve-fra1');
  });
});

describe('the compact carried state', () => {
  it('expands to exactly what the rollout carried: failures, offline hosts, domains, waves, approvals', () => {
    const hosts = [...numbered(40), 'odd-one', 'pve-b'];
    const plan = planOf(hosts, {
      waves: { canary: 1, batchSize: 10, maxInFlight: 10 },
      limits: { perLabel: { rack: 2 } },
      onOffline: 'skip',
      failureBudget: { maxFailedHosts: 5 },
    });
    const labels = Object.fromEntries(hosts.map((h, i) => [h, { rack: `r${i % 3}` }]));
    const carried = finishedRollout(hosts, plan, {
      labels,
      offline: ['pve-b'],
      outcomes: { 'x1-000007': 'failed', 'odd-one': 'held' },
    });
    carried.status.approvals.push({ gate: 'after-canary', wave: 1, by: 'alice', at: new Date(T0).toISOString() });
    carried.nonces = { abc: T0 };
    const compact = compactCarried(carried, plan);
    const sent = JSON.parse(JSON.stringify(compact)) as typeof compact;
    const planSent = JSON.parse(JSON.stringify(planWithoutHosts(plan))) as Plan;
    expect(planSent.targets.hosts).toEqual([]);
    const planBack = expandPlan(planSent, sent);
    expect(planBack).toEqual(plan);
    expect(expandCarried(sent, planBack)).toEqual(JSON.parse(JSON.stringify(carried)));
    expect(carried.status.hosts.find((h) => h.hostId === 'pve-b')?.state).toBe('skipped');
    expect(carried.status.counts.failed).toBe(1);
  });

  it('leaves a state from before the encoding as it is', () => {
    const plan = planOf(numbered(3));
    const carried = finishedRollout(numbered(3), plan);
    expect(expandCarried(carried, plan)).toBe(carried);
    expect(expandPlan(plan, carried)).toBe(plan);
  });

  it('keeps continue-as-new at 100,000 hosts under 256 KB (it was over 2 MB)', () => {
    const hosts = numbered(100_000, 'x1-', 5).map((h, i) => (i >= 50_000 ? h.replace('x1-', 'x2-') : h));
    const plan = planOf(hosts, {
      waves: { canary: 1, batchSize: 200, maxInFlight: 200 },
      limits: { perLabel: { rack: 20 } },
      failureBudget: { maxFailedHosts: 1_000 },
    });
    const labels = Object.fromEntries(hosts.map((h, i) => [h, { rack: `rack-${Math.floor(i / 40)}` }]));
    // One host in 200 failed, each with its own message.
    const outcomes = Object.fromEntries(hosts.filter((_, i) => i % 200 === 7).map((h) => [h, 'failed' as const]));
    const carried = finishedRollout(hosts, plan, { labels, outcomes });
    const input = (c: NonNullable<RolloutInput['carried']>, p: Plan): RolloutInput => ({
      rolloutId: 'bench-scale-100000-abcdef',
      plan: p,
      startedBy: 'ops@host',
      carried: c,
    });
    const before = JSON.stringify(input(carried, plan)).length;
    const after = JSON.stringify(input(compactCarried(carried, plan), planWithoutHosts(plan))).length;
    console.log(
      `continue-as-new input at 100,000 hosts (500 failed, 2,500 racks): ${(before / 1024).toFixed(0)} KB as carried before, ${(after / 1024).toFixed(1)} KB compact`,
    );
    expect(before).toBeGreaterThan(2 * 1024 * 1024);
    expect(after).toBeLessThan(256 * 1024);
    expect(expandCarried(compactCarried(carried, plan), plan).status.hosts).toEqual(carried.status.hosts);
  });
});
