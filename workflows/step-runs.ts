import type { PlanStep } from '../schemas/steps.js';

/** Host workflows that took it dispatch a run of consecutive steps in one activity (decision 0037). */
export const STEP_RUNS = 'step-runs';

/** A step's time when its plan gives none (the activity's start-to-close timeout), alone or in a run. */
export const DEFAULT_STEP_TIMEOUT_MS = 2 * 60 * 60 * 1000;

/**
 * Cut a host's steps into runs: consecutive steps that need no decision of the workflow between
 * them, each run dispatched as one activity. Every point where the workflow decides is a boundary:
 * - after a reboot, the workflow waits for the new boot id (awaitReboot) before the next step;
 * - before a drain, the controller chooses the VMs' destinations from the fleet as it is when the
 *   drain is dispatched, not when the run before it started.
 * Operator gates, approvals and maintenance windows are the rollout's, before a host starts; failures
 * and aborts end the run where they happen. Returns the steps' indexes, run by run, in plan order.
 */
export function cutIntoRuns(steps: readonly Pick<PlanStep, 'kind'>[]): number[][] {
  const runs: number[][] = [];
  let current: number[] = [];
  for (const [index, step] of steps.entries()) {
    if (step.kind === 'drain' && current.length > 0) {
      runs.push(current);
      current = [];
    }
    current.push(index);
    if (step.kind === 'reboot') {
      runs.push(current);
      current = [];
    }
  }
  if (current.length > 0) runs.push(current);
  return runs;
}

/** A run's time: the sum of its steps' (the activity's start-to-close timeout). */
export function runTimeoutMs(steps: readonly Pick<PlanStep, 'timeout'>[]): number {
  return steps.reduce((sum, step) => sum + (step.timeout ?? DEFAULT_STEP_TIMEOUT_MS), 0);
}
