import { proxyActivities } from '@temporalio/workflow';
import type { DispatchRequest } from '../schemas/activities.js';
import type { BenchActivities } from './activities.js';

/** Bench-only workflows, on their own task queue; never part of the controller's bundle. */

/** One bare activity: the baseline for a one-step hostMaintenance workflow. */
export async function bareStep(request: DispatchRequest): Promise<void> {
  const { noopStep } = proxyActivities<BenchActivities>({ startToCloseTimeout: '1m', retry: { maximumAttempts: 1 } });
  await noopStep(request);
}
