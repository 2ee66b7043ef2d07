import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { RefitError } from '../schemas/errors.js';

/** Prefix of the one line on stdout by which a bench child says it is ready. */
const READY = 'bench-ready ';

/** Called by a child process once it is ready, with what the parent needs to know. */
export function announce(info: unknown): void {
  process.stdout.write(`${READY}${JSON.stringify(info)}\n`);
}

export interface Child<T> {
  readonly pid: number;
  readonly name: string;
  /** What the child announced. */
  readonly info: T;
  /** SIGTERM, then SIGKILL if it has not exited in time. Resolves when it is gone. */
  stop(): Promise<void>;
  /** Resolves when the process has exited, however it ended. */
  readonly exited: Promise<ChildExit>;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class ChildError extends RefitError {}

/** Start `node <script> ...args`, its stderr into `logFile`, and wait until it announces itself. */
export async function startChild<T>(
  name: string,
  script: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  logFile: string,
  timeoutMs = 600_000,
): Promise<Child<T>> {
  const fd = openSync(logFile, 'a', 0o600);
  const child = spawn(process.execPath, [script, ...args], { env, stdio: ['ignore', 'pipe', fd] });
  closeSync(fd);
  const exited = new Promise<ChildExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const gone = await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]);
    if (!gone) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  if (child.pid === undefined) throw new ChildError(`${name} did not start`);
  const pid = child.pid;
  if (child.stdout === null) throw new ChildError(`${name} has no stdout`);
  const lines = createInterface({ input: child.stdout });
  try {
    const info = await new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new ChildError(`${name} not ready after ${timeoutMs / 1000} s; see ${logFile}`)),
        timeoutMs,
      );
      lines.on('line', (line) => {
        if (!line.startsWith(READY)) return;
        clearTimeout(timer);
        resolve(JSON.parse(line.slice(READY.length)) as T);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new ChildError(`${name} exited (${signal ?? code}) before it was ready; see ${logFile}`));
      });
    });
    return { pid, name, info, stop, exited };
  } catch (err) {
    await stop();
    throw err;
  }
}
