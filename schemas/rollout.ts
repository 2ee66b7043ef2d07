import { z } from 'zod';
import type { Plan } from './plan.js';
import type { PlanStep, StepOutcome } from './steps.js';

export const ROLLOUT_STATES = ['waiting', 'running', 'paused', 'completed', 'failed', 'cancelled'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

export const HOST_STATES = ['pending', 'running', 'succeeded', 'failed', 'rolled-back', 'held', 'skipped'] as const;
export type HostState = (typeof HOST_STATES)[number];

export interface RolloutInput {
  rolloutId: string;
  plan: Plan;
  /** Who started it (user@host of the CLI). */
  startedBy: string;
}

export interface HostMaintenanceInput {
  rolloutId: string;
  hostId: string;
  steps: PlanStep[];
  onHostFailure: Plan['onHostFailure'];
}

export interface StepRecord {
  index: number;
  kind: PlanStep['kind'];
  mode: 'apply' | 'revert';
  state: 'running' | 'succeeded' | 'failed';
  outcome?: StepOutcome;
  error?: string;
}

export interface HostMaintenanceResult {
  hostId: string;
  state: Extract<HostState, 'succeeded' | 'failed' | 'rolled-back' | 'held'>;
  steps: StepRecord[];
  error?: string;
}

export interface HostStatus {
  hostId: string;
  state: HostState;
  /** The step running now, or the last one the host reached. */
  step: string | null;
  wave: number;
  error?: string;
}

/** Answer of the rollout's `status` query; `refit rollout status --json` prints this. */
export interface RolloutStatus {
  id: string;
  name: string;
  state: RolloutState;
  startedBy: string;
  startedAt: string;
  /** Named hosts that were not present in the inventory. */
  missingHosts: string[];
  waves: { index: number; hosts: string[]; state: 'pending' | 'running' | 'done' }[];
  hosts: HostStatus[];
  counts: Record<HostState, number>;
  failureBudget: { maxFailedHosts: number; failed: number };
  message?: string;
}

/** What `refit rollout status --json` guarantees, checked by the CLI's own tests. */
export const RolloutStatusJson = z.object({
  id: z.string(),
  state: z.enum(ROLLOUT_STATES),
  hosts: z.array(z.object({ hostId: z.string(), state: z.enum(HOST_STATES), step: z.string().nullable() })),
});
