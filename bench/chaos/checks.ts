import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import type { Client } from '@temporalio/client';
import { readStreamState, readTrail } from '../../activities/audit/read.js';
import { verifyTrail } from '../../activities/audit/verify.js';
import { loadSimState } from '../../activities/host/sim/state.js';
import { CommandStatus } from '../../schemas/command.js';
import { BUCKETS, hostWorkflowId } from '../../schemas/names.js';

/** What each host's own state says it went through, against exactly once per step. */
export interface HostEffects {
  hostId: string;
  /** Applied effects by step label, from the simulated host's state file. */
  effects: Record<string, number>;
  /** Labels whose count is not exactly one, or that should not be there (a revert). */
  wrong: string[];
}

/** Read every simulated host's state file; a host whose file is missing counts as wrong. */
export async function hostEffects(
  stateDir: string,
  hostIds: readonly string[],
  steps: readonly string[],
): Promise<HostEffects[]> {
  return Promise.all(
    hostIds.map(async (hostId) => {
      const state = await loadSimState(path.join(stateDir, hostId));
      const effects = state?.effects ?? {};
      const labels = new Set([...steps, ...Object.keys(effects)]);
      const wrong = [...labels].filter((label) => effects[label] !== (steps.includes(label) ? 1 : 0));
      return { hostId, effects, wrong: state === undefined ? ['no state file'] : wrong };
    }),
  );
}

export interface AuditCheck {
  ok: boolean;
  events: number;
  problems: string[];
}

/** `refit audit verify` over the whole live trail. */
export async function verifyAudit(nc: NatsConnection): Promise<AuditCheck> {
  const stream = await readStreamState(nc);
  const records = await readTrail(nc);
  const report = verifyTrail(records, { stream });
  return {
    ok: report.ok,
    events: records.length,
    problems: report.problems.slice(0, 20).map((p) => `${p.kind}: ${p.message}`),
  };
}

/** Host workflows of these hosts that are not closed, and how the others ended. */
export async function openHostWorkflows(client: Client, hostIds: readonly string[]): Promise<string[]> {
  const open: string[] = [];
  for (const hostId of hostIds) {
    const status = await client.workflow
      .getHandle(hostWorkflowId(hostId))
      .describe()
      .then((d) => d.status.name)
      .catch((err: unknown) => `unknown (${String(err)})`);
    if (status !== 'COMPLETED') open.push(`${hostId}: ${status}`);
  }
  for await (const wf of client.workflow.list({
    query: `WorkflowType = 'hostMaintenance' AND ExecutionStatus = 'Running'`,
  })) {
    if (!open.some((o) => o.startsWith(`${wf.workflowId.replace('refit-host-', '')}:`)))
      open.push(`${wf.workflowId}: RUNNING`);
  }
  return open;
}

export interface CommandCounts {
  commands: number;
  /** Commands whose step was started again on its host after the host worker died in it. */
  resumed: number;
}

/** The commands in the results bucket, and how many a host had to resume. */
export async function commandCounts(nc: NatsConnection): Promise<CommandCounts> {
  const results = await new Kvm(nc).open(BUCKETS.results);
  let commands = 0;
  let resumed = 0;
  for await (const key of await results.keys()) {
    const entry = await results.get(key);
    if (entry?.operation !== 'PUT') continue;
    const status = CommandStatus.safeParse(entry.json());
    if (!status.success) continue;
    commands++;
    if (status.data.starts > 1) resumed++;
  }
  return { commands, resumed };
}

/** Lines of a pino log file whose `msg` is `msg` and that have every field of `where`. */
export function countLogLines(file: string, msg: string, where: Record<string, unknown> = {}): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return 0;
  }
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.includes(msg)) continue;
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.msg === msg && Object.entries(where).every(([k, v]) => entry[k] === v)) n++;
    } catch {
      // not a log line of ours
    }
  }
  return n;
}
