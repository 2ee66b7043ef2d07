#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { registerAuditCommands } from './audit.js';
import { registerDevCommands } from './dev/command.js';
import { UsageError } from './errors.js';
import { registerHostCommands } from './host.js';
import { registerHostsCommand } from './hosts.js';
import { registerLabCommands } from './lab.js';
import { registerOvsConfigCommand } from './ovs-config.js';
import { registerRolloutCommands } from './rollout.js';
import { registerWorkerCommand } from './worker.js';

const program = new Command('refit')
  .description('Fleet controller for hypervisor hosts: durable, audited maintenance rollouts.')
  .version('0.1.0')
  .exitOverride()
  .showHelpAfterError();

registerDevCommands(program);
registerWorkerCommand(program);
registerHostCommands(program);
registerHostsCommand(program);
registerRolloutCommands(program);
registerAuditCommands(program);
registerLabCommands(program);
registerOvsConfigCommand(program);

// The one place where errors become exit codes: 2 for what the operator must fix, 1 for the rest.
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode;
  } else if (err instanceof UsageError) {
    process.stderr.write(`refit: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`refit: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
