import { defineQuery } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { SEARCH_ATTRIBUTES } from '../schemas/names.js';
import type { RolloutStatus, StepRecord } from '../schemas/rollout.js';

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

export const rolloutIdKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.rolloutId, SearchAttributeType.KEYWORD);
export const hostIdKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.hostId, SearchAttributeType.KEYWORD);
export const phaseKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.phase, SearchAttributeType.KEYWORD);
