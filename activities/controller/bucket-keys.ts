import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

/**
 * A read that rides out a cluster electing new stream leaders (a few seconds after it lost a node):
 * short requests (`SHORT_REQUEST_MS`), asked again after a timeout, instead of one request that
 * waits out the client's 5 s and fails.
 */
export const SHORT_REQUEST_MS = 2_000;
const ATTEMPTS = 4;
const PAUSE_MS = 250;

export async function retryTimeouts<T>(read: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (err) {
      if (attempt >= ATTEMPTS || (err as Error).name !== 'TimeoutError') throw err;
      await sleep(PAUSE_MS);
    }
  }
}

/**
 * The keys of a KV bucket, from its stream's list of subjects (paged by the client), with no
 * consumer: `kv.keys()` creates an ephemeral consumer, and on a cluster that has just lost a node
 * the server can place it on the lost node, where its creation times out until the cluster notices
 * (docs/RELIABILITY.md, "NATS node loss"). Read the values by direct get, which any replica answers.
 */
export async function bucketKeys(nc: NatsConnection, bucket: string, timeoutMs = SHORT_REQUEST_MS): Promise<string[]> {
  const prefix = `$KV.${bucket}.`;
  const jsm = await jetstreamManager(nc, { timeout: timeoutMs });
  const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}>` });
  return Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
}
