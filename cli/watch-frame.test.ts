import { describe, expect, it } from 'vitest';
import type { HostStatus, RolloutInput, RolloutStatus } from '../schemas/rollout.js';
import { newRollout } from '../workflows/rollout-state.js';
import { clipLine, etaLine, fitFrame } from './watch-frame.js';

const host = (i: number, state: HostStatus['state']): HostStatus => ({
  hostId: `h${i}`,
  state,
  step: null,
  wave: 0,
  attempts: 1,
});

function rollout(states: HostStatus['state'][], extra: Partial<RolloutStatus> = {}): RolloutStatus {
  const input = { rolloutId: 'r', plan: { name: 'p' }, startedBy: 'me' } as RolloutInput;
  const { status } = newRollout(input, 0);
  return { ...status, state: 'running', hosts: states.map((s, i) => host(i, s)), ...extra };
}

describe('a watch frame', () => {
  it('clips each line to the width, counting wide characters as two columns', () => {
    expect(clipLine('abcdef', 10)).toBe('abcdef');
    expect(clipLine('abcdef', 6)).toBe('abcdef');
    expect(clipLine('abcdefg', 6)).toBe('abcde…');
    expect(clipLine('日本語のホスト', 7)).toBe('日本語…');
  });

  it('is never taller than the terminal less one line, and says what it left out', () => {
    const text = Array.from({ length: 50 }, (_, i) => `line ${i} ${'x'.repeat(100)}`).join('\n');
    const frame = fitFrame(text, 10, 40);
    expect(frame).toHaveLength(9);
    expect(frame.every((l) => [...l].length <= 39)).toBe(true);
    expect(frame.at(-1)).toMatch(/^… 42 more lines/);
    expect(fitFrame('a\nb', 10, 40)).toEqual(['a', 'b']);
  });
});

describe('the ETA', () => {
  const now = Date.parse('2026-11-30T10:00:00Z');
  it('is measured from finished hosts and how many run at once', () => {
    // 4 pending and 2 running at 60 s a host, 2 at a time: (4 + 1) × 60 s / 2 = 150 s.
    const s = rollout(['succeeded', 'succeeded', 'running', 'running', 'pending', 'pending', 'pending', 'pending']);
    expect(etaLine(s, [50_000, 70_000], now)).toBe(
      'ETA: about 3m (10:03 UTC; 1m a host over the last 2 done, 2 at a time)',
    );
    expect(etaLine(rollout(['running', 'pending']), [], now)).toMatch(/^ETA: measuring/);
  });

  it('has none while paused or waiting for an approval, or once the rollout is over', () => {
    const paused = rollout(['pending'], { paused: { reason: 'x', by: 'y', at: 'z' } });
    expect(etaLine(paused, [1000], now)).toBe('ETA: none while paused');
    const approval = rollout(['pending'], { pendingApproval: { gate: 'g', wave: 1, since: 's' } });
    expect(etaLine(approval, [1000], now)).toBe('ETA: none while waiting for an approval');
    expect(etaLine(rollout(['succeeded'], { state: 'completed' }), [1000], now)).toBeUndefined();
  });
});
