import type { JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import {
  StepCancelledError,
  StepFailedError,
  WorkerStoppingError,
  prepareStep,
  throwIfAborted,
  toStepError,
  type HostDriver,
} from '../../activities/host/driver.js';
import type {
  CancelRequest,
  CommandStatus,
  ConfirmRequest,
  ReceivedCommand,
  StepCommand,
} from '../../schemas/command.js';
import type { HostPresence } from '../../schemas/host.js';
import { RefitError } from '../../schemas/errors.js';
import { StepOutcome } from '../../schemas/steps.js';
import { AuditNotStoredError, type HostAuditLog } from './audit-spool.js';
import { CommandAuditTrail } from './command-audit.js';
import type { CommandJournal } from './journal.js';
import { publishCommandStatus } from './report.js';
import { StatusNotStoredError, StatusReporter, type Terminal } from './status-reporter.js';

export type RunResult =
  /** The command has its terminal status stored and journalled; `replayed` when answered from the journal. */
  | { kind: 'finished'; status: CommandStatus; step: StepCommand | undefined; replayed: boolean }
  /** The worker is stopping: the command stays unfinished in the journal and resumes at the next start. */
  | { kind: 'left' };

export interface CommandRunnerOptions {
  hostId: string;
  js: JetStreamClient;
  journal: CommandJournal;
  driver: HostDriver;
  log: Logger;
  /** The host's current boot id, for the statuses of a command. */
  bootId: () => Promise<string>;
  /** Where the command's audit events go; a command is reported done only once they are stored. */
  audit: HostAuditLog;
}

/** Cancellations for commands not yet running are remembered, up to this many. */
const REMEMBERED_CANCELS = 256;

/** Runs one command at a time through the driver, exactly once per command id thanks to the journal. */
export class CommandRunner {
  private current: { command: ReceivedCommand; abort: AbortController; confirm: () => void } | undefined;
  private readonly cancels = new Map<string, string>();
  private readonly stopping = new AbortController();

  constructor(private readonly o: CommandRunnerOptions) {}

  bootId(): Promise<string> {
    return this.o.bootId();
  }

  busyWith(): HostPresence['busyWith'] {
    return this.current && { commandId: this.current.command.commandId, kind: this.current.command.kind };
  }

  cancel(request: CancelRequest): void {
    if (this.current?.command.commandId === request.commandId) {
      this.o.log.info({ commandId: request.commandId, reason: request.reason }, 'cancelling the running command');
      this.current.abort.abort(new StepCancelledError(request.reason));
      return;
    }
    this.o.log.info(
      { commandId: request.commandId },
      'cancel for a command that is not running; remembered in case it arrives',
    );
    this.cancels.set(request.commandId, request.reason);
    for (const id of this.cancels.keys()) {
      if (this.cancels.size <= REMEMBERED_CANCELS) break;
      this.cancels.delete(id);
    }
  }

  /**
   * The controller confirms it still reaches this host: the running step's `confirmed` resolves.
   * A confirmation for any other command has nothing waiting for it and is dropped.
   */
  confirm(request: ConfirmRequest): void {
    if (this.current?.command.commandId !== request.commandId) {
      this.o.log.info({ commandId: request.commandId }, 'confirmation for a command that is not running; ignored');
      return;
    }
    this.o.log.info({ commandId: request.commandId }, 'controller confirmed it reaches this host');
    this.current.confirm();
  }

  /** Leave the running step at its next safe point, unfinished, for the next start of the worker. */
  stop(): void {
    this.stopping.abort();
    this.current?.abort.abort(new WorkerStoppingError());
  }

  /**
   * Answer a command the host cannot process with a failed status carrying `reason` (and a
   * step.failed audit event), and journal it as finished where the journal still takes writes, so
   * that a repeat of its id is answered instead of run. `left` when the worker stopped meanwhile.
   */
  async reject(command: ReceivedCommand, reason: Error): Promise<RunResult> {
    const log = this.o.log.child({ commandId: command.commandId, kind: command.kind, mode: command.mode });
    const starts = (await this.o.journal.read(command.commandId).catch(() => undefined))?.starts ?? 0;
    const base = { ...pick(command), starts, bootId: await this.o.bootId() };
    const error = toStepError(reason);
    const terminal: Terminal = { state: 'failed', error };
    new CommandAuditTrail(this.o.audit, command, starts, log).notProcessed(error);
    try {
      await this.o.audit.flush(this.stopping.signal);
      const status = await new StatusReporter(this.o.js, base, log).finish(terminal, this.stopping.signal);
      await this.o.journal.record(command, status).catch((err: unknown) => {
        log.error({ err }, 'the failed command cannot be journalled; a repeat of its id would run it');
      });
      return { kind: 'finished', status, step: undefined, replayed: false };
    } catch (err) {
      if (err instanceof StatusNotStoredError || err instanceof AuditNotStoredError) return { kind: 'left' };
      throw err;
    }
  }

  async run(command: ReceivedCommand): Promise<RunResult> {
    const { journal, log: baseLog } = this.o;
    const known = await journal.read(command.commandId);
    if (known?.finished !== undefined) {
      baseLog.info(
        { commandId: command.commandId, state: known.finished.state },
        'command already finished; answering from the journal',
      );
      await publishCommandStatus(this.o.js, known.finished);
      return { kind: 'finished', status: known.finished, step: undefined, replayed: true };
    }
    if (this.stopping.signal.aborted) return { kind: 'left' };
    const { entry, durable } = await journal.begin(command);
    const recovering = entry.starts > 1;
    const log = baseLog.child({
      commandId: command.commandId,
      kind: command.kind,
      mode: command.mode,
      starts: entry.starts,
    });
    const abort = new AbortController();
    let confirm = () => {};
    const confirmed = new Promise<void>((resolve) => (confirm = resolve));
    this.current = { command, abort, confirm };
    if (this.stopping.signal.aborted) abort.abort(new WorkerStoppingError());
    const remembered = this.cancels.get(command.commandId);
    if (remembered !== undefined) {
      this.cancels.delete(command.commandId);
      abort.abort(new StepCancelledError(remembered));
    }

    const base = { ...pick(command), starts: entry.starts, bootId: await this.o.bootId() };
    const reporter = new StatusReporter(this.o.js, base, log);
    const trail = new CommandAuditTrail(this.o.audit, command, entry.starts, log);
    trail.requested(recovering);
    let step: StepCommand | undefined;
    let terminal: Terminal;
    try {
      step = prepareStep(command);
      throwIfAborted(abort.signal);
      log.info({ recovering }, 'running step');
      // One status for accepted and started (docs/decisions/0023-cheaper-host-steps.md), written while
      // the journal's directory is flushed; the step starts only once both are done (decision 0038).
      await Promise.all([
        reporter.running({ pct: 0, message: recovering ? 'resuming after a host worker restart' : 'started' }),
        durable,
      ]);
      trail.started(base.bootId);
      const ctx = {
        signal: abort.signal,
        progress: reporter.progress.bind(reporter),
        log,
        recovering,
        audit: trail.note.bind(trail),
        confirmed,
      };
      const outcome = checkOutcome(await this.o.driver.runStep(step, ctx));
      terminal = { state: 'succeeded', outcome: recovering ? { ...outcome, recovered: true } : outcome };
      log.info({ changed: outcome.changed, summary: outcome.summary }, 'step succeeded');
    } catch (err) {
      if (err instanceof WorkerStoppingError) {
        log.info('worker stopping; the step stays unfinished and resumes at the next start');
        reporter.abandon();
        this.current = undefined;
        return { kind: 'left' };
      }
      const error = toStepError(err);
      terminal = { state: err instanceof StepCancelledError ? 'cancelled' : 'failed', error };
      log.warn({ err, reason: error.message }, err instanceof StepCancelledError ? 'step cancelled' : 'step failed');
    } finally {
      if (this.current?.abort === abort) this.current = undefined;
    }
    trail.finished(terminal);
    try {
      await this.o.audit.flush(this.stopping.signal);
      const status = await reporter.finish(terminal, this.stopping.signal);
      await journal.finish(status);
      return { kind: 'finished', status, step, replayed: false };
    } catch (err) {
      if (err instanceof StatusNotStoredError || err instanceof AuditNotStoredError) return { kind: 'left' };
      throw err;
    }
  }
}

/** The host could not process a command outside its step (journal, audit, an unexpected exception). */
export class CommandNotProcessedError extends RefitError {}

function checkOutcome(outcome: unknown): StepOutcome {
  const parsed = StepOutcome.safeParse(outcome);
  if (!parsed.success) throw new StepFailedError(`the driver returned an invalid outcome: ${parsed.error.message}`);
  return parsed.data;
}

function pick(c: ReceivedCommand): Pick<CommandStatus, 'commandId' | 'hostId' | 'kind' | 'mode'> {
  return { commandId: c.commandId, hostId: c.hostId, kind: c.kind, mode: c.mode };
}
