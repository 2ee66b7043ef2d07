import { createHash } from 'node:crypto';
import { AuditEvent, AuditSignature, type AuditDraft, type AuditRecord } from '../../schemas/audit.js';
import type { Signer } from '../nkey.js';

/**
 * JSON with object keys sorted at every level and no whitespace: the same value always gives the
 * same bytes, whichever process wrote it. `undefined` members are left out, as JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const members = Object.keys(value)
    .sort()
    .flatMap((k) => {
      const v = (value as Record<string, unknown>)[k];
      return v === undefined || typeof v === 'function' ? [] : [`${JSON.stringify(k)}:${canonicalJson(v)}`];
    });
  return `{${members.join(',')}}`;
}

export function sha256Hex(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The hash an event must carry: sha256 of its canonical JSON without the `hash` member. */
export function eventHash(event: object): string {
  const { hash: _hash, ...rest } = event as Record<string, unknown>;
  return sha256Hex(canonicalJson(rest));
}

/** What sealing adds to a draft before signing: checked, since `prevHash` comes from a stored message. */
const ChainPosition = AuditEvent.pick({ chain: true, seq: true, prevHash: true });

/** Where a chain ends: the position and hash of its last stored message. */
export interface ChainTail {
  seq: number;
  hash: string;
  /** Stream sequence of that message: what the next append expects as the subject's last. */
  streamSeq: number;
  /** The event id of that message, when it is an event. */
  eventId?: string;
}

/** What a host's signature signs: the canonical JSON of the event without `hash` and `signature`. */
export function signedContent(event: object): string {
  const { hash: _hash, signature: _signature, ...rest } = event as Record<string, unknown>;
  return canonicalJson(rest);
}

/**
 * An object's top-level members, each as its canonical `"key":value` text: a large member (an
 * event's data) is written once, and the object with members added is joined from the texts.
 */
export class CanonicalMembers {
  private constructor(private readonly members: Map<string, string>) {}

  static of(value: object): CanonicalMembers {
    return new CanonicalMembers(new Map()).with(value);
  }

  /** A copy with these members added or replaced (undefined ones left out, as canonicalJson does). */
  with(value: object): CanonicalMembers {
    const members = new Map(this.members);
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined || typeof v === 'function') members.delete(k);
      else members.set(k, `${JSON.stringify(k)}:${canonicalJson(v)}`);
    }
    return new CanonicalMembers(members);
  }

  /** {@link canonicalJson} of the object these members make up. */
  json(): string {
    return `{${[...this.members.keys()]
      .sort()
      .map((k) => this.members.get(k))
      .join(',')}}`;
  }
}

/** A sealed event and its canonical JSON, the bytes stored. */
export interface Sealed {
  event: AuditEvent;
  json: string;
}

/**
 * Put a draft on a chain after `tail` (none: the chain is empty), signed by `signer` if given.
 * The draft must be a valid {@link AuditDraft}: writers parse theirs where they build or read it,
 * and what sealing adds is checked here.
 */
export function sealEvent(draft: AuditDraft, chain: string, tail: ChainTail | undefined, signer?: Signer): AuditEvent {
  return sealDraft(draft, CanonicalMembers.of(draft), chain, tail, signer).event;
}

/**
 * {@link sealEvent} from the draft's members written beforehand (`CanonicalMembers.of(draft)`),
 * also returning the event's canonical JSON: each member is written once, where signing, hashing
 * and storing the event wrote all of it three times (and sealing again after a conflict, once more).
 */
export function sealDraft(
  draft: AuditDraft,
  members: CanonicalMembers,
  chain: string,
  tail: ChainTail | undefined,
  signer?: Signer,
): Sealed {
  const position = ChainPosition.parse({ chain, seq: (tail?.seq ?? 0) + 1, prevHash: tail?.hash ?? null });
  let unsealed = members.with(position);
  const signature = signer && AuditSignature.parse({ key: signer.publicKey, sig: signer.sign(unsealed.json()) });
  if (signature !== undefined) unsealed = unsealed.with({ signature });
  const hash = sha256Hex(unsealed.json());
  const event: AuditEvent = { ...draft, ...position, ...(signature !== undefined ? { signature } : {}), hash };
  return { event, json: unsealed.with({ hash }).json() };
}

/**
 * The position and hash by which the next event links to a stored message. A message that is not
 * an event (garbage, or tampering) still takes one position and is linked by the hash of its content,
 * so that writers and the verifier agree on what follows it.
 */
export function linkOf(record: AuditRecord, previousSeq: number | undefined): Omit<ChainTail, 'streamSeq'> {
  const e = record.event as Record<string, unknown> | undefined;
  if (e !== null && typeof e === 'object' && Number.isInteger(e.seq) && typeof e.hash === 'string') {
    return { seq: e.seq as number, hash: e.hash, ...(typeof e.eventId === 'string' ? { eventId: e.eventId } : {}) };
  }
  const content = record.event !== undefined ? canonicalJson(record.event) : (record.raw ?? '');
  return { seq: (previousSeq ?? 0) + 1, hash: sha256Hex(content) };
}

/** A stored message as a record: parsed when it is JSON, kept as text when not. */
export function recordOf(subject: string, streamSeq: number, storedAt: string, data: Uint8Array): AuditRecord {
  const text = new TextDecoder().decode(data);
  try {
    return { subject, streamSeq, storedAt, event: JSON.parse(text) as unknown };
  } catch {
    return { subject, streamSeq, storedAt, raw: text };
  }
}
