import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditDraft, AuditEvent } from '../../schemas/audit.js';
import { canonicalJson, linkOf, sealEvent, type ChainTail } from './hash.js';
import { fitDraft } from './draft.js';
import { WrongLastSequenceError, type ChainStore } from './store.js';
import { RefitError } from '../../schemas/errors.js';
import type { Signer } from '../nkey.js';

/** Others kept appending to the chain faster than this writer could. */
export class ChainContentionError extends RefitError {}

export interface Appended {
  /** The chain's last event after this append (this event, unless it was a duplicate). */
  tail: ChainTail | undefined;
  /** The event as stored by this call; absent when an earlier attempt had stored it. */
  event?: AuditEvent;
  duplicate: boolean;
  /** Stream sequence of the message that holds this event id. */
  streamSeq: number;
}

/** Read the chain's end from the store. */
export async function readTail(store: ChainStore, chain: string, knownSeq?: number): Promise<ChainTail | undefined> {
  const last = await store.last(chain);
  return last === null ? undefined : { ...linkOf(last, knownSeq), streamSeq: last.streamSeq };
}

/**
 * Append one event to a chain so that no two writers can fork it: the event is sealed onto the tail
 * the writer believes in and stored only if that tail is still the subject's last message (JetStream's
 * expected-last-subject-sequence). When another writer got there first, the tail is read again and the
 * event sealed anew. The event id is the message id, so a re-sent event is stored once.
 */
export async function appendToChain(
  store: ChainStore,
  chain: string,
  draft: AuditDraft,
  opts: {
    tail?: ChainTail | null | undefined;
    maxConflicts?: number;
    /** Signs each sealed event (a host signs its own chain). */
    signer?: Signer | undefined;
    /** Told when the chain's end was not where the writer believed, after reading it again. */
    onMoved?: (believed: ChainTail | undefined, found: ChainTail | undefined) => void;
  } = {},
): Promise<Appended> {
  const fitted = fitDraft(draft);
  // A writer that remembers its tail (or that the chain is empty: null) appends without reading.
  let tail = opts.tail === undefined ? await readTail(store, chain) : (opts.tail ?? undefined);
  for (let conflicts = 0; ; conflicts++) {
    // The last attempt was stored but its acknowledgement was lost.
    if (tail?.eventId === fitted.eventId) return { tail, duplicate: true, streamSeq: tail.streamSeq };
    const event = sealEvent(fitted, chain, tail, opts.signer);
    try {
      const ack = await store.append(chain, canonicalJson(event), fitted.eventId, tail?.streamSeq ?? 0);
      // Stored before under this id (JetStream's duplicate window): the chain did not move.
      if (ack.duplicate) return { tail, duplicate: true, streamSeq: ack.streamSeq };
      return {
        tail: { seq: event.seq, hash: event.hash, streamSeq: ack.streamSeq, eventId: event.eventId },
        event,
        duplicate: false,
        streamSeq: ack.streamSeq,
      };
    } catch (err) {
      if (!(err instanceof WrongLastSequenceError)) throw err;
      if (conflicts >= (opts.maxConflicts ?? 50)) {
        throw new ChainContentionError(
          `gave up appending ${fitted.eventId} to ${chain} after ${conflicts + 1} conflicts`,
          { cause: err },
        );
      }
      if (conflicts > 0) await sleep(Math.random() * Math.min(1_000, 20 * 2 ** conflicts));
      const believed = tail;
      tail = await readTail(store, chain, tail?.seq);
      opts.onMoved?.(believed, tail);
    }
  }
}
