import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { AuditRecord } from '../../schemas/audit.js';
import { STREAMS } from '../../schemas/names.js';
import { recordOf } from './hash.js';
import type { StreamState } from './verify.js';

const FETCH_BATCH = 1_000;

/**
 * Every message of the audit stream, in stream order, by batched direct get (controller and CLI
 * identities; the CLI may create no consumer, docs/security.md). `since` starts at that storage
 * time instead of the beginning, `afterSeq` after that stream sequence (what `--follow` has shown).
 */
export async function readTrail(
  nc: NatsConnection,
  opts: { since?: Date; afterSeq?: number } = {},
): Promise<AuditRecord[]> {
  const jsm = await jetstreamManager(nc);
  const { state } = await jsm.streams.info(STREAMS.audit);
  if (state.messages === 0 || (opts.afterSeq !== undefined && state.last_seq <= opts.afterSeq)) return [];
  const records: AuditRecord[] = [];
  let from: { seq: number } | { start_time: string } =
    opts.afterSeq !== undefined
      ? { seq: Math.max(opts.afterSeq + 1, state.first_seq) }
      : opts.since !== undefined
        ? { start_time: opts.since.toISOString() }
        : { seq: state.first_seq };
  for (;;) {
    let got = 0;
    let pending = 0;
    for await (const m of await jsm.direct.getBatch(STREAMS.audit, { ...from, batch: FETCH_BATCH })) {
      got++;
      pending = m.pending;
      if (m.seq > state.last_seq) break;
      records.push(recordOf(m.subject, m.seq, m.time.toISOString(), m.data));
    }
    const last = records.at(-1)?.streamSeq ?? 0;
    if (got === 0 || pending === 0 || last >= state.last_seq) break;
    from = { seq: last + 1 };
  }
  return records;
}

/** The stream's sequence bookkeeping, with the sequences of deleted messages. */
export async function readStreamState(nc: NatsConnection): Promise<StreamState> {
  const { state } = await (await jetstreamManager(nc)).streams.info(STREAMS.audit, { deleted_details: true });
  return { firstSeq: state.first_seq, lastSeq: state.last_seq, deleted: state.deleted ?? [] };
}
