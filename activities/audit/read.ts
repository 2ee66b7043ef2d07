import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { AuditRecord } from '../../schemas/audit.js';
import { STREAMS } from '../../schemas/names.js';
import { recordOf } from './hash.js';
import type { StreamState } from './verify.js';

const FETCH_BATCH = 1_000;

/**
 * Every message of the audit stream, in stream order, through an ordered consumer (controller and
 * CLI identities). `since` starts at that storage time instead of the beginning.
 */
export async function readTrail(nc: NatsConnection, opts: { since?: Date } = {}): Promise<AuditRecord[]> {
  const jsm = await jetstreamManager(nc);
  const { state } = await jsm.streams.info(STREAMS.audit);
  if (state.messages === 0) return [];
  const consumer = await jetstream(nc).consumers.get(
    STREAMS.audit,
    opts.since !== undefined
      ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: opts.since.toISOString() }
      : {},
  );
  const records: AuditRecord[] = [];
  try {
    for (;;) {
      const batch = await consumer.fetch({ max_messages: FETCH_BATCH, expires: 2_000 });
      let got = 0;
      let pending = 0;
      for await (const m of batch) {
        got++;
        pending = m.info.pending;
        records.push(recordOf(m.subject, m.seq, m.timestamp, m.data));
        if (pending === 0 || m.seq >= state.last_seq) break;
      }
      if (got === 0 || pending === 0 || (records.at(-1)?.streamSeq ?? 0) >= state.last_seq) break;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
  return records;
}

/** The stream's sequence bookkeeping, with the sequences of deleted messages. */
export async function readStreamState(nc: NatsConnection): Promise<StreamState> {
  const { state } = await (await jetstreamManager(nc)).streams.info(STREAMS.audit, { deleted_details: true });
  return { firstSeq: state.first_seq, lastSeq: state.last_seq, deleted: state.deleted ?? [] };
}
