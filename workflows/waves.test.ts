import { describe, expect, it } from 'vitest';
import { planWaves, resolveCount } from './waves.js';

const hosts = Array.from({ length: 10 }, (_, i) => `h${i}`);

describe('planWaves', () => {
  it('puts the canary alone first, then batches of the given size', () => {
    expect(planWaves(hosts, { canary: 1, batchSize: 4, maxInFlight: 4 })).toEqual([
      ['h0'],
      ['h1', 'h2', 'h3', 'h4'],
      ['h5', 'h6', 'h7', 'h8'],
      ['h9'],
    ]);
  });

  it('reads a percentage of the whole target set, rounded up', () => {
    const waves = planWaves(hosts, { canary: 0, batchSize: '25%', maxInFlight: 4 });
    expect(waves.map((w) => w.length)).toEqual([3, 3, 3, 1]);
  });

  it('covers every host exactly once', () => {
    const waves = planWaves(hosts, { canary: 2, batchSize: '30%', maxInFlight: 1 });
    expect(waves.flat().sort()).toEqual([...hosts].sort());
  });

  it('copes with fewer hosts than the canary', () => {
    expect(planWaves(['a'], { canary: 3, batchSize: 2, maxInFlight: 1 })).toEqual([['a']]);
    expect(planWaves([], { canary: 1, batchSize: 2, maxInFlight: 1 })).toEqual([]);
  });
});

describe('resolveCount', () => {
  it('never rounds a percentage down to zero hosts', () => expect(resolveCount('1%', 10)).toBe(1));
  it('keeps counts as they are', () => expect(resolveCount(7, 1000)).toBe(7));
});
