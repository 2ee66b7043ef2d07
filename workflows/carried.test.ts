import { describe, expect, it } from 'vitest';
import type { Plan } from '../schemas/plan.js';
import { compactCarried, decodeIds, encodeIds, expandCarried, expandPlan, planWithoutHosts } from './carried.js';
import { MODEL_T0 as T0, finishedRollout, modelCarried, modelPlan as planOf, numberedHosts } from './carried-model.js';

const numbered = numberedHosts;

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
    const m = modelCarried(100_000);
    console.log(
      `continue-as-new input at 100,000 hosts (${m.failed} failed, ${m.racks} racks): ${(m.beforeBytes / 1024).toFixed(0)} KB as carried before, ${(m.compactBytes / 1024).toFixed(1)} KB compact`,
    );
    expect(m.failed).toBe(500);
    expect(m.beforeBytes).toBeGreaterThan(2 * 1024 * 1024);
    expect(m.compactBytes).toBeLessThan(256 * 1024);
    expect(expandCarried(compactCarried(m.carried, m.plan), m.plan).status.hosts).toEqual(m.carried.status.hosts);
  });
});
