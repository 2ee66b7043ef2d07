import { AsyncLocalStorage } from 'node:async_hooks';
import { execa } from 'execa';
import { RefitError } from '../../../schemas/errors.js';
import { missingProgramMessage } from './tools.js';

/** What a finished command left behind. A non-zero exit is a result, not an exception, until the caller says so. */
export interface CommandResult {
  argv: readonly string[];
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface RunOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Exit codes that are results rather than failures (hping3 exits 1 when nothing came back). */
  okExitCodes?: readonly number[];
}

/** Runs one program with an argument array; never through a shell. Rejects with CommandFailedError. */
export type CommandRunner = (argv: readonly string[], opts?: RunOptions) => Promise<CommandResult>;

export class CommandFailedError extends RefitError {
  readonly argv: readonly string[];
  readonly exitCode: number;
  readonly stderr: string;
  constructor(result: CommandResult, options?: ErrorOptions) {
    const detail = result.stderr.trim().split('\n').slice(-3).join(' | ');
    super(`${result.argv.join(' ')} exited with ${result.exitCode}${detail ? `: ${detail}` : ''}`, options);
    this.argv = result.argv;
    this.exitCode = result.exitCode;
    this.stderr = result.stderr;
  }
}

/**
 * The program is not on PATH (execa: ENOENT, no exit code): its package is not installed. Still a
 * CommandFailedError, so an observation that treats a failed command as "not there" does the same.
 */
export class ProgramNotFoundError extends CommandFailedError {
  readonly program: string;
  constructor(result: CommandResult, program: string, message: string, options?: ErrorOptions) {
    super(result, options);
    this.program = program;
    this.message = message;
  }
}

const currentStep = new AsyncLocalStorage<string>();

/** Runs `fn` with `step` named as what needs the programs run within it (in a ProgramNotFoundError). */
export function inStep<T>(step: string, fn: () => Promise<T>): Promise<T> {
  return currentStep.run(step, fn);
}

const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * The real runner: execa with an argument array. `prefix` is put in front of every command
 * (the lab uses `ip netns exec <ns> <host-exec> <root>` to run inside a lab host). `where` names
 * the host in the error for a program that is not installed.
 */
export function createExecaRunner(prefix: readonly string[] = [], host: { where?: string } = {}): CommandRunner {
  return async (argv, opts = {}) => {
    const full = [...prefix, ...argv];
    const [file, ...args] = full;
    if (file === undefined) throw new Error('empty command');
    const done = await execa(file, args, {
      reject: false,
      stdin: 'ignore',
      timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      ...(opts.signal !== undefined ? { cancelSignal: opts.signal } : {}),
      env: { LC_ALL: 'C' },
    });
    const result: CommandResult = {
      argv: full,
      stdout: typeof done.stdout === 'string' ? done.stdout : '',
      stderr: typeof done.stderr === 'string' ? done.stderr : '',
      exitCode: done.exitCode ?? -1,
    };
    if (done.exitCode === undefined && done.code === 'ENOENT')
      throw new ProgramNotFoundError(
        result,
        file,
        missingProgramMessage(file, host.where ?? 'this host', currentStep.getStore()),
        done.cause !== undefined ? { cause: done.cause } : undefined,
      );
    const ok = result.exitCode === 0 || (opts.okExitCodes ?? []).includes(result.exitCode);
    if (!ok) throw new CommandFailedError(result, done.cause !== undefined ? { cause: done.cause } : undefined);
    return result;
  };
}
