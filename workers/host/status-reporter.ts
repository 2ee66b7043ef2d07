import type { JetStreamClient } from '@nats-io/jetstream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { CommandStatus, type CommandProgress, type CommandState } from '../../schemas/command.js';
import { publishCommandStatus } from './report.js';
import { RefitError } from '../../schemas/errors.js';

type Base = Pick<CommandStatus, 'commandId' | 'hostId' | 'kind' | 'mode' | 'starts' | 'bootId'>;
export type Terminal = Pick<CommandStatus, 'outcome' | 'error'> & { state: CommandState };

const RETRY_MAX_MS = 15_000;
/**
 * A step's progress is first written this long after it started: the dispatching activity heartbeats
 * Temporal every 3 s (HEARTBEAT_EVERY_MS in activities/controller/dispatch.ts), so progress of a
 * shorter step would be seen by no one; its last progress goes with the terminal status instead.
 * A progress that asks the controller for its confirmation is written at once.
 */
export const PROGRESS_HOLD_MS = 3_000;

export class StatusNotStoredError extends RefitError {}

/**
 * Writes one command's status to the results bucket, in order: progress updates are coalesced,
 * held back for the first {@link PROGRESS_HOLD_MS} of a step, and never overtake the terminal
 * status, which is retried until the bucket has stored it.
 */
export class StatusReporter {
  private chain: Promise<void> = Promise.resolve();
  private latest: CommandProgress | undefined;
  private progressQueued = false;
  /** Progress is held until then (performance.now()); set when the step starts running. */
  private holdUntil = Number.POSITIVE_INFINITY;
  private held: NodeJS.Timeout | undefined;
  private finished = false;

  constructor(
    private readonly js: JetStreamClient,
    private readonly base: Base,
    private readonly log: Logger,
    private readonly holdMs = PROGRESS_HOLD_MS,
  ) {}

  progress(pct: number, message: string, flags: Pick<CommandProgress, 'awaitingConfirmation'> = {}): void {
    this.latest = {
      pct: Math.min(100, Math.max(0, Number.isFinite(pct) ? pct : 0)),
      message: message.slice(0, 500),
      ...(flags.awaitingConfirmation === true ? { awaitingConfirmation: true } : {}),
    };
    if (this.progressQueued || this.finished) return;
    const wait = this.holdUntil - performance.now();
    if (flags.awaitingConfirmation !== true && wait > 0) {
      this.held ??= setTimeout(
        () => {
          this.held = undefined;
          this.queueProgress();
        },
        Math.min(wait, this.holdMs),
      ).unref();
      return;
    }
    this.queueProgress();
  }

  private queueProgress(): void {
    if (this.progressQueued || this.finished) return;
    clearTimeout(this.held);
    this.held = undefined;
    this.progressQueued = true;
    this.chain = this.chain.then(async () => {
      this.progressQueued = false;
      await this.tryPublish('running', this.latest);
    });
  }

  /**
   * The step starts: one `running` status says the host has the command and runs it (older agents
   * wrote `accepted`, then `running`). Progress from now on is held for the first hold time.
   */
  async running(progress: CommandProgress): Promise<void> {
    this.holdUntil = performance.now() + this.holdMs;
    await this.update('running', progress);
  }

  /** Publish a non-terminal state; a lost update is only logged, the next one replaces it. */
  async update(state: CommandState, progress: CommandProgress): Promise<void> {
    this.latest = progress;
    this.chain = this.chain.then(() => this.tryPublish(state, progress));
    await this.chain;
  }

  /** The step is left unfinished (the worker stops): no held progress is written after it. */
  abandon(): void {
    this.finished = true;
    clearTimeout(this.held);
    this.held = undefined;
  }

  /** Wait for queued updates, then store the terminal status; retries until stored or `giveUp` is aborted. */
  async finish(terminal: Terminal, giveUp: AbortSignal): Promise<CommandStatus> {
    this.finished = true;
    clearTimeout(this.held);
    this.held = undefined;
    await this.chain;
    // A finished command waits for nothing: its last progress, without awaitingConfirmation.
    const last = this.latest && { pct: this.latest.pct, message: this.latest.message };
    const status = CommandStatus.parse({
      ...this.base,
      ...terminal,
      progress: last,
      updatedAt: new Date().toISOString(),
    });
    for (let attempt = 1, wait = 500; ; attempt++, wait = Math.min(wait * 2, RETRY_MAX_MS)) {
      try {
        await publishCommandStatus(this.js, status);
        return status;
      } catch (err) {
        if (giveUp.aborted) throw new StatusNotStoredError(`status of ${status.commandId} not stored`, { cause: err });
        this.log.warn({ err, attempt, retryInMs: wait }, 'cannot store the command status; retrying');
        await sleep(wait, undefined, { signal: giveUp }).catch(() => undefined);
      }
    }
  }

  private async tryPublish(state: CommandState, progress: CommandProgress | undefined): Promise<void> {
    const status: CommandStatus = {
      ...this.base,
      state,
      ...(progress !== undefined ? { progress } : {}),
      updatedAt: new Date().toISOString(),
    };
    try {
      await publishCommandStatus(this.js, status);
    } catch (err) {
      this.log.debug({ err, state }, 'progress update not stored');
    }
  }
}
