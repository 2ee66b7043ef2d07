import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import { hostWorkflowId, stepLabel } from '../../schemas/names.js';
import { hostFate, type RolloutState, type RolloutStatus } from '../../schemas/rollout.js';
import { hostProgressQuery, rolloutStatusQuery } from '../../workflows/messages.js';
import { UsageError } from '../../schemas/errors.js';

const EXECUTION_STATE: Record<string, RolloutState> = {
  RUNNING: 'running',
  COMPLETED: 'completed',
  FAILED: 'failed',
  TERMINATED: 'failed',
  TIMED_OUT: 'failed',
  CANCELLED: 'cancelled',
  CONTINUED_AS_NEW: 'running',
};

/**
 * The rollout as the operator sees it: the workflow's own status, with the current step of each
 * running host asked of that host's workflow.
 */
export async function getRolloutStatus(client: Client, rolloutId: string): Promise<RolloutStatus> {
  const handle = client.workflow.getHandle(rolloutId);
  let execution: string;
  try {
    execution = (await handle.describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new UsageError(`no rollout ${rolloutId}`, 1);
    throw err;
  }
  if (execution === 'COMPLETED') return withFates((await handle.result()) as RolloutStatus);
  const status = withFates(await handle.query(rolloutStatusQuery));
  if (execution !== 'RUNNING') return { ...status, state: EXECUTION_STATE[execution] ?? 'failed' };
  await Promise.all(
    status.hosts
      .filter((h) => h.state === 'running')
      .map(async (host) => {
        try {
          const progress = await client.workflow.getHandle(hostWorkflowId(host.hostId)).query(hostProgressQuery);
          if (progress.rolloutId !== rolloutId) return;
          const current = progress.current ?? null;
          host.step = current ? stepLabel(current.kind, current.mode) : (progress.steps.at(-1)?.kind ?? null);
        } catch {
          // The host workflow may not have started yet; its step stays unknown.
        }
      }),
  );
  return withFates(status);
}

/** Each host with what became of it (`hostFate`), so a reader of the JSON needs no rules of its own. */
function withFates(status: RolloutStatus): RolloutStatus {
  for (const h of status.hosts) h.fate = hostFate(h);
  return status;
}
