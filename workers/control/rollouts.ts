import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { ActionSignature } from '../../schemas/operators.js';
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import { WorkflowIdConflictPolicy } from '@temporalio/client';
import { parsePlan, planProblemText, type Plan } from '../../schemas/plan.js';
import type { RolloutInput } from '../../schemas/rollout.js';
import type { fleetRollout } from '../../workflows/rollout.js';
import { phaseKey, rolloutIdKey } from '../../workflows/messages.js';
import { UsageError } from '../../schemas/errors.js';

/** Read and validate a plan file; every problem is named by its path, line and column. */
export async function loadPlan(file: string): Promise<Plan> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new UsageError(`cannot read plan ${file}: ${(cause as Error).message}`);
  }
  const parsed = parsePlan(text);
  if (!parsed.ok) {
    const lines = parsed.problems.map((p) => `  ${planProblemText(p)}`);
    throw new UsageError(`plan ${file} is invalid; nothing was started:\n${lines.join('\n')}`);
  }
  return parsed.plan;
}

export function newRolloutId(planName: string, now = new Date()): string {
  const stamp = now.toISOString().slice(0, 16).replace(/[-:]/g, '').replace('T', '-');
  return `${planName}-${stamp}-${randomBytes(2).toString('hex')}`;
}

export async function startRollout(
  client: Client,
  taskQueue: string,
  plan: Plan,
  rolloutId: string,
  opts: { historyLimit?: number; startedBy?: string; signedStart?: ActionSignature } = {},
): Promise<void> {
  const input: RolloutInput = { rolloutId, plan, startedBy: `${os.userInfo().username}@${os.hostname()}`, ...opts };
  await client.workflow.start<typeof fleetRollout>('fleetRollout', {
    workflowId: rolloutId,
    taskQueue,
    args: [input],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    // What the Temporal UI shows beside the id: the plan and its steps.
    staticSummary: `refit rollout · plan ${plan.name}`,
    staticDetails: `steps: ${plan.steps.map((s) => s.kind).join(' → ')}`,
    typedSearchAttributes: [
      { key: rolloutIdKey, value: rolloutId },
      { key: phaseKey, value: 'running' },
    ],
  });
}

export interface RolloutRow {
  id: string;
  state: string;
  startedAt: string;
  closedAt: string | null;
}

/**
 * Rollouts, newest first, at most `limit`: one row each, however many runs it continued as new into.
 * A row has the newest run's state (a closed one shows the phase it recorded) and the first run's start.
 */
export async function listRollouts(client: Client, limit: number): Promise<RolloutRow[]> {
  const newest = new Map<string, WorkflowExecutionInfo>();
  // Visibility lags behind: for a moment a run that continued as new can still be listed as running
  // next to its successor, so the later start wins.
  const current = client.workflow.list({
    query: 'WorkflowType = "fleetRollout" AND ExecutionStatus != "ContinuedAsNew"',
  });
  for await (const wf of current) {
    const seen = newest.get(wf.workflowId);
    if (seen === undefined && newest.size >= limit) break;
    if (seen === undefined || wf.startTime > seen.startTime) newest.set(wf.workflowId, wf);
  }
  const firstStart = await firstStarts(client, [...newest.keys()]);
  return [...newest.values()].map((wf) => {
    const phase = wf.typedSearchAttributes.get(phaseKey);
    const state =
      wf.status.name === 'RUNNING'
        ? 'running'
        : wf.status.name === 'CANCELLED'
          ? 'cancelled'
          : (phase ?? wf.status.name.toLowerCase());
    const started = firstStart.get(wf.workflowId);
    return {
      id: wf.workflowId,
      state,
      startedAt: (started !== undefined && started < wf.startTime ? started : wf.startTime).toISOString(),
      closedAt: wf.closeTime?.toISOString() ?? null,
    };
  });
}

/** When each of these rollouts started: the earliest of its runs that continued as new. */
async function firstStarts(client: Client, ids: string[]): Promise<Map<string, Date>> {
  const first = new Map<string, Date>();
  if (ids.length === 0) return first;
  const query = `WorkflowType = "fleetRollout" AND ExecutionStatus = "ContinuedAsNew" AND WorkflowId IN (${ids.map((id) => JSON.stringify(id)).join(', ')})`;
  for await (const wf of client.workflow.list({ query })) {
    const seen = first.get(wf.workflowId);
    if (seen === undefined || wf.startTime < seen) first.set(wf.workflowId, wf.startTime);
  }
  return first;
}
