import { describe, expect, it } from 'vitest';
import { checkIssueTargets, renderIssueTargets, type BenchResults } from './report.js';

describe("issue #17's targets", () => {
  it('lists all six, each not measured when its section did not run', () => {
    const targets = checkIssueTargets({ throughput: [], ansible: [], modelled: [] });
    expect(targets.map((t) => t.target)).toEqual(['≤ 2×', '≤ 1.5×', '≤ 45 ms', '≥ 5×', 'bounded, under 256 KB', '≤ 6']);
    expect(targets.every((t) => t.met === null)).toBe(true);
    expect(renderIssueTargets(targets).split('\n')).toHaveLength(8);
  });

  it('judges what was measured, and leaves a size other than 100,000 hosts unjudged', () => {
    const r = {
      throughput: [],
      ansible: [],
      modelled: [],
      history: { steps: ['drain', 'verify'], events: 19, perStep: 9.5, byType: {}, state: 'completed' },
      carried: {
        hosts: 100_000,
        failed: 500,
        racks: 2_500,
        beforeKb: 13_361,
        compactKb: 116,
        firstRun: { planKb: 1_000, resolvedKb: 5_000 },
        ceilingHosts: { carried: 1_700_000, plan: 200_000, resolved: 40_000 },
        ms: 900,
      },
    } satisfies BenchResults;
    const [, , , , carried, history] = checkIssueTargets(r);
    expect(carried).toMatchObject({ met: true, measured: expect.stringContaining('116 KB at 100000 hosts') as string });
    expect(history).toMatchObject({ met: false, measured: '9.50 (19 events, 2 steps)' });
    expect(checkIssueTargets({ ...r, carried: { ...r.carried, hosts: 1_000 } })[4]?.met).toBeNull();
  });
});
