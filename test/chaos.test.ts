import { describe, expect, it } from 'vitest';
import { Cleanup } from '../bench/harness.js';
import { runChaos } from '../bench/chaos/run-chaos.js';
import { renderResult } from '../bench/chaos/report.js';
import { CHAOS_TARGETS } from '../bench/chaos/schedule.js';

/*
 * The short chaos run (`npm run chaos` is the long one): its own stack, the controller worker and a
 * SIMULATED fleet of three hosts as processes, ten SIGKILLs of seed 7 spread over all four targets.
 * Needs the build (the children run from dist/). Takes about two to three minutes.
 */
describe('chaos: ten kills of controller, fleet, nats-server and Temporal during a rollout', () => {
  it('completes the rollout with every step effect once, the audit intact and no host workflow open', async () => {
    const cleanup = new Cleanup();
    const lines: string[] = [];
    try {
      const result = await runChaos({ kills: 10, seed: 7, hosts: 3, say: (l) => lines.push(l) }, cleanup);
      const report = `${renderResult(result)}\n${lines.join('\n')}`;
      expect(
        result.kills.map((k) => k.target),
        report,
      ).toHaveLength(10);
      expect(new Set(result.kills.map((k) => k.target)), report).toEqual(new Set(CHAOS_TARGETS));
      expect(result.failures, report).toEqual([]);
      expect(result.rollout, report).toMatchObject({ state: 'completed', succeeded: 3, total: 3 });
      expect(
        result.effects.every((e) => e.effects.undrain === 1),
        report,
      ).toBe(true);
    } finally {
      await cleanup.runAll((l) => lines.push(l));
    }
  }, 480_000);
});
