import type { StepAuditNote } from '../host/driver.js';

interface RanCommand {
  argv: readonly string[];
  stdout: string;
  stderr: string;
  exitCode: number;
}

/**
 * Wrap a command runner so that every program it runs is reported to the audit trail, failed ones
 * included (a runner that rejects with an error carrying `argv` and `exitCode`, as CommandFailedError does).
 */
export function auditCommands<O, R extends RanCommand>(
  run: (argv: readonly string[], opts?: O) => Promise<R>,
  audit: ((note: StepAuditNote) => void) | undefined,
): (argv: readonly string[], opts?: O) => Promise<R> {
  if (audit === undefined) return run;
  return async (argv, opts) => {
    const started = performance.now();
    const durationMs = () => Math.round(performance.now() - started);
    try {
      const result = await run(argv, opts);
      audit({
        type: 'step.command',
        argv: result.argv,
        exitCode: result.exitCode,
        durationMs: durationMs(),
        stdout: result.stdout,
        stderr: result.stderr,
      });
      return result;
    } catch (err) {
      const failed = err as Partial<RanCommand>;
      audit({
        type: 'step.command',
        argv: Array.isArray(failed.argv) ? failed.argv : argv,
        exitCode: typeof failed.exitCode === 'number' ? failed.exitCode : -1,
        durationMs: durationMs(),
        stderr: typeof failed.stderr === 'string' ? failed.stderr : err instanceof Error ? err.message : String(err),
      });
      throw err;
    }
  };
}
