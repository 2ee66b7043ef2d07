import { z } from 'zod';
import { HOST_FATES, HOST_STATES, ROLLOUT_STATES } from './rollout.js';

/**
 * What `refit rollout status --json` guarantees, checked by the CLI's own tests. Kept apart from
 * `rollout.ts`, which workflows import: zod would otherwise weigh on the workflow bundle.
 */
export const RolloutStatusJson = z.object({
  id: z.string(),
  state: z.enum(ROLLOUT_STATES),
  hosts: z.array(
    z.object({
      hostId: z.string(),
      state: z.enum(HOST_STATES),
      step: z.string().nullable(),
      /** What became of the host (done, skipped-offline, waited-then-failed, …). */
      fate: z.enum(HOST_FATES),
    }),
  ),
});
