import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

/**
 * A read that rides out a cluster electing new stream leaders after it lost a node: short requests
 * (`SHORT_REQUEST_MS`), asked again after a timeout, instead of one request that waits out the
 * client's 5 s and fails. nats-server's Raft groups wait 4 to 9 s without a leader before they elect
 * another, so a read keeps asking for `READ_RETRY_BUDGET_MS`: the longest wait and a request more,
 * with room for a loaded machine.
 */
export const SHORT_REQUEST_MS = 2_000;
export const READ_RETRY_BUDGET_MS = 15_000;
const PAUSE_MS = 250;

export async function retryTimeouts<T>(
  read: () => Promise<T>,
  { budgetMs = READ_RETRY_BUDGET_MS }: { budgetMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + budgetMs;
  for (;;) {
    try {
      return await read();
    } catch (err) {
      if ((err as Error).name !== 'TimeoutError' || Date.now() + PAUSE_MS >= deadline) throw err;
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
