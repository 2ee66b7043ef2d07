#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { UsageError } from '../schemas/errors.js';
import { terminalSafe } from './terminal-text.js';
import { registerCompletionCommand } from './completion.js';

// A reader that stops early (`refit hosts | head -1`, `| grep -q`) closes the pipe: that is the end
// of the output, not an error to report. Stop quietly, with success.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });

type Register = (program: Command) => void;
/**
 * Each top-level command's module, loaded only when that command runs: `refit host` on a hypervisor
 * must not load the Temporal worker and client that `refit worker` and `refit rollout` need.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  dev: async () => (await import('./dev.js')).registerDevCommands,
  worker: async () => (await import('./worker.js')).registerWorkerCommand,
  host: async () => (await import('./host.js')).registerHostCommands,
  'sim-fleet': async () => (await import('./host.js')).registerHostCommands,
  hosts: async () => (await import('./hosts.js')).registerHostsCommand,
  enroll: async () => (await import('./enroll.js')).registerEnrollCommand,
  rollout: async () => (await import('./rollout.js')).registerRolloutCommands,
  audit: async () => (await import('./audit.js')).registerAuditCommands,
  operator: async () => (await import('./operator.js')).registerOperatorCommands,
  lab: async () => (await import('./lab.js')).registerLabCommands,
  'ovs-config': async () => (await import('./ovs-config.js')).registerOvsConfigCommand,
  ui: async () => (await import('./ui/command.js')).registerUiCommand,
};

const program = new Command('refit')
  .description('Fleet controller for hypervisor hosts: durable, audited maintenance rollouts.')
  .version('0.1.0')
  .exitOverride()
  .showHelpAfterError();

// `refit` has no global options, so the first word that is not a flag names the command. Help and
// unknown commands load them all, so that help lists every command and typos get suggestions.
const named = process.argv.slice(2).find((arg) => !arg.startsWith('-'));
const load = named !== undefined && Object.hasOwn(COMMANDS, named) ? [COMMANDS[named]!] : Object.values(COMMANDS);
const registered = new Set<Register>();
for (const register of await Promise.all(load.map((loader) => loader()))) {
  if (registered.has(register)) continue;
  registered.add(register);
  register(program);
}
// Completion describes every command, so it is offered when all are loaded (it is in no module).
if (load.length > 1) registerCompletionCommand(program);

/** An error's text, each of its lines made terminal-safe: it may quote a plan, a host or a server. */
function errorText(message: string): string {
  return message.split('\n').map(terminalSafe).join('\n');
}

// The one place where errors become exit codes: 2 for what the operator must fix, 1 for the rest.
// Commander has printed its own errors (unknown option or command, missing or invalid argument);
// they are usage errors too. Its exit code 0 is --help or --version.
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (err instanceof UsageError) {
    process.stderr.write(`refit: ${errorText(err.message)}\n`);
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`refit: ${errorText(err instanceof Error ? (err.stack ?? err.message) : String(err))}\n`);
    process.exitCode = 1;
  }
}
