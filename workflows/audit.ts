import { proxyActivities } from '@temporalio/workflow';
import type { ControllerActivities } from '../schemas/activities.js';
import type { AuditRecordInput } from '../schemas/audit.js';

const { recordAudit } = proxyActivities<ControllerActivities>({
  startToCloseTimeout: '30s',
  // Retried until stored: a transition is not done before its audit event is.
  retry: { initialInterval: '1s', maximumInterval: '10s', nonRetryableErrorTypes: ['InvalidAuditEvent'] },
});

/** Record a rollout or host transition on its audit chain, at workflow time. */
export async function audit(input: AuditRecordInput): Promise<void> {
  await recordAudit({ at: new Date().toISOString(), ...input });
}

/** An operator's name as an audit actor. */
export const userActor = (by: string): `user:${string}` => `user:${by}`;
