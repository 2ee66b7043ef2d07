import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { inboxPrefix } from '../schemas/names.js';
import { RefitError } from '../schemas/errors.js';

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

export interface NatsIdentity {
  url: string;
  credsFile: string;
  /** Used for the inbox prefix that this identity alone may subscribe to: "controller", "cli", "host_<id>". */
  identity: string;
  name?: string;
  /** How long the first connection attempt may take (ms). */
  timeout?: number;
}

export function identityOfHost(hostId: string): string {
  return `host_${hostId}`;
}

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
    timeout: id.timeout ?? 10_000,
  });
}
