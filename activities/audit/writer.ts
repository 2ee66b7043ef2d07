import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditDraft, AuditEvent } from '../../schemas/audit.js';
import { CanonicalMembers, linkOf, sealDraft, type ChainTail } from './hash.js';
import { MAX_EVENT_BYTES, fitDraft } from './draft.js';
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
 * Append one event (a valid {@link AuditDraft}) to a chain so that no two writers can fork it: the event is sealed onto the tail
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
  let fitted = draft;
  let members = CanonicalMembers.of(draft);
  if (Buffer.byteLength(members.json()) > MAX_EVENT_BYTES) {
    fitted = fitDraft(draft);
    members = CanonicalMembers.of(fitted);
  }
  // A writer that remembers its tail (or that the chain is empty: null) appends without reading.
  let tail = opts.tail === undefined ? await readTail(store, chain) : (opts.tail ?? undefined);
  for (let conflicts = 0; ; conflicts++) {
    // The last attempt was stored but its acknowledgement was lost.
    if (tail?.eventId === fitted.eventId) return { tail, duplicate: true, streamSeq: tail.streamSeq };
    const { event, json } = sealDraft(fitted, members, chain, tail, opts.signer);
    try {
      const ack = await store.append(chain, json, fitted.eventId, tail?.streamSeq ?? 0);
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

/** How many chains a {@link ChainWriter} remembers the end of (the oldest is forgotten first). */
const REMEMBERED_TAILS = 1_024;

/**
 * The appends of one process: one at a time per chain, each on the end the one before left, so that
 * a process's own writers (every host workflow of a rollout writes the rollout's chain) never
 * conflict with each other and read a chain's end only when another process moved it. The
 * expected-last-subject-sequence check of {@link appendToChain} still guards every append: a stale
 * end remembered here is a conflict, read again, never a fork.
 */
export class ChainWriter {
  private readonly tails = new Map<string, ChainTail>();
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(private readonly store: ChainStore) {}

  append(chain: string, draft: AuditDraft): Promise<Appended> {
    const before = this.queues.get(chain) ?? Promise.resolve();
    const run = before.then(async () => {
      try {
        const done = await appendToChain(this.store, chain, draft, { tail: this.tails.get(chain) });
        this.remember(chain, done.tail);
        return done;
      } catch (err) {
        this.tails.delete(chain);
        throw err;
      }
    });
    const settled = run.catch(() => undefined);
    this.queues.set(chain, settled);
    void settled.then(() => {
      if (this.queues.get(chain) === settled) this.queues.delete(chain);
    });
    return run;
  }

  private remember(chain: string, tail: ChainTail | undefined): void {
    this.tails.delete(chain);
    if (tail === undefined) return;
    this.tails.set(chain, tail);
    for (const oldest of this.tails.keys()) {
      if (this.tails.size <= REMEMBERED_TAILS) break;
      this.tails.delete(oldest);
    }
  }
}
