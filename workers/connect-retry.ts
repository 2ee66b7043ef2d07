import { setTimeout as sleep } from 'node:timers/promises';
import { parseDuration } from '../schemas/common.js';
import { UsageError } from '../schemas/errors.js';
import type { Logger } from './log.js';

/**
 * How a long-running process (the controller worker, a host agent) keeps trying to reach a server
 * at start: exponential back-off from `firstDelayMs`, capped at `maxDelayMs`, with jitter, until
 * `timeoutMs` after the first attempt. One-shot commands do not retry (workers/clients.ts).
 */
export interface ConnectPolicy {
  timeoutMs: number;
  firstDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_CONNECT_POLICY: ConnectPolicy = { timeoutMs: 5 * 60_000, firstDelayMs: 500, maxDelayMs: 15_000 };

/** The default policy, its bound from REFIT_CONNECT_TIMEOUT ("90s", "10m") when set. */
export function connectPolicy(env: NodeJS.ProcessEnv = process.env): ConnectPolicy {
  const text = env.REFIT_CONNECT_TIMEOUT;
  if (text === undefined || text === '') return DEFAULT_CONNECT_POLICY;
  const timeoutMs = parseDuration(text);
  if (timeoutMs === undefined)
    throw new UsageError(`REFIT_CONNECT_TIMEOUT must be a duration with a unit, such as 90s or 10m, not "${text}"`);
  return { ...DEFAULT_CONNECT_POLICY, timeoutMs };
}

/** A server did not answer within the policy's bound; the CLI prints it and exits with 1. */
export class ServerUnreachableError extends UsageError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 1, options);
  }
}

/**
 * The wait after `failures` failed attempts: doubling from `firstDelayMs` up to `maxDelayMs`, then
 * between half and all of that at random, so that a fleet started at once does not retry in step.
 */
export function backoffDelay(failures: number, policy: ConnectPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.firstDelayMs * 2 ** Math.max(0, failures - 1));
  return Math.round(ceiling * (0.5 + random() / 2));
}

export interface ConnectTarget {
  /** The server, in the operator's words: "NATS", "Temporal". */
  what: string;
  /** Its address as configured. */
  where: string;
}

export interface RetryOptions {
  policy: ConnectPolicy;
  log: Logger;
  /** Errors that no retry can cure (unreadable credentials, a malformed option): thrown at once. */
  isPermanent?: (err: unknown) => boolean;
  /** Stops the waiting: the last failure is thrown as it is. */
  signal?: AbortSignal;
}

/**
 * Run `attempt` until it resolves, waiting between failures as the policy says and logging each
 * failure with the next try's delay. `attempt` gets the time left before the bound, to cap its own
 * timeout. Past the bound, throws ServerUnreachableError with the last failure as its cause.
 */
export async function connectWithRetry<T>(
  target: ConnectTarget,
  attempt: (remainingMs: number) => Promise<T>,
  { policy, log, isPermanent = () => false, signal }: RetryOptions,
): Promise<T> {
  const started = Date.now();
  const deadline = started + policy.timeoutMs;
  for (let n = 1; ; n++) {
    try {
      const connected = await attempt(Math.max(0, deadline - Date.now()));
      if (n > 1) log.info({ ...target, attempt: n }, `reached ${target.what} at ${target.where} (attempt ${n})`);
      return connected;
    } catch (err) {
      if (isPermanent(err) || signal?.aborted === true) throw err;
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new ServerUnreachableError(
          `cannot reach ${target.what} at ${target.where}: gave up after ${n} attempts in ${seconds(Date.now() - started)} (bound: ${seconds(policy.timeoutMs)}, set with REFIT_CONNECT_TIMEOUT); last error: ${messageOf(err)}`,
          { cause: err },
        );
      }
      const delay = Math.min(backoffDelay(n, policy), remaining);
      log.warn(
        { ...target, attempt: n, nextTryInMs: delay, giveUpInMs: remaining, err: messageOf(err) },
        `cannot reach ${target.what} at ${target.where} (attempt ${n}: ${messageOf(err)}); next try in ${seconds(delay)}, giving up in ${seconds(remaining)}`,
      );
      await sleep(delay, undefined, signal ? { signal } : {}).catch(() => {
        throw err;
      });
    }
  }
}

/** A duration as log lines and errors give it: 2.5s, 90s, never. */
export function seconds(ms: number): string {
  if (ms === Number.POSITIVE_INFINITY) return 'never';
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
