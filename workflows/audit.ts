import {
  patched,
  proxyActivities,
  proxyLocalActivities,
  type ActivityOptions,
  type LocalActivityOptions,
} from '@temporalio/workflow';
import type { ControllerActivities } from '../schemas/activities.js';
import type { AuditRecordInput } from '../schemas/audit.js';

import { SUMMARIES } from './messages.js';

const OPTIONS: ActivityOptions = {
  startToCloseTimeout: '30s',
  // Retried until stored: a transition is not done before its audit event is.
  retry: { initialInterval: '1s', maximumInterval: '10s', nonRetryableErrorTypes: ['InvalidAuditEvent'] },
};
const { recordAudit } = proxyActivities<ControllerActivities>(OPTIONS);

const LOCAL_OPTIONS: LocalActivityOptions = {
  startToCloseTimeout: OPTIONS.startToCloseTimeout,
  ...(OPTIONS.retry ? { retry: OPTIONS.retry } : {}),
};
const local = proxyLocalActivities<ControllerActivities>(LOCAL_OPTIONS);

/**
 * Record a rollout or host transition on its audit chain, at workflow time. The activity is
 * summarised (`sim-005 · host.started`) where the workflow took the summaries patch. With
 * `localActivity` (host workflows that took `lean-host-history`) it runs as a local activity.
 */
export async function audit(input: AuditRecordInput, { localActivity = false } = {}): Promise<void> {
  const record = { at: new Date().toISOString(), ...input };
  if (localActivity)
    // One marker in the history instead of an activity's three events and a workflow task's three. The
    // workflow goes on only once the event is stored; a local activity run again after a lost workflow
    // task has the same activity id, so the event id is the same and the chain stores it once.
    return void (await local.recordAudit.executeWithOptions(
      { ...LOCAL_OPTIONS, summary: `${input.hostId ?? input.rolloutId} · ${input.type}` },
      [record],
    ));
  if (!patched(SUMMARIES)) return void (await recordAudit(record));
  await recordAudit.executeWithOptions({ ...OPTIONS, summary: `${input.hostId ?? input.rolloutId} · ${input.type}` }, [
    record,
  ]);
}

/** An operator's name as an audit actor. */
export const userActor = (by: string): `user:${string}` => `user:${by}`;
