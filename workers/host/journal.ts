import { createHash } from 'node:crypto';
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { CommandStatus, ReceivedCommand, TERMINAL_STATES } from '../../schemas/command.js';
import { StateFileError, readJsonFile, readStateFile, syncDirectory, writeJsonAtomic } from '../../activities/files.js';
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
  protected constructor(private readonly dir: string) {}

  static async open(dir: string): Promise<CommandJournal> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new this(dir);
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
    const { entry, durable } = await this.begin(command, now);
    await durable;
    return entry;
  }

  /**
   * {@link start}, returning once the entry is in place (a killed process keeps it) and before it
   * outlives a power cut: `durable` resolves once the journal's directory is flushed too. The step
   * must not start before `durable`; the status that says it is running may be written meanwhile
   * (docs/decisions/0038-cheaper-host-side-and-host-workflow.md says what a crash at each point leaves).
   */
  async begin(command: ReceivedCommand, now = new Date()): Promise<{ entry: JournalEntry; durable: Promise<void> }> {
    const previous = await this.read(command.commandId);
    if (previous?.finished !== undefined) throw new JournalError(`command ${command.commandId} has already finished`);
    const entry: JournalEntry = {
      commandId: command.commandId,
      command,
      starts: (previous?.starts ?? 0) + 1,
      startedAt: now.toISOString(),
    };
    await writeJsonAtomic(this.fileOf(command.commandId), entry, { syncDirectory: false });
    const durable = this.sync();
    // Awaited by the caller before the step; an early failure must not be an unhandled rejection.
    durable.catch(() => undefined);
    return { entry, durable };
  }

  /** Flush the journal's directory: every entry renamed into place before it outlives a power cut. */
  protected sync(): Promise<void> {
    return syncDirectory(this.dir);
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
