import type { JetStreamClient } from '@nats-io/jetstream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { CommandStatus, type CommandProgress, type CommandState } from '../../schemas/command.js';
import { publishCommandStatus } from './report.js';
import { RefitError } from '../../schemas/errors.js';

type Base = Pick<CommandStatus, 'commandId' | 'hostId' | 'kind' | 'mode' | 'starts' | 'bootId'>;
export type Terminal = Pick<CommandStatus, 'outcome' | 'error'> & { state: CommandState };

const RETRY_MAX_MS = 15_000;

export class StatusNotStoredError extends RefitError {}

/**
 * Writes one command's status to the results bucket, in order: progress updates are coalesced
 * and never overtake the terminal status, which is retried until the bucket has stored it.
 */
export class StatusReporter {
  private chain: Promise<void> = Promise.resolve();
  private latest: CommandProgress | undefined;
  private progressQueued = false;

  constructor(
    private readonly js: JetStreamClient,
    private readonly base: Base,
    private readonly log: Logger,
  ) {}

  progress(pct: number, message: string, flags: Pick<CommandProgress, 'awaitingConfirmation'> = {}): void {
    this.latest = {
      pct: Math.min(100, Math.max(0, Number.isFinite(pct) ? pct : 0)),
      message: message.slice(0, 500),
      ...(flags.awaitingConfirmation === true ? { awaitingConfirmation: true } : {}),
    };
    if (this.progressQueued) return;
    this.progressQueued = true;
    this.chain = this.chain.then(async () => {
      this.progressQueued = false;
      await this.tryPublish('running', this.latest);
    });
  }

  /** Publish a non-terminal state; a lost update is only logged, the next one replaces it. */
  async update(state: CommandState, progress: CommandProgress): Promise<void> {
    this.latest = progress;
    this.chain = this.chain.then(() => this.tryPublish(state, progress));
    await this.chain;
  }

  /** Wait for queued updates, then store the terminal status; retries until stored or `giveUp` is aborted. */
  async finish(terminal: Terminal, giveUp: AbortSignal): Promise<CommandStatus> {
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
