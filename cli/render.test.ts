import { describe, expect, it } from 'vitest';
import type { RolloutStatus } from '../schemas/rollout.js';
import { bar, renderStatus, summaryLine, wrapped } from './render.js';

const status: RolloutStatus = {
  id: 'ovs-sriov-20261122-0300-abcd',
  name: 'ovs-sriov',
  state: 'running',
  startedBy: 'root@box',
  startedAt: '2026-11-22T03:00:00.000Z',
  missingHosts: ['h9'],
  waves: [
    { index: 0, hosts: ['h1'], state: 'done' },
    { index: 1, hosts: ['h2', 'h3'], state: 'running' },
  ],
  hosts: [
    { hostId: 'h1', state: 'succeeded', step: 'undrain', wave: 0, attempts: 1 },
    { hostId: 'h2', state: 'running', step: 'reboot', wave: 1, attempts: 1 },
    { hostId: 'h3', state: 'failed', step: 'verify', wave: 1, error: 'loss 40%', attempts: 1 },
  ],
  counts: { pending: 0, running: 1, succeeded: 1, failed: 1, 'rolled-back': 0, held: 0, skipped: 0 },
  failureBudget: { maxFailedHosts: 1, failed: 1 },
  excludedHosts: [],
  currentWave: 1,
  paused: null,
  pendingApproval: null,
  approvals: [],
  cancelled: null,
  nextWindowAt: null,
  runs: 0,
};

describe('renderStatus', () => {
  it('shows a bar per wave, the running and failed hosts with their step, and the absent hosts', () => {
    const text = renderStatus(status);
    expect(text).toContain('canary  [########################] 1/1');
    expect(text).toContain('wave 1  [############............] 1/2');
    expect(text).toMatch(/h2\s+running\s+reboot/);
    expect(text).toMatch(/h3\s+failed\s+verify\s+\(loss 40%\)/);
    expect(text).toContain('not present: h9');
    expect(text).toContain('failure budget: 1/1 used');
  });

  it('says why a rollout is paused or waiting, and who approved what', () => {
    const text = renderStatus({
      ...status,
      state: 'paused',
      paused: { reason: 'failure budget spent', by: 'refit', at: '2026-11-22T03:10:00.000Z' },
      pendingApproval: { gate: 'after-canary', wave: 1, since: '2026-11-22T03:05:00.000Z' },
      approvals: [{ gate: 'before-wave-1', wave: 1, by: 'alice', at: '2026-11-22T03:01:00.000Z' }],
      nextWindowAt: '2026-11-28T01:00:00.000Z',
    });
    expect(text).toContain('PAUSED by refit: failure budget spent');
    expect(text).toContain('waiting for approval (after-canary)');
    expect(text).toContain('approved before-wave-1 by alice');
    expect(text).toContain('next maintenance window opens 2026-11-28T01:00:00.000Z');
  });

  it('counts absent hosts in the summary, so they cannot pass unseen', () => {
    expect(summaryLine({ ...status, state: 'failed' })).toBe(
      'rollout ovs-sriov-20261122-0300-abcd failed: 1/4 hosts succeeded',
    );
  });

  it('lists every host of an ended rollout by what became of it, offline ones told apart', () => {
    const offline = { since: '2026-11-22T03:00:00.000Z' };
    const text = renderStatus({
      ...status,
      state: 'completed',
      hosts: [
        { hostId: 'h1', state: 'succeeded', step: 'undrain', wave: 0, attempts: 1 },
        { hostId: 'h2', state: 'skipped', step: null, wave: -1, attempts: 0, offline },
        {
          hostId: 'h3',
          state: 'failed',
          step: null,
          wave: 1,
          attempts: 0,
          offline: { ...offline, waitUntil: '2026-11-22T03:30:00.000Z' },
        },
        {
          hostId: 'h4',
          state: 'succeeded',
          step: 'undrain',
          wave: 1,
          attempts: 1,
          offline: { ...offline, back: '2026-11-22T03:05:00.000Z' },
        },
      ],
    });
    expect(text).toContain('what became of each host:');
    expect(text).toContain('  done (1): h1');
    expect(text).toContain('  done-after-offline (1): h4');
    expect(text).toContain('  skipped-offline (1): h2');
    expect(text).toContain('  waited-then-failed (1): h3');
    expect(text).toContain('  not present (1): h9');
  });

  it('says in the summary how many hosts were skipped or failed for being offline', () => {
    const skipped = {
      hostId: 'h2',
      state: 'skipped' as const,
      step: null,
      wave: -1,
      attempts: 0,
      offline: { since: 'x' },
    };
    expect(summaryLine({ ...status, missingHosts: [], state: 'completed', hosts: [status.hosts[0]!, skipped] })).toBe(
      'rollout ovs-sriov-20261122-0300-abcd completed: 1/2 hosts succeeded (1 skipped offline)',
    );
  });

  it('wraps a long list of hosts within 80 columns', () => {
    const hosts = Array.from({ length: 40 }, (_, i) => `sim-${String(i).padStart(3, '0')}`);
    const lines = wrapped('  done (40):', hosts);
    expect(lines.length).toBeGreaterThan(1);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
    expect(
      lines
        .join(' ')
        .split(/\s+/)
        .filter((w) => w.startsWith('sim-')),
    ).toEqual(hosts);
  });

  it('draws empty and full bars', () => {
    expect(bar(0, 4, 4)).toBe('[....]');
    expect(bar(4, 4, 4)).toBe('[####]');
  });
});
