import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { SEARCH_ATTRIBUTES } from '../schemas/names.js';
import type { HostAction, OperatorAction, RolloutStatus, StepRecord } from '../schemas/rollout.js';

/** Named queries, so `temporal workflow query --name status` works as well as `refit`. */
export const rolloutStatusQuery = defineQuery<RolloutStatus>('status');

export interface HostProgress {
  hostId: string;
  rolloutId: string;
  /** The step running now, with its mode; null between steps. */
  current: { index: number; kind: string; mode: 'apply' | 'revert' } | null;
  steps: StepRecord[];
}
export const hostProgressQuery = defineQuery<HostProgress>('hostProgress');

/**
 * Operator actions on a rollout, each as an update (refused with a reason when it does not apply or
 * `by` is no valid operator name; failed when its audit event cannot be stored; otherwise answered
 * with the new status) and as a signal of the same name (for `temporal workflow signal`; one that is
 * refused or cannot be audited is noted in the status message). Each is in the audit trail before it
 * changes the rollout.
 */
export const OPERATOR_ACTIONS = ['pause', 'resume', 'cancel', 'approve'] as const;
export type OperatorActionName = (typeof OPERATOR_ACTIONS)[number];
export const HOST_ACTIONS = ['retryHost', 'skipHost'] as const;
export type HostActionName = (typeof HOST_ACTIONS)[number];

export const operatorUpdates = Object.fromEntries(
  OPERATOR_ACTIONS.map((name) => [name, defineUpdate<RolloutStatus, [OperatorAction]>(name)]),
) as Record<OperatorActionName, ReturnType<typeof defineUpdate<RolloutStatus, [OperatorAction]>>>;
export const operatorSignals = Object.fromEntries(
  OPERATOR_ACTIONS.map((name) => [name, defineSignal<[OperatorAction]>(name)]),
) as Record<OperatorActionName, ReturnType<typeof defineSignal<[OperatorAction]>>>;
export const hostUpdates = Object.fromEntries(
  HOST_ACTIONS.map((name) => [name, defineUpdate<RolloutStatus, [HostAction]>(name)]),
) as Record<HostActionName, ReturnType<typeof defineUpdate<RolloutStatus, [HostAction]>>>;
export const hostSignals = Object.fromEntries(
  HOST_ACTIONS.map((name) => [name, defineSignal<[HostAction]>(name)]),
) as Record<HostActionName, ReturnType<typeof defineSignal<[HostAction]>>>;

/** Sent by a rollout to a host workflow it started: stop after the running step and undo. */
export const abortHostSignal = defineSignal<[OperatorAction]>('abort');

export const rolloutIdKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.rolloutId, SearchAttributeType.KEYWORD);
export const hostIdKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.hostId, SearchAttributeType.KEYWORD);
export const phaseKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.phase, SearchAttributeType.KEYWORD);

/**
 * Patch: Temporal reads like refit (decision 0017): child workflows and activities carry a summary
 * (`sim-005`, `sim-005 · ovs-convert`), the rollout keeps RefitPhase current and fails its workflow
 * when it ends failed or cancelled.
 */
export const SUMMARIES = 'temporal-reads-like-refit';
