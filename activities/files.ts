import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { link, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import { RefitError } from '../schemas/errors.js';
import { problemText } from '../schemas/problems.js';

export class StateFileError extends RefitError {}

/** A state file that could not be parsed or checked; it was moved aside to `movedTo` and never deleted. */
export class CorruptStateFileError extends StateFileError {
  constructor(
    readonly file: string,
    readonly movedTo: string,
    problem: string,
    options?: ErrorOptions,
  ) {
    super(`${file} is corrupt (${problem}); moved aside to ${movedTo}`, options);
  }
}

export interface AtomicWriteOptions {
  /** Permission bits of a new file (default 0o600: refit's state is private). */
  mode?: number;
  /**
   * false: return once the file is renamed into place, without flushing its directory; the caller
   * flushes it ({@link syncDirectory}) before anything depends on the file outliving a power cut.
   */
  syncDirectory?: boolean;
}

const tmpNameOf = (file: string) =>
  path.join(path.dirname(file), `.${path.basename(file)}.refit-${randomBytes(6).toString('hex')}.tmp`);

/**
 * Replace a file so that a crash or a power cut leaves the old or the new content, never half of
 * one: write a temporary file beside it, flush it, rename it over, flush the directory.
 */
export async function writeFileAtomic(file: string, text: string, opts: AtomicWriteOptions = {}): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true });
  const tmp = tmpNameOf(file);
  const handle = await open(tmp, 'w', opts.mode ?? 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  if (opts.syncDirectory !== false) await syncDirectory(dir);
}

/** Remove a file, if it is there, so that the removal survives a power cut (the directory is flushed). */
export async function removeFileDurably(file: string): Promise<void> {
  await rm(file, { force: true });
  // The file is gone either way; a directory that cannot be opened to flush it changes nothing.
  await syncDirectory(path.dirname(file)).catch(() => undefined);
}

/** A rename or unlink is durable only once its directory is flushed. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename or unlink is still atomic there.
  } finally {
    await handle.close();
  }
}

/** {@link writeFileAtomic} for the few callers that cannot await (set-up of the embedded stack). */
export function writeFileAtomicSync(file: string, text: string, opts: AtomicWriteOptions = {}): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = tmpNameOf(file);
  const fd = openSync(tmp, 'w', opts.mode ?? 0o600);
  try {
    writeFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } catch {
    // As above: the rename is atomic even where the directory cannot be flushed.
  } finally {
    closeSync(dirFd);
  }
}

/** Write JSON atomically (see {@link writeFileAtomic}). */
export async function writeJsonAtomic(file: string, value: unknown, opts: AtomicWriteOptions = {}): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n', opts);
}

/**
 * Move a file aside to `<file>.corrupt-<timestamp>` in the same directory, so that the next reader
 * starts afresh and an operator can still inspect what was there. Returns the new path.
 */
export async function quarantineFile(file: string, now = new Date()): Promise<string> {
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  for (let n = 0; ; n++) {
    const target = `${file}.corrupt-${stamp}${n === 0 ? '' : `-${n}`}`;
    try {
      await link(file, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw err;
    }
    await rm(file, { force: true });
    return target;
  }
}

/**
 * Read and check a JSON state file; undefined when it does not exist. A file that is not JSON or
 * does not match the schema is quarantined ({@link quarantineFile}) and reported as
 * {@link CorruptStateFileError}, naming where it went.
 */
export async function readStateFile<T extends z.ZodType>(file: string, schema: T): Promise<z.output<T> | undefined> {
  const text = await readTextIfAny(file);
  if (text === undefined) return undefined;
  const checked = checkJson(text, schema);
  if (checked.ok) return checked.value;
  const movedTo = await quarantineFile(file).catch((cause: unknown) => {
    throw new StateFileError(`${file} is corrupt (${checked.problem}) and cannot be moved aside`, { cause });
  });
  throw new CorruptStateFileError(file, movedTo, checked.problem, { cause: checked.cause });
}

/** Read and check a JSON state file; undefined when it does not exist. */
export async function readJsonFile<T extends z.ZodType>(file: string, schema: T): Promise<z.output<T> | undefined> {
  const text = await readTextIfAny(file);
  if (text === undefined) return undefined;
  const checked = checkJson(text, schema);
  if (checked.ok) return checked.value;
  throw new StateFileError(`${file} is ${checked.problem}`, { cause: checked.cause });
}

async function readTextIfAny(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateFileError(`cannot read ${file}`, { cause: err });
  }
}

type JsonCheck<T> = { ok: true; value: T } | { ok: false; problem: string; cause: unknown };

function checkJson<T extends z.ZodType>(text: string, schema: T): JsonCheck<z.output<T>> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    return { ok: false, problem: 'not JSON', cause };
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, problem: `not a valid state file: ${problemText(parsed.error, '(file)')}`, cause: parsed.error };
}
