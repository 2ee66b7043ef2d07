import { describe, expect, it } from 'vitest';
import type { PlanStep } from '../schemas/steps.js';
import { cutIntoRuns, DEFAULT_STEP_TIMEOUT_MS, runTimeoutMs } from './step-runs.js';

const kinds = (...names: PlanStep['kind'][]) => names.map((kind) => ({ kind }));

describe('cutIntoRuns', () => {
  it('cuts the whole campaign after the reboot: the workflow waits for the new boot id there', () => {
    expect(cutIntoRuns(kinds('drain', 'ovs-convert', 'sriov-enable', 'reboot', 'verify', 'undrain'))).toEqual([
      [0, 1, 2, 3],
      [4, 5],
    ]);
  });

  it('starts a run at each drain, whose destinations are chosen when it is dispatched', () => {
    expect(cutIntoRuns(kinds('verify', 'drain', 'ovs-convert', 'undrain', 'drain', 'undrain'))).toEqual([
      [0],
      [1, 2, 3],
      [4, 5],
    ]);
  });

  it('gives a reboot followed by a reboot a run each, and a last reboot ends the last run', () => {
    expect(cutIntoRuns(kinds('reboot', 'reboot'))).toEqual([[0], [1]]);
    expect(cutIntoRuns(kinds('nic-tuning', 'net-health', 'reboot'))).toEqual([[0, 1, 2]]);
  });

  it('keeps steps without a decision between them in one run, in plan order', () => {
    expect(cutIntoRuns(kinds('ovs-convert', 'ovs-bond', 'vxlan-tunnel', 'nic-tuning', 'verify'))).toEqual([
      [0, 1, 2, 3, 4],
    ]);
  });

  it('has no run for no steps, and one run of one for one step', () => {
    expect(cutIntoRuns([])).toEqual([]);
    expect(cutIntoRuns(kinds('verify'))).toEqual([[0]]);
  });

  it('covers every step exactly once', () => {
    const steps = kinds('drain', 'reboot', 'drain', 'verify', 'reboot', 'undrain', 'drain');
    expect(cutIntoRuns(steps).flat()).toEqual(steps.map((_, i) => i));
  });
});

describe('runTimeoutMs', () => {
  it("adds up the steps' timeouts, a step without one counting as one dispatched alone", () => {
    expect(runTimeoutMs([{ timeout: 60_000 }, {}, { timeout: 1_000 }])).toBe(61_000 + DEFAULT_STEP_TIMEOUT_MS);
  });
});
