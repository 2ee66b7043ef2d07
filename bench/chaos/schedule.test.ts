import { describe, expect, it } from 'vitest';
import { CHAOS_TARGETS, chaosSchedule, prng } from './schedule.js';

describe('the chaos schedule', () => {
  it('is the same for the same seed and differs for another', () => {
    const a = chaosSchedule({ kills: 50, seed: 42 });
    expect(chaosSchedule({ kills: 50, seed: 42 })).toEqual(a);
    expect(chaosSchedule({ kills: 50, seed: 43 })).not.toEqual(a);
  });

  it('kills every target once in each round of four, in a shuffled order', () => {
    const kills = chaosSchedule({ kills: 48, seed: 7 });
    expect(kills.map((k) => k.n)).toEqual(Array.from({ length: 48 }, (_, i) => i + 1));
    for (let round = 0; round < 12; round++) {
      const targets = kills.slice(round * 4, round * 4 + 4).map((k) => k.target);
      expect([...targets].sort()).toEqual([...CHAOS_TARGETS].sort());
    }
    const orders = new Set(
      Array.from({ length: 12 }, (_, r) =>
        kills
          .slice(r * 4, r * 4 + 4)
          .map((k) => k.target)
          .join(),
      ),
    );
    expect(orders.size).toBeGreaterThan(1);
  });

  it('keeps its waits within their bounds', () => {
    const kills = chaosSchedule({ kills: 200, seed: 1, afterMs: [100, 200], downMs: [0, 50] });
    for (const k of kills) {
      expect(k.afterMs).toBeGreaterThanOrEqual(100);
      expect(k.afterMs).toBeLessThanOrEqual(200);
      expect(k.downMs).toBeGreaterThanOrEqual(0);
      expect(k.downMs).toBeLessThanOrEqual(50);
    }
    expect(new Set(kills.map((k) => k.afterMs)).size).toBeGreaterThan(20);
  });

  it('draws numbers in [0, 1) from its seed', () => {
    const random = prng(123);
    const draws = Array.from({ length: 1000 }, random);
    expect(draws.every((d) => d >= 0 && d < 1)).toBe(true);
    expect(prng(123)()).toBe(draws[0]);
    expect(Math.abs(draws.reduce((a, b) => a + b, 0) / 1000 - 0.5)).toBeLessThan(0.05);
  });
});
