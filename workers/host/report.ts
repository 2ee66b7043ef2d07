import { JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import { resultKey, type CommandStatus } from '../../schemas/command.js';
import type { HostPresence } from '../../schemas/host.js';
import { BUCKETS } from '../../schemas/names.js';

const PUBLISH_TIMEOUT_MS = 5_000;

/**
 * A host may not look up bucket streams (that needs STREAM.INFO), so it writes KV entries as plain
 * JetStream publishes on the bucket's subjects; the publish ack says the entry is stored.
 */
async function kvPut(js: JetStreamClient, bucket: string, key: string, value: unknown): Promise<void> {
  await js.publish(`$KV.${bucket}.${key}`, JSON.stringify(value), { timeout: PUBLISH_TIMEOUT_MS });
}

export function publishCommandStatus(js: JetStreamClient, status: CommandStatus): Promise<void> {
  return kvPut(js, BUCKETS.results, resultKey(status.hostId, status.commandId), status);
}

/**
 * Writes presence; with `afterSeq`, only if the key's last write is still that one (the stream
 * sequence this agent's previous write got). Returns this write's sequence.
 */
export async function publishPresence(js: JetStreamClient, presence: HostPresence, afterSeq?: number): Promise<number> {
  const ack = await js.publish(`$KV.${BUCKETS.hosts}.${presence.hostId}`, JSON.stringify(presence), {
    timeout: PUBLISH_TIMEOUT_MS,
    ...(afterSeq !== undefined ? { expect: { lastSubjectSequence: afterSeq } } : {}),
  });
  return ack.seq;
}

/** JetStream's answer to a write whose expected last sequence is not the key's last. */
export function isWrongLastSequence(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === 10071;
}
