import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { inboxPrefix } from '../schemas/names.js';
import { RefitError } from '../schemas/errors.js';
import { seedOfCredentials, signerOfSeed, type Signer } from '../activities/nkey.js';
import { connectWithRetry, type RetryOptions } from './connect-retry.js';
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
    reconnectTimeWait: 500,
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
 * Connect as a long-running process does: retry as `policy` says (workers/connect-retry.ts), then
 * log each loss and return of the server. Once connected, the client itself reconnects without end
 * (`maxReconnectAttempts: -1`) and keeps the subscriptions.
 */
export async function connectNatsWithRetry(
  id: NatsIdentity,
  retry: Omit<RetryOptions, 'isPermanent'>,
): Promise<NatsConnection> {
  const nc = await connectWithRetry(
    { what: 'NATS', where: id.url },
    (remainingMs) =>
      connectNats({ ...id, timeout: Math.max(1_000, Math.min(id.timeout ?? ATTEMPT_TIMEOUT_MS, remainingMs)) }),
    {
      ...retry,
      isPermanent: (err) => err instanceof CredentialsError || (err as Error).name === 'InvalidArgumentError',
    },
  );
  void logConnectionChanges(nc, id, retry.log);
  return nc;
}

async function logConnectionChanges(nc: NatsConnection, id: NatsIdentity, log: Logger): Promise<void> {
  for await (const s of nc.status()) {
    if (s.type === 'disconnect')
      log.warn({ nats: s.server, identity: id.identity }, `lost NATS at ${s.server}; reconnecting`);
    else if (s.type === 'reconnect')
      log.info({ nats: s.server, identity: id.identity }, `reconnected to NATS at ${s.server}`);
  }
}
