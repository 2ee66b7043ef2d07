import { patched, proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import type { ControllerActivities } from '../schemas/activities.js';
import type { AuditRecordInput } from '../schemas/audit.js';

import { SUMMARIES } from './messages.js';

const OPTIONS: ActivityOptions = {
  startToCloseTimeout: '30s',
  // Retried until stored: a transition is not done before its audit event is.
  retry: { initialInterval: '1s', maximumInterval: '10s', nonRetryableErrorTypes: ['InvalidAuditEvent'] },
};
const { recordAudit } = proxyActivities<ControllerActivities>(OPTIONS);

/**
 * Record a rollout or host transition on its audit chain, at workflow time. The activity is
 * summarised (`sim-005 · host.started`) where the workflow took the summaries patch.
 */
export async function audit(input: AuditRecordInput): Promise<void> {
  const record = { at: new Date().toISOString(), ...input };
  if (!patched(SUMMARIES)) return void (await recordAudit(record));
  await recordAudit.executeWithOptions({ ...OPTIONS, summary: `${input.hostId ?? input.rolloutId} · ${input.type}` }, [
    record,
  ]);
}

/** An operator's name as an audit actor. */
export const userActor = (by: string): `user:${string}` => `user:${by}`;
