import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReceivedCommand, type CommandStatus } from '../../schemas/command.js';
import { CorruptStateFileError } from '../../activities/files.js';
import { CommandJournal, JournalError } from './journal.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'refit-journal-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const command = (commandId: string) =>
  ReceivedCommand.parse({
    commandId,
    hostId: 'h1',
    kind: 'drain',
    params: {},
    rolloutId: 'r',
    workflowId: 'wf',
    issuedAt: new Date().toISOString(),
  });

const succeeded = (commandId: string, starts: number): CommandStatus => ({
  commandId,
  hostId: 'h1',
  kind: 'drain',
  mode: 'apply',
  state: 'succeeded',
  outcome: { changed: true, summary: 'sim: drained', before: {}, after: {} },
  starts,
  bootId: 'b1',
  updatedAt: new Date().toISOString(),
});

describe('the command journal', () => {
  it('counts the starts of a command, also across reopening', async () => {
    const id = 'refit-host-h1/run-1/3';
    expect((await (await CommandJournal.open(dir)).start(command(id))).starts).toBe(1);
    const reopened = await CommandJournal.open(dir);
    expect((await reopened.start(command(id))).starts).toBe(2);
    expect(await reopened.read(id)).toMatchObject({ commandId: id, starts: 2, command: { kind: 'drain' } });
  });

  it('keeps the final status of a finished command and refuses to start it again', async () => {
    const journal = await CommandJournal.open(dir);
    await journal.start(command('c1'));
    await journal.finish(succeeded('c1', 1));
    expect((await journal.read('c1'))?.finished).toMatchObject({ state: 'succeeded', starts: 1 });
    await expect(journal.start(command('c1'))).rejects.toThrow(JournalError);
  });

  it('lists the commands started and never finished', async () => {
    const journal = await CommandJournal.open(dir);
    await journal.start(command('done'));
    await journal.finish(succeeded('done', 1));
    await journal.start(command('left'));
    expect((await journal.unfinished()).map((e) => e.commandId)).toEqual(['left']);
  });

  it('names each file by the sha256 of the command id, whatever characters the id holds', async () => {
    const journal = await CommandJournal.open(dir);
    await journal.start(command('../../etc/passwd'));
    expect(await readdir(dir)).toEqual([expect.stringMatching(/^[0-9a-f]{64}\.json$/)]);
  });

  it('refuses to finish a command that never started, or with a state that is not final', async () => {
    const journal = await CommandJournal.open(dir);
    await expect(journal.finish(succeeded('nope', 1))).rejects.toThrow(/never started/);
    await journal.start(command('c2'));
    await expect(journal.finish({ ...succeeded('c2', 1), state: 'running' })).rejects.toThrow(/state running/);
  });

  it('leaves no temporary files behind', async () => {
    const journal = await CommandJournal.open(dir);
    for (let i = 0; i < 5; i++) await journal.start(command(`c${i}`));
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('reports a damaged entry instead of treating the command as new', async () => {
    const journal = await CommandJournal.open(dir);
    await writeFile(journal.fileOf('c3'), '{"half":');
    await expect(journal.read('c3')).rejects.toThrow(/not JSON/);
  });

  it('moves a damaged entry aside, never deleting it, and names where it went', async () => {
    const journal = await CommandJournal.open(dir);
    const file = journal.fileOf('c4');
    await writeFile(file, '{"half":');
    const err = await journal.read('c4').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptStateFileError);
    const { movedTo } = err as CorruptStateFileError;
    expect(movedTo.startsWith(`${file}.corrupt-`)).toBe(true);
    expect(await readFile(movedTo, 'utf8')).toBe('{"half":');
    expect(await journal.read('c4')).toBeUndefined();
  });

  it('lists the unfinished commands past a damaged entry, which it leaves in place for its command', async () => {
    const journal = await CommandJournal.open(dir);
    await journal.start(command('c5'));
    await writeFile(journal.fileOf('c6'), 'garbage');
    const unreadable: unknown[] = [];
    expect((await journal.unfinished((err) => unreadable.push(err))).map((e) => e.commandId)).toEqual(['c5']);
    expect(unreadable).toEqual([expect.objectContaining({ message: expect.stringMatching(/not JSON/) })]);
    expect(await readFile(journal.fileOf('c6'), 'utf8')).toBe('garbage');
  });

  it('records a command the host could not process as finished, so that a repeat is answered', async () => {
    const journal = await CommandJournal.open(dir);
    const { outcome: _, ...started } = succeeded('c7', 0);
    const failed: CommandStatus = {
      ...started,
      state: 'failed',
      error: { type: 'CommandNotProcessedError', message: 'no' },
    };
    await journal.record(command('c7'), failed);
    expect(await journal.read('c7')).toMatchObject({ starts: 1, finished: { state: 'failed' } });
    expect(await journal.unfinished()).toEqual([]);
  });
});
