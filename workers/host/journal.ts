import { createHash } from 'node:crypto';
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { CommandStatus, ReceivedCommand, TERMINAL_STATES } from '../../schemas/command.js';
import { StateFileError, readJsonFile, readStateFile, writeJsonAtomic } from '../../activities/files.js';
import { RefitError } from '../../schemas/errors.js';

/** What the host remembers of one command, across restarts of its worker. */
export const JournalEntry = z.object({
  commandId: z.string(),
  command: ReceivedCommand,
  /** How many times the worker started this command; more than one means it restarted mid-step. */
  starts: z.number().int().positive(),
  startedAt: z.iso.datetime(),
  /** The terminal status, once reported. A command with one is never run again. */
  finished: CommandStatus.optional(),
});
export type JournalEntry = z.infer<typeof JournalEntry>;

export class JournalError extends RefitError {}

/**
 * The host's local, durable record of the commands it started and finished: one file per command
 * id (named by its sha256, since ids may hold any printable character), each written atomically.
 */
export class CommandJournal {
  private constructor(private readonly dir: string) {}

  static async open(dir: string): Promise<CommandJournal> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new CommandJournal(dir);
  }

  fileOf(commandId: string): string {
    return path.join(this.dir, `${createHash('sha256').update(commandId).digest('hex')}.json`);
  }

  async read(commandId: string): Promise<JournalEntry | undefined> {
    const entry = await readStateFile(this.fileOf(commandId), JournalEntry);
    if (entry !== undefined && entry.commandId !== commandId) {
      throw new JournalError(`journal file ${this.fileOf(commandId)} belongs to another command`);
    }
    return entry;
  }

  /** Record one more start of a command and return the entry with its count of starts. */
  async start(command: ReceivedCommand, now = new Date()): Promise<JournalEntry> {
    const previous = await this.read(command.commandId);
    if (previous?.finished !== undefined) throw new JournalError(`command ${command.commandId} has already finished`);
    const entry: JournalEntry = {
      commandId: command.commandId,
      command,
      starts: (previous?.starts ?? 0) + 1,
      startedAt: now.toISOString(),
    };
    await writeJsonAtomic(this.fileOf(command.commandId), entry);
    return entry;
  }

  async finish(status: CommandStatus): Promise<JournalEntry> {
    if (!TERMINAL_STATES.has(status.state))
      throw new JournalError(`cannot finish ${status.commandId} in state ${status.state}`);
    const previous = await this.read(status.commandId);
    if (previous === undefined) throw new JournalError(`command ${status.commandId} was never started`);
    const entry: JournalEntry = { ...previous, finished: status };
    await writeJsonAtomic(this.fileOf(status.commandId), entry);
    return entry;
  }

  /** Journal a command as finished without a run of its own (the host could not process it). */
  async record(command: ReceivedCommand, status: CommandStatus, now = new Date()): Promise<JournalEntry> {
    const entry: JournalEntry = {
      commandId: command.commandId,
      command,
      starts: Math.max(1, status.starts),
      startedAt: now.toISOString(),
      finished: status,
    };
    await writeJsonAtomic(this.fileOf(command.commandId), entry);
    return entry;
  }

  /**
   * Commands started and never finished: the worker stopped or died while running them. An entry
   * that cannot be read is left where it is for its command (the run quarantines it and fails the
   * command, whose message comes back) and handed to `unreadable`.
   */
  async unfinished(unreadable: (err: unknown) => void = () => undefined): Promise<JournalEntry[]> {
    const names = (await readdir(this.dir)).filter((n) => /^[0-9a-f]{64}\.json$/.test(n));
    const entries = await Promise.all(
      names.map((n) =>
        readJsonFile(path.join(this.dir, n), JournalEntry).catch((err: unknown) => {
          if (!(err instanceof StateFileError)) throw err;
          unreadable(err);
          return undefined;
        }),
      ),
    );
    return entries
      .filter((e): e is JournalEntry => e !== undefined && e.finished === undefined)
      .sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }
}
