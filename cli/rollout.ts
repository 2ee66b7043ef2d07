import type { Command } from 'commander';
import { listRollouts, loadPlan, newRolloutId, startRollout } from '../workers/control/rollouts.js';
import { loadConfig, withNats, withTemporal } from '../workers/clients.js';
import type { RefitConfig } from '../workers/config.js';
import { readInventory } from '../workers/control/inventory.js';
import { unknownDestinations } from '../activities/controller/inventory.js';
import type { Plan } from '../schemas/plan.js';
import { operatorSeed, signIfKeyed } from '../workers/control/operators.js';
import { UsageError } from '../schemas/errors.js';
import { renderStatus, summaryLine } from './render.js';
import { watchRollout } from './rollout-watch.js';
import { getRolloutStatus } from '../workers/control/rollout-status.js';
import { registerRolloutControlCommands } from './rollout-control.js';
import { registerRolloutPlanCommand } from './rollout-plan.js';
import { tableLines } from './table.js';
import { positiveInteger } from './numeric-options.js';

/** Re-exported: `refit demo` follows its rollout with it. */
export { watchRollout };

/**
 * Refuse a plan whose drains send VMs to hosts the live inventory does not know, before anything
 * starts; each is named by its place in the plan.
 */
async function checkDestinations(config: RefitConfig, file: string, plan: Plan): Promise<void> {
  if (!plan.steps.some((s) => s.kind === 'drain' && Object.keys(s.params.destinations).length > 0)) return;
  const { hosts } = await withNats(config, readInventory);
  const unknown = unknownDestinations(plan.steps, new Set(hosts.map((h) => h.hostId)));
  if (unknown.length === 0) return;
  const lines = unknown.map((u) => `  ${u.path}: ${u.destination} is not a host of the inventory`);
  throw new UsageError(`plan ${file} drains VMs to unknown hosts; nothing was started:\n${lines.join('\n')}`);
}

export function registerRolloutCommands(program: Command): void {
  const rollout = program.command('rollout').description('start, follow and inspect maintenance campaigns');

  rollout
    .command('start <plan>')
    .description('validate a plan file and start a rollout; prints the rollout id')
    .option('--watch', 'follow the rollout until it ends (exit status 0 only if it completed)')
    .option('--id <rolloutId>', 'use this rollout id instead of a generated one')
    .option('--key <file>', "sign the start with this operator's nkey seed (default: REFIT_OPERATOR_KEY)")
    .action(async (file: string, opts: { watch?: boolean; id?: string; key?: string }) => {
      const plan = await loadPlan(file);
      const config = loadConfig();
      await checkDestinations(config, file, plan);
      const id = opts.id ?? newRolloutId(plan.name);
      const seed = operatorSeed(opts.key ?? process.env.REFIT_OPERATOR_KEY);
      if (seed === undefined && plan.approvals.distinctFrom === 'starter')
        throw new UsageError(
          'this plan requires four eyes (approvals.distinctFrom: starter): sign the start with your operator key (REFIT_OPERATOR_KEY and REFIT_OPERATOR)',
        );
      const operator = process.env.REFIT_OPERATOR ?? '';
      const signedStart = signIfKeyed(seed, operator, { rolloutId: id, action: 'start', args: { plan } });
      await withTemporal(config, async (client) => {
        await startRollout(client, config.taskQueue, plan, id, signedStart ? { startedBy: operator, signedStart } : {});
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
    .description('follow a running rollout until it ends, with an ETA (on a terminal: one screen, redrawn)')
    .option('--json', 'print the status as one JSON line each time it changes')
    .action(async (id: string, opts: { json?: boolean }) => {
      await withTemporal(loadConfig(), async (client) => {
        const final = await watchRollout(client, id, process.stdout, { json: opts.json === true });
        if (!opts.json) process.stdout.write(`${summaryLine(final)}\n`);
        if (final.state !== 'completed') process.exitCode = 1;
      });
    });

  registerRolloutPlanCommand(rollout);
  registerRolloutControlCommands(rollout);

  rollout
    .command('list')
    .description('list rollouts, newest first')
    .option('--json', 'print JSON')
    .option('--limit <n>', 'at most this many rollouts', positiveInteger, 50)
    .action(async (opts: { json?: boolean; limit: number }) => {
      await withTemporal(loadConfig(), async (client) => {
        const rows = await listRollouts(client, opts.limit);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
          return;
        }
        if (rows.length === 0) {
          process.stdout.write('no rollouts\n');
          return;
        }
        const table = tableLines(
          rows.map((r) => [r.id, r.state, r.startedAt]),
          { header: ['ROLLOUT', 'STATE', 'STARTED'] },
        );
        process.stdout.write(`${table.join('\n')}\n`);
      });
    });
}
