import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import type { Client } from '@temporalio/client';
import { WorkflowIdConflictPolicy } from '@temporalio/client';
import { parsePlan, type Plan } from '../schemas/plan.js';
import type { RolloutInput, RolloutStatus } from '../schemas/rollout.js';
import type { fleetRollout } from '../workflows/rollout.js';
import { phaseKey, rolloutIdKey } from '../workflows/messages.js';
import { loadConfig, withTemporal } from './clients.js';
import { UsageError } from './errors.js';
import { renderStatus, summaryLine } from './render.js';
import { getRolloutStatus } from './rollout-status.js';
import { registerRolloutControlCommands } from './rollout-control.js';

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/** Read and validate a plan file; every problem is named by its path. */
export async function loadPlan(file: string): Promise<Plan> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new UsageError(`cannot read plan ${file}: ${(cause as Error).message}`);
  }
  const parsed = parsePlan(text);
  if (!parsed.ok) {
    const lines = parsed.problems.map((p) => `  ${p.path}: ${p.message}`);
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
  opts: { historyLimit?: number } = {},
): Promise<void> {
  const input: RolloutInput = { rolloutId, plan, startedBy: `${os.userInfo().username}@${os.hostname()}`, ...opts };
  await client.workflow.start<typeof fleetRollout>('fleetRollout', {
    workflowId: rolloutId,
    taskQueue,
    args: [input],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    typedSearchAttributes: [
      { key: rolloutIdKey, value: rolloutId },
      { key: phaseKey, value: 'running' },
    ],
  });
}

/**
 * Follow a rollout until it ends (or reaches one of `stopAt`). On a terminal, redraw in place;
 * otherwise print what changed. A status that cannot be read for a moment (the controller worker
 * restarting) is waited out, and said.
 */
export async function watchRollout(
  client: Client,
  rolloutId: string,
  out: NodeJS.WriteStream = process.stdout,
  stopAt: ReadonlySet<string> = TERMINAL,
): Promise<RolloutStatus> {
  let drawn = 0;
  let previous = '';
  let unreadableSince: number | undefined;
  for (;;) {
    let status: RolloutStatus;
    try {
      status = await getRolloutStatus(client, rolloutId);
      unreadableSince = undefined;
    } catch (err) {
      if (err instanceof UsageError) throw err;
      unreadableSince ??= Date.now();
      if (Date.now() - unreadableSince > 120_000) throw err;
      process.stderr.write(
        `refit: cannot read the rollout's status yet (${(err as Error).message}); is \`refit worker\` running? retrying\n`,
      );
      await new Promise((r) => setTimeout(r, 2_000));
      continue;
    }
    const text = renderStatus(status);
    if (out.isTTY) {
      if (drawn > 0) out.write(`\x1b[${drawn}A\x1b[J`);
      out.write(`${text}\n`);
      drawn = text.split('\n').length;
    } else if (text !== previous) {
      out.write(`${new Date().toISOString().slice(11, 19)} ${text.split('\n').slice(1).join('\n    ')}\n`);
    }
    previous = text;
    if (stopAt.has(status.state)) {
      if (!out.isTTY) out.write(`${text}\n`);
      return status;
    }
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

export function registerRolloutCommands(program: Command): void {
  const rollout = program.command('rollout').description('start, follow and inspect maintenance campaigns');

  rollout
    .command('start <plan>')
    .description('validate a plan file and start a rollout; prints the rollout id')
    .option('--watch', 'follow the rollout until it ends (exit status 0 only if it completed)')
    .option('--id <rolloutId>', 'use this rollout id instead of a generated one')
    .action(async (file: string, opts: { watch?: boolean; id?: string }) => {
      const plan = await loadPlan(file);
      const config = loadConfig();
      const id = opts.id ?? newRolloutId(plan.name);
      await withTemporal(config, async (client) => {
        await startRollout(client, config.taskQueue, plan, id);
        process.stdout.write(
          `rollout ${id} started: plan ${plan.name}, ${plan.steps.length} steps (${plan.steps.map((s) => s.kind).join(' → ')})\n`,
        );
        if (!opts.watch) return;
        const final = await watchRollout(client, id);
        process.stdout.write(`${summaryLine(final)}\n`);
        if (final.state !== 'completed') process.exitCode = 1;
      });
    });

  rollout
    .command('status <rolloutId>')
    .description('show a rollout: waves, hosts and the step each is on')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { json?: boolean }) => {
      await withTemporal(loadConfig(), async (client) => {
        const status = await getRolloutStatus(client, id);
        process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : `${renderStatus(status)}\n`);
      });
    });

  rollout
    .command('watch <rolloutId>')
    .description('follow a running rollout until it ends')
    .action(async (id: string) => {
      await withTemporal(loadConfig(), async (client) => {
        const final = await watchRollout(client, id);
        process.stdout.write(`${summaryLine(final)}\n`);
        if (final.state !== 'completed') process.exitCode = 1;
      });
    });

  registerRolloutControlCommands(rollout);

  rollout
    .command('list')
    .description('list rollouts, newest first')
    .option('--json', 'print JSON')
    .option('--limit <n>', 'at most this many', '50')
    .action(async (opts: { json?: boolean; limit: string }) => {
      await withTemporal(loadConfig(), async (client) => {
        const rows: { id: string; state: string; startedAt: string; closedAt: string | null }[] = [];
        for await (const wf of client.workflow.list({ query: 'WorkflowType = "fleetRollout"' })) {
          const phase = wf.typedSearchAttributes.get(phaseKey);
          const state =
            wf.status.name === 'RUNNING'
              ? 'running'
              : wf.status.name === 'CANCELLED'
                ? 'cancelled'
                : (phase ?? wf.status.name.toLowerCase());
          rows.push({
            id: wf.workflowId,
            state,
            startedAt: wf.startTime.toISOString(),
            closedAt: wf.closeTime?.toISOString() ?? null,
          });
          if (rows.length >= Number(opts.limit)) break;
        }
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
          return;
        }
        if (rows.length === 0) process.stdout.write('no rollouts\n');
        for (const r of rows) process.stdout.write(`${r.id.padEnd(44)} ${r.state.padEnd(10)} started ${r.startedAt}\n`);
      });
    });
}
