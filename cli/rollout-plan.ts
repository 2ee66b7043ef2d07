import type { Command } from 'commander';
import { loadConfig, withNats, withTemporal } from '../workers/clients.js';
import { loadPlan } from '../workers/control/rollouts.js';
import { operatorSeed } from '../workers/control/operators.js';
import { busyHosts, previewPlanLive } from '../workers/control/plan-live.js';
import { renderPlanPreview } from './plan-render.js';

export function registerRolloutPlanCommand(rollout: Command): void {
  rollout
    .command('plan <plan>')
    .description(
      "a dry run: targets, waves, windows, drains and each host's own diff of what would change; exit 2 if it cannot run",
    )
    .option('--json', 'print JSON')
    .option('--key <file>', 'the operator key a start would be signed with (default: REFIT_OPERATOR_KEY)')
    .action(async (file: string, opts: { json?: boolean; key?: string }) => {
      const plan = await loadPlan(file);
      const signingKey = operatorSeed(opts.key ?? process.env.REFIT_OPERATOR_KEY) !== undefined;
      const config = loadConfig();
      const busy = await withTemporal(config, busyHosts);
      const preview = await withNats(config, (nc) => previewPlanLive(nc, config, plan, busy, signingKey));
      process.stdout.write(opts.json ? `${JSON.stringify(preview, null, 2)}\n` : `${renderPlanPreview(preview)}\n`);
      if (!preview.canRun) process.exitCode = 2;
    });
}
