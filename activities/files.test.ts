import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CorruptStateFileError, quarantineFile, readStateFile } from './files.js';

const Pending = z.object({ commandId: z.string() });
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'refit-files-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('quarantineFile', () => {
  it('moves a file aside under a timestamped name beside it and keeps its content', async () => {
    const file = path.join(dir, 'reboot-pending.json');
    await writeFile(file, '{"half');
    const movedTo = await quarantineFile(file, new Date('2026-11-30T14:05:06.789Z'));
    expect(movedTo).toBe(`${file}.corrupt-2026-11-30T14-05-06-789Z`);
    expect(await readFile(movedTo, 'utf8')).toBe('{"half');
    expect(await readdir(dir)).toEqual(['reboot-pending.json.corrupt-2026-11-30T14-05-06-789Z']);
  });

  it('never overwrites a file quarantined before at the same instant', async () => {
    const file = path.join(dir, 'drained-vms.json');
    const at = new Date('2026-11-30T14:05:06.789Z');
    await writeFile(file, 'first');
    const first = await quarantineFile(file, at);
    await writeFile(file, 'second');
    const second = await quarantineFile(file, at);
    expect(second).not.toBe(first);
    expect(await readFile(first, 'utf8')).toBe('first');
    expect(await readFile(second, 'utf8')).toBe('second');
  });
});

describe('readStateFile', () => {
  it('reads a valid file and answers undefined for a missing one', async () => {
    const file = path.join(dir, 'state.json');
    expect(await readStateFile(file, Pending)).toBeUndefined();
    await writeFile(file, '{"commandId":"c-1"}');
    expect(await readStateFile(file, Pending)).toEqual({ commandId: 'c-1' });
  });

  it.each([
    ['is not JSON', '{"commandId": "c-', /is corrupt \(not JSON\)/],
    [
      'does not match the schema',
      '{"commandId": 7}',
      /is corrupt \(not a valid state file: commandId: .*expected string/,
    ],
  ])('quarantines a file that %s and names both places in its error', async (_what, text, problem) => {
    const file = path.join(dir, 'state.json');
    await writeFile(file, text);
    const err = await readStateFile(file, Pending).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptStateFileError);
    const corrupt = err as CorruptStateFileError;
    expect(corrupt.file).toBe(file);
    expect(corrupt.movedTo).toMatch(/state\.json\.corrupt-\d{4}-\d\d-\d\dT[\d-]+Z$/);
    expect(corrupt.message).toMatch(problem);
    expect(corrupt.message).toContain(`${file} is corrupt`);
    expect(corrupt.message).toContain(`moved aside to ${corrupt.movedTo}`);
    expect(await readFile(corrupt.movedTo, 'utf8')).toBe(text);
    expect(await readStateFile(file, Pending)).toBeUndefined();
  });
});
