import { describe, expect, it } from 'vitest';
import { Plan } from '../schemas/plan.js';
import { RolloutMachine } from './rollout-machine.js';
import { newRollout } from './rollout-state.js';

/** 01:30 CET on 2026-03-29, half an hour before Berlin's clock jumps from 02:00 to 03:00. */
const BEFORE_THE_JUMP = Date.UTC(2026, 2, 29, 0, 30);
const THE_JUMP = Date.UTC(2026, 2, 29, 1, 0);

function sundayNightRollout(dstCorrectWindows?: () => boolean): RolloutMachine {
  const plan = Plan.parse({
    apiVersion: 'refit/v1',
    kind: 'Campaign',
    name: 'dst-test',
    targets: { hosts: ['a'] },
    steps: [{ kind: 'drain' }, { kind: 'undrain' }],
    windows: [{ days: ['sun'], start: '02:00', end: '06:00', timeZone: 'Europe/Berlin' }],
    hostDuration: '1h',
    waves: { canary: 0 },
  });
  const carried = newRollout({ rolloutId: 'r', plan, startedBy: 'test' }, BEFORE_THE_JUMP);
  // Windows alone: no presence check before a start (see rollout-machine.test.ts for those).
  const machine = new RolloutMachine(plan, carried, dstCorrectWindows, { offlineTargets: false });
  machine.targetsResolved({ hostIds: ['a'], missing: [], excluded: [], labels: {} });
  return machine;
}

describe('maintenance windows on the spring-forward day', () => {
  it('waits for the window to open at 03:00 CEST, where the clock jumps past 02:00', () => {
    const m = sundayNightRollout();
    expect(m.next({ now: BEFORE_THE_JUMP })).toEqual({ kind: 'wait', untilMs: THE_JUMP });
    expect(m.status.nextWindowAt).toBe('2026-03-29T01:00:00.000Z');
    expect(m.next({ now: THE_JUMP })).toEqual({ kind: 'start', hostId: 'a' });
  });

  it('keeps the early start that a rollout recorded before the fix, when the patch says so', () => {
    const m = sundayNightRollout(() => false);
    expect(m.next({ now: BEFORE_THE_JUMP })).toEqual({ kind: 'start', hostId: 'a' });
  });
});
