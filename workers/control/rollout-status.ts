import type { Client, WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import {
  ROLLOUT_CANCELLED,
  ROLLOUT_FAILED,
  SEARCH_ATTRIBUTES,
  hostWorkflowId,
  stepLabel,
} from '../../schemas/names.js';
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
  if (execution === 'COMPLETED' || execution === 'FAILED') {
    const end = await rolloutEnd(handle).catch(() => undefined);
    if (end !== undefined) return withFates(end);
  }
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

/**
 * How a rollout ended, whatever Temporal calls it: a completed rollout's result, or the status that
 * a failed or cancelled one carries as its failure's details (decision 0017). Any other failure
 * (terminated, timed out, refused at start) is thrown as Temporal reports it.
 */
export async function rolloutEnd(handle: WorkflowHandle): Promise<RolloutStatus> {
  try {
    return (await handle.result()) as RolloutStatus;
  } catch (err) {
    const cause = err instanceof WorkflowFailedError ? err.cause : undefined;
    if (
      cause instanceof ApplicationFailure &&
      (cause.type === ROLLOUT_FAILED || cause.type === ROLLOUT_CANCELLED) &&
      cause.details?.[0] !== undefined
    )
      return cause.details[0] as RolloutStatus;
    throw err;
  }
}

/** Each host with what became of it (`hostFate`), so a reader of the JSON needs no rules of its own. */
function withFates(status: RolloutStatus): RolloutStatus {
  for (const h of status.hosts) h.fate = hostFate(h);
  return status;
}

/**
 * How long this rollout's most recently started hosts that have finished took, in ms (host
 * workflow start to close, as Temporal recorded it), at most `limit` of them: what an ETA is
 * measured from.
 */
export async function finishedHostDurations(client: Client, rolloutId: string, limit = 50): Promise<number[]> {
  const query = `${SEARCH_ATTRIBUTES.rolloutId} = ${JSON.stringify(rolloutId)} AND WorkflowType = "hostMaintenance" AND ExecutionStatus != "Running"`;
  const out: number[] = [];
  for await (const wf of client.workflow.list({ query, pageSize: limit })) {
    if (wf.closeTime !== undefined) out.push(wf.closeTime.getTime() - wf.startTime.getTime());
    if (out.length >= limit) break;
  }
  return out;
}
