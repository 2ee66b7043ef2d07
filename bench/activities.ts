import type { DispatchRequest } from '../schemas/activities.js';
import type { StepOutcome } from '../schemas/steps.js';

/**
 * The baseline: an activity that does nothing but answer with a result of the same shape as a
 * host step's, on the same dev server and in the same process as the controller's activities.
 */
export const benchActivities = {
  async noopStep(req: DispatchRequest): Promise<StepOutcome> {
    return { changed: false, summary: `no-op ${req.kind} on ${req.hostId}`, before: {}, after: {} };
  },
};

export type BenchActivities = typeof benchActivities;
