import { setTimeout as sleep } from 'node:timers/promises';
import { RefitError } from '../schemas/errors.js';

/** What was awaited did not happen in time; the message says what it was. */
export class PollTimeoutError extends RefitError {}

export interface UntilOptions {
  /**
   * What is awaited, in the timeout error: "timed out after 30 s waiting for <what>". A function is
   * asked when the time is up, so it can name what is still missing.
   */
  what: string | (() => string);
  timeoutMs: number;
  /** The pause between two asks (250 ms). */
  intervalMs?: number;
}

/**
 * Ask `probe` until it answers with anything but `undefined` or `false`, and return that answer.
 * It is asked once more when the time is up, then a PollTimeoutError; an error the probe throws ends
 * the wait at once.
 */
export async function until<T>(
  probe: () => T | Promise<T>,
  { what, timeoutMs, intervalMs = 250 }: UntilOptions,
): Promise<Exclude<T, undefined | false>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await probe();
    if (answer !== undefined && answer !== false) return answer as Exclude<T, undefined | false>;
    const left = deadline - Date.now();
    if (left <= 0) {
      const awaited = typeof what === 'function' ? what() : what;
      throw new PollTimeoutError(`timed out after ${seconds(timeoutMs)} waiting for ${awaited}`);
    }
    await sleep(Math.min(intervalMs, left));
  }
}

const seconds = (ms: number) => `${Number((ms / 1000).toFixed(1))} s`;
