import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { inboxPrefix } from '../schemas/names.js';
import { RefitError } from '../schemas/errors.js';
import { seedOfCredentials, signerOfSeed, type Signer } from '../activities/nkey.js';
import {
  backoffDelay,
  connectWithRetry,
  DEFAULT_CONNECT_POLICY,
  seconds,
  ServerUnreachableError,
  type ConnectPolicy,
  type RetryOptions,
} from './connect-retry.js';
import type { Logger } from './log.js';
import type { NatsTls } from './config.js';

export class CredentialsError extends RefitError {}

/** Build an authenticator from a credentials file: an nkey seed (SU…) or a NATS `.creds` file. */
export function authenticatorFromFile(file: string) {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new CredentialsError(`cannot read NATS credentials ${file}`, { cause });
  }
  if (text.includes('BEGIN NATS USER JWT')) return credsAuthenticator(new TextEncoder().encode(text));
  const seed = text.trim();
  if (!seed.startsWith('SU')) throw new CredentialsError(`${file} holds neither an nkey user seed nor a .creds file`);
  return nkeyAuthenticator(new TextEncoder().encode(seed));
}

/** A signer with the nkey seed of a credentials file (a bare seed or a `.creds` file): a host signs its audit events with it. */
export function signerFromFile(file: string): Signer {
  try {
    return signerOfSeed(seedOfCredentials(readFileSync(file, 'utf8')));
  } catch (cause) {
    throw new CredentialsError(`cannot sign with the nkey seed of ${file}: ${(cause as Error).message}`, { cause });
  }
}

export interface NatsIdentity {
  url: string;
  credsFile: string;
  /** Used for the inbox prefix that this identity alone may subscribe to: "controller", "cli", "host_<id>". */
  identity: string;
  name?: string;
  /** How long the first connection attempt may take (ms). */
  timeout?: number;
  /** TLS to the server; absent: plain TCP. */
  tls?: NatsTls | undefined;
  /** The wait before the next attempt after losing the server (ms); default 0.5 s. */
  reconnectDelay?: () => number;
}

export function identityOfHost(hostId: string): string {
  return `host_${hostId}`;
}

/** One attempt: what one-shot commands use, so that they fail fast when NATS is down. */
export async function connectNats(id: NatsIdentity): Promise<NatsConnection> {
  return connect({
    // A cluster is given as a comma-separated list; every node is a seed.
    servers: id.url
      .split(',')
      .map((u) => u.trim())
      .filter(Boolean),
    authenticator: authenticatorFromFile(id.credsFile),
    inboxPrefix: inboxPrefix(id.identity),
    name: id.name ?? `refit-${id.identity}`,
    maxReconnectAttempts: -1,
    ...(id.reconnectDelay !== undefined ? { reconnectDelayHandler: id.reconnectDelay } : { reconnectTimeWait: 500 }),
    ...SERVER_LOSS_DETECTION,
    timeout: id.timeout ?? 10_000,
    ...(id.tls !== undefined
      ? {
          tls: {
            caFile: id.tls.caFile,
            ...(id.tls.certFile !== undefined ? { certFile: id.tls.certFile } : {}),
            ...(id.tls.keyFile !== undefined ? { keyFile: id.tls.keyFile } : {}),
          },
        }
      : {}),
  });
}

/**
 * A server that dies closes its connections and is noticed at once; one that hangs, or a machine
 * that drops off the network, is noticed only by unanswered pings. nats.js pings every 2 minutes and
 * gives up after 2 unanswered (up to 4 minutes on a dead node); this notices within 20 s and moves
 * to another node of the cluster.
 */
export const SERVER_LOSS_DETECTION = { pingInterval: 10_000, maxPingOut: 2 } as const;

const ATTEMPT_TIMEOUT_MS = 10_000;

/**
 * How a connection that lost its server tries again: at once on a node not tried lately (another
 * node of a cluster), then, while no server answers, doubling from 0.5 s up to 5 s between attempts.
 * The bound is the connect policy's (REFIT_CONNECT_TIMEOUT, default 5 minutes).
 */
export const RECONNECT_DELAYS = { firstDelayMs: 500, maxDelayMs: 5_000 } as const;

/**
 * What this process's long-running NATS connections went through, counted since it started:
 * connections lost, reconnect attempts, reconnects, and connections given up after the bound.
 */
export const natsReconnectCounts = { disconnects: 0, attempts: 0, reconnects: 0, givenUp: 0 };

export interface WatchedNats {
  nc: NatsConnection;
  /**
   * Rejects with ServerUnreachableError when the connection lost its server and did not get one back
   * within the bound (the connection is closed then); never resolves. The process should exit.
   */
  lost: Promise<never>;
}

/**
 * Connect as a long-running process does: retry as `policy` says (workers/connect-retry.ts). Once
 * connected, a lost server is tried again with back-off (RECONNECT_DELAYS), each attempt logged,
 * until the policy's bound (a policy without one: the default bound); then `lost` rejects.
 */
export async function connectNatsWithRetry(
  id: NatsIdentity,
  retry: Omit<RetryOptions, 'isPermanent'>,
): Promise<WatchedNats> {
  const bound = Number.isFinite(retry.policy.timeoutMs) ? retry.policy.timeoutMs : DEFAULT_CONNECT_POLICY.timeoutMs;
  const reconnect = { ...RECONNECT_DELAYS, timeoutMs: bound, setWith: 'REFIT_CONNECT_TIMEOUT' };
  const state = { failures: 0 };
  const nc = await connectWithRetry(
    { what: 'NATS', where: id.url },
    (remainingMs) =>
      connectNats({
        ...id,
        timeout: Math.max(1_000, Math.min(id.timeout ?? ATTEMPT_TIMEOUT_MS, remainingMs)),
        reconnectDelay: () => backoffDelay(state.failures, reconnect),
      }),
    {
      ...retry,
      isPermanent: (err) => err instanceof CredentialsError || (err as Error).name === 'InvalidArgumentError',
    },
  );
  return { nc, lost: watchConnection(nc, id, reconnect, state, retry.log) };
}

/** How long a one-shot command (a CLI read) tries to get a lost NATS server back before it fails (ms). */
export const ONE_SHOT_RECONNECT_BOUND_MS = 10_000;

/**
 * One attempt to connect, as one-shot commands do (connectNats), and a `lost` that rejects when the
 * server is lost for longer than `boundMs`: a command waiting on it fails with that instead of hanging.
 */
export async function connectNatsOnce(id: NatsIdentity, boundMs = ONE_SHOT_RECONNECT_BOUND_MS): Promise<WatchedNats> {
  const state = { failures: 0 };
  const reconnect = { ...RECONNECT_DELAYS, timeoutMs: boundMs };
  const nc = await connectNats({ ...id, reconnectDelay: () => backoffDelay(state.failures, reconnect) });
  return { nc, lost: watchConnection(nc, id, reconnect, state) };
}

/**
 * Log each loss of the server, each attempt to reach one again and each return, and count them; past
 * the bound, close the connection and reject.
 */
function watchConnection(
  nc: NatsConnection,
  id: NatsIdentity,
  policy: ConnectPolicy & { setWith?: string },
  state: { failures: number },
  log?: Logger,
): Promise<never> {
  let fail: (err: Error) => void = () => undefined;
  const lost = new Promise<never>((_resolve, reject) => (fail = reject));
  // Nobody need listen: an unheard loss is not an unhandled rejection.
  lost.catch(() => undefined);
  void followConnection(nc, id, policy, state, fail, log);
  return lost;
}

async function followConnection(
  nc: NatsConnection,
  id: NatsIdentity,
  policy: ConnectPolicy & { setWith?: string },
  state: { failures: number },
  fail: (err: Error) => void,
  log?: Logger,
): Promise<void> {
  const ids = { what: 'NATS', where: id.url, identity: id.identity };
  let lostAt: number | undefined;
  let lostFrom = '';
  let giveUp: NodeJS.Timeout | undefined;
  let gaveUp = false;
  for await (const s of nc.status()) {
    if (s.type === 'disconnect') {
      natsReconnectCounts.disconnects++;
      lostAt = Date.now();
      lostFrom = s.server;
      state.failures = 0;
      log?.warn(
        { ...ids, nats: s.server, giveUpInMs: policy.timeoutMs },
        `lost NATS at ${s.server}; reconnecting, giving up in ${seconds(policy.timeoutMs)}`,
      );
      giveUp = setTimeout(() => {
        natsReconnectCounts.givenUp++;
        gaveUp = true;
        const err = new ServerUnreachableError(
          `lost NATS at ${lostFrom} and reached no server of ${id.url} again: gave up after ${state.failures} attempts in ${seconds(Date.now() - (lostAt ?? Date.now()))} (bound: ${seconds(policy.timeoutMs)}${policy.setWith ? `, set with ${policy.setWith}` : ''})`,
        );
        log?.error({ ...ids, attempts: state.failures }, err.message);
        // Rejected before the close, so that whoever waits on both hears why.
        fail(err);
        void nc.close();
      }, policy.timeoutMs);
    } else if (s.type === 'reconnecting') {
      natsReconnectCounts.attempts++;
      state.failures++;
      const lostFor = Date.now() - (lostAt ?? Date.now());
      log?.warn(
        {
          ...ids,
          attempt: state.failures,
          lostForMs: lostFor,
          giveUpInMs: Math.max(0, policy.timeoutMs - lostFor),
        },
        `reconnecting to NATS at ${id.url} (attempt ${state.failures}, lost for ${seconds(lostFor)}; giving up in ${seconds(Math.max(0, policy.timeoutMs - lostFor))})`,
      );
    } else if (s.type === 'reconnect') {
      natsReconnectCounts.reconnects++;
      clearTimeout(giveUp);
      const lostFor = Date.now() - (lostAt ?? Date.now());
      log?.info(
        { ...ids, nats: s.server, attempts: state.failures, lostForMs: lostFor },
        `reconnected to NATS at ${s.server} after ${seconds(lostFor)} (attempt ${state.failures})`,
      );
      lostAt = undefined;
      state.failures = 0;
    }
  }
  clearTimeout(giveUp);
  const closedWith = await nc.closed();
  // Closed by its owner (nothing was lost), or after giving up (said already).
  if (gaveUp || !(closedWith instanceof Error)) return;
  const err = new ServerUnreachableError(`the connection to NATS at ${id.url} closed: ${closedWith.message}`, {
    cause: closedWith,
  });
  log?.error({ ...ids, err: closedWith.message }, err.message);
  fail(err);
}
