import { createHash } from 'node:crypto';
import { AuditEvent, type AuditDraft, type AuditRecord } from '../../schemas/audit.js';
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
 * Put a draft on a chain after `tail` (none: the chain is empty), signed by `signer` if given.
 * Throws when the result is not a valid event.
 */
export function sealEvent(draft: AuditDraft, chain: string, tail: ChainTail | undefined, signer?: Signer): AuditEvent {
  const unsealed = { ...draft, chain, seq: (tail?.seq ?? 0) + 1, prevHash: tail?.hash ?? null };
  const signed = signer
    ? { ...unsealed, signature: { key: signer.publicKey, sig: signer.sign(signedContent(unsealed)) } }
    : unsealed;
  return AuditEvent.parse({ ...signed, hash: eventHash(signed) });
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
