import { Client, Connection } from '@temporalio/client';
import type { NatsConnection } from '@nats-io/transport-node';
import { IDENTITIES } from '../schemas/names.js';
import { credsFile, loadConfig, temporalTlsOptions, type RefitConfig } from './config.js';
import { connectNatsOnce } from './nats.js';
import { UsageError } from '../schemas/errors.js';

export async function withTemporal<T>(config: RefitConfig, fn: (client: Client) => Promise<T>): Promise<T> {
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: config.temporalAddress,
      connectTimeout: '5s',
      ...temporalTlsOptions(config.temporalTls),
    });
  } catch (cause) {
    throw new UsageError(
      `cannot reach Temporal at ${config.temporalAddress} (is the stack up? try: refit dev up): ${(cause as Error).message}`,
      1,
    );
  }
  try {
    return await fn(new Client({ connection, namespace: config.temporalNamespace }));
  } finally {
    await connection.close();
  }
}

/** The CLI's own NATS identity: it reads inventory and results, and cannot send commands. */
export async function withNats<T>(config: RefitConfig, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  let nc: NatsConnection;
  let lost: Promise<never>;
  try {
    ({ nc, lost } = await connectNatsOnce({
      url: config.natsUrl,
      credsFile: config.natsCreds ?? credsFile(config.home, IDENTITIES.cli),
      identity: IDENTITIES.cli,
      tls: config.natsTls,
    }));
  } catch (cause) {
    throw new UsageError(
      `cannot reach NATS at ${config.natsUrl} (is the stack up? try: refit dev up): ${(cause as Error).message}`,
      1,
    );
  }
  try {
    // A server lost in the middle of the command, and not back within the bound: fail, saying so
    // (also when what the command waited for ended with the closed connection).
    let lostWith: Error | undefined;
    const gone = lost.catch((err: unknown) => {
      lostWith = new UsageError(`${(err as Error).message}; try again once NATS answers`, 1, { cause: err });
      throw lostWith;
    });
    const result = await Promise.race([fn(nc), gone]);
    if (lostWith !== undefined) throw lostWith;
    return result;
  } finally {
    await nc.close();
  }
}

export { loadConfig };
