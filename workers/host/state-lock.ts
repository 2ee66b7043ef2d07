import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { RefitError } from '../../schemas/errors.js';

/** The state directory cannot be used: not a directory, or held by another agent. */
export class StateDirError extends RefitError {}

/** Another live agent holds the state directory; the message names its pid and host id. */
export class StateDirLockedError extends StateDirError {}

export const STATE_LOCK_FILE = 'agent.lock';

/** What the lock file says about its holder. */
export interface LockHolder {
  pid: number;
  hostId: string;
  /** Unique to one start of one agent; presence carries it too. */
  instanceId: string;
  machine: string;
  since: string;
}

export interface StateDirLock {
  readonly holder: LockHolder;
  /** Removes the lock file if it is still this agent's. Idempotent. */
  release(): void;
}

/** Locks held by this process, so that a second host on the same directory in one process is refused too. */
const heldHere = new Set<string>();
/** A takeover file older than this belongs to a process that died during its takeover. */
const TAKEOVER_STALE_MS = 10_000;
/** An unreadable lock younger than this may be one being written; older, its writer died. */
const UNREADABLE_GRACE_MS = 2_000;

/**
 * Takes the exclusive lock on an agent's state directory: `<dir>/agent.lock`, created with O_EXCL and
 * holding the holder's pid and host id. A lock whose pid no longer runs is stale and taken over (under
 * a second O_EXCL file, so that two agents starting together cannot both take it over). A lock held by
 * a live process throws {@link StateDirLockedError} naming that process and its host id.
 *
 * Why not flock(2): Node has no flock without a native module, and a pid file is what an operator can
 * read (`cat /var/lib/refit/agent.lock`). Its one weakness, a dead holder's pid reused by an unrelated
 * process, makes the agent refuse to start (never run twice), and the message says which file to remove.
 */
export function lockStateDir(stateDir: string, hostId: string): StateDirLock {
  const dir = path.resolve(stateDir);
  const file = path.join(dir, STATE_LOCK_FILE);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new StateDirError(`state directory ${dir} is not a directory`);
    throw err;
  }
  const holder: LockHolder = {
    pid: process.pid,
    hostId,
    instanceId: randomUUID(),
    machine: hostname(),
    since: new Date().toISOString(),
  };
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      writeFileSync(file, JSON.stringify(holder) + '\n', { flag: 'wx', mode: 0o600 });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || Date.now() > deadline) throw err;
    }
    const current = readHolder(file);
    if (current === undefined && Date.now() - mtimeMs(file) < UNREADABLE_GRACE_MS) {
      // Just created by an agent that has not written its pid yet.
      pause(50);
      continue;
    }
    if (current !== undefined && isAlive(current, file)) {
      throw new StateDirLockedError(
        `state directory ${dir} is locked by another refit host agent: pid ${current.pid} (host id ${current.hostId}, since ${current.since}); ` +
          `stop that agent first. If no such agent runs, remove ${file}.`,
      );
    }
    takeOver(file, current);
  }
  heldHere.add(file);
  let released = false;
  return {
    holder,
    release() {
      if (released) return;
      released = true;
      heldHere.delete(file);
      if (readHolder(file)?.instanceId === holder.instanceId) rmSync(file, { force: true });
    },
  };
}

function readHolder(file: string): LockHolder | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockHolder>;
    if (typeof parsed.pid !== 'number' || typeof parsed.instanceId !== 'string') return undefined;
    return parsed as LockHolder;
  } catch {
    // Missing, or half-written by a holder that died while writing it: not a live lock.
    return undefined;
  }
}

function isAlive(holder: LockHolder, file: string): boolean {
  if (holder.pid === process.pid) return heldHere.has(file);
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, under another user.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Removes a stale lock, re-checked under `<lock>.takeover` so that only one starting agent removes it. */
function takeOver(file: string, stale: LockHolder | undefined): void {
  const takeover = `${file}.takeover`;
  try {
    writeFileSync(takeover, String(process.pid), { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // Another agent is taking over; unless it died doing so, let it, and try again.
    if (Date.now() - mtimeMs(takeover) > TAKEOVER_STALE_MS) rmSync(takeover, { force: true });
    pause(50);
    return;
  }
  try {
    const now = readHolder(file);
    if (now?.instanceId === stale?.instanceId) rmSync(file, { force: true });
  } finally {
    rmSync(takeover, { force: true });
  }
}

function mtimeMs(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return Date.now();
  }
}

/** A short synchronous wait: taking the lock happens once, at start, before anything else runs. */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
