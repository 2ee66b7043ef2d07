import {
  StoredAuditEvent,
  hostOfChain,
  type AuditRecord,
  type StoredAuditEvent as Event,
} from '../../schemas/audit.js';
import type { KeyObject } from 'node:crypto';
import { publicKeyObject, verifySignature } from '../nkey.js';
import { eventHash, linkOf, signedContent } from './hash.js';

export const PROBLEM_KINDS = {
  /** A message on an audit subject that is not an audit event. */
  malformed: 'malformed',
  /** The event's content does not match its own hash. */
  edited: 'edited',
  /** The event names another chain than the subject it is stored on. */
  misplaced: 'misplaced',
  /** Positions are skipped: events were deleted. */
  missing: 'missing',
  /** A position comes again or goes back. */
  reordered: 'reordered',
  /** prevHash is not the hash of the event before. */
  broken: 'broken',
  /** One event id stored twice. */
  duplicate: 'duplicate',
  /** A host chain holds an event that does not come from that host. */
  foreignWriter: 'foreign-writer',
  /** A link to another chain's event finds it missing or different. */
  badLink: 'bad-link',
  /** Messages were removed from the stream (it never deletes by itself). */
  deleted: 'deleted',
  /** A host chain's event whose signature is not its host's: written by someone else in its name. */
  forged: 'forged',
  /** A host chain's event without a signature after signed ones (or anywhere, when signatures are required). */
  unsigned: 'unsigned',
  /** A signed host event whose host has no enrolled key to check it against. */
  unverifiable: 'unverifiable',
} as const;
export type ProblemKind = (typeof PROBLEM_KINDS)[keyof typeof PROBLEM_KINDS];

export interface AuditProblem {
  kind: ProblemKind;
  /** The chain (subject) where it shows; absent for stream-wide problems. */
  chain?: string;
  hostId?: string;
  /** Position in the chain of the event where the problem shows. */
  seq?: number;
  streamSeq?: number;
  eventId?: string;
  /** For a bad link: the chain it points into. */
  linked?: string;
  message: string;
}

export interface ChainSummary {
  chain: string;
  hostId?: string;
  events: number;
  head?: { seq: number; hash: string };
  /** Host chains: events written before the host signed its events (not a problem unless required). */
  unsigned?: number;
  /** The first problem of this chain: where it stops being trustworthy. */
  firstProblem?: AuditProblem;
}

export interface VerifyReport {
  ok: boolean;
  events: number;
  chains: ChainSummary[];
  problems: AuditProblem[];
  /** Host signatures: whether they were checked (enrolled keys given), how many verified, how many events had none. */
  signatures: { checked: boolean; verified: number; unsigned: number };
}

/** The stream's own bookkeeping of sequences: a gap means a message was deleted. */
export interface StreamState {
  firstSeq: number;
  lastSeq: number;
  deleted: number[];
}

/** The sequence bookkeeping implied by a complete export: gaps between its stream sequences. */
export function streamStateOf(records: readonly AuditRecord[]): StreamState | undefined {
  if (records.length === 0) return undefined;
  const seqs = records.map((r) => r.streamSeq).sort((a, b) => a - b);
  const deleted: number[] = [];
  for (let i = 1; i < seqs.length; i++)
    for (let s = (seqs[i - 1] as number) + 1; s < (seqs[i] as number); s++) deleted.push(s);
  return { firstSeq: seqs[0] as number, lastSeq: seqs.at(-1) as number, deleted };
}

interface Options {
  stream?: StreamState | undefined;
  /** Only report on these chains (and on links into them); stream-wide problems are then left out. */
  select?: ((chain: string) => boolean) | undefined;
  /** Each host's enrolled nkey public key: host events' signatures are checked against them. */
  hostKeys?: Readonly<Record<string, string>> | undefined;
  /** Every host event must be signed (a fleet whose hosts all sign): an unsigned one is a problem. */
  requireSignatures?: boolean | undefined;
}

/**
 * Recompute every chain of the trail: each event's hash, its position, its link to the event before,
 * its links into other chains, and the stream's record of deleted messages.
 */
export function verifyTrail(records: readonly AuditRecord[], opts: Options = {}): VerifyReport {
  const byChain = new Map<string, AuditRecord[]>();
  for (const r of [...records].sort((a, b) => a.streamSeq - b.streamSeq)) {
    byChain.set(r.subject, [...(byChain.get(r.subject) ?? []), r]);
  }
  const problems: AuditProblem[] = [];
  const positions = new Map<string, Map<number, string>>();
  const seenIds = new Map<string, string>();
  const linking: { chain: string; event: Event; streamSeq: number }[] = [];
  const chains: ChainSummary[] = [];
  const signatures = signatureChecker(opts);

  // Signatures verified per chain, so a report on some chains counts only theirs.
  const verifiedIn = new Map<string, number>();
  for (const [chain, chainRecords] of byChain) {
    const verifiedBefore = signatures.verified;
    const hostId = hostOfChain(chain);
    const at = positions.set(chain, new Map()).get(chain) as Map<number, string>;
    const problem = (p: Omit<AuditProblem, 'chain' | 'hostId'>) =>
      problems.push({ chain, ...(hostId !== undefined ? { hostId } : {}), ...p });
    let prev: { seq: number; hash: string } | undefined;
    const signing = { seen: false, unsigned: 0 };
    for (const [index, record] of chainRecords.entries()) {
      const parsed = StoredAuditEvent.safeParse(record.event);
      if (!parsed.success) {
        const link = linkOf(record, prev?.seq);
        const why =
          record.event === undefined
            ? 'not JSON'
            : parsed.error.issues
                .slice(0, 3)
                .map((i) => `${i.path.join('.') || '(event)'}: ${i.message}`)
                .join('; ');
        problem({
          kind: 'malformed',
          seq: link.seq,
          streamSeq: record.streamSeq,
          message: `not an audit event (${why})`,
        });
        prev = { seq: link.seq, hash: link.hash };
        at.set(link.seq, link.hash);
        continue;
      }
      const event = parsed.data;
      const where = { seq: event.seq, streamSeq: record.streamSeq, eventId: event.eventId };
      if (eventHash(record.event as object) !== event.hash) {
        problem({
          kind: 'edited',
          ...where,
          message: `${event.type} at seq ${event.seq} does not match its hash: it was changed after it was written`,
        });
      }
      if (event.chain !== chain)
        problem({ kind: 'misplaced', ...where, message: `event of chain ${event.chain} stored on ${chain}` });
      const expected = (prev?.seq ?? 0) + 1;
      const later =
        event.seq > expected &&
        chainRecords.slice(index + 1).some((r) => (r.event as { seq?: unknown } | undefined)?.seq === expected);
      if (later) {
        problem({ kind: 'reordered', ...where, message: `seq ${event.seq} is stored before seq ${expected}` });
      } else if (event.seq > expected) {
        const gap = event.seq - 1 > expected ? `events ${expected}–${event.seq - 1} are` : `event ${expected} is`;
        problem({ kind: 'missing', ...where, message: `${gap} missing before seq ${event.seq}` });
      } else if (event.seq < expected) {
        problem({ kind: 'reordered', ...where, message: `seq ${event.seq} comes after seq ${expected - 1}` });
      } else if (event.prevHash !== (prev?.hash ?? null)) {
        problem({
          kind: 'broken',
          ...where,
          message: `prevHash of seq ${event.seq} is not the hash of ${prev ? `seq ${prev.seq}` : 'nothing (first event)'}`,
        });
      }
      const first = seenIds.get(event.eventId);
      if (first !== undefined)
        problem({ kind: 'duplicate', ...where, message: `event id ${event.eventId} was already stored (${first})` });
      else seenIds.set(event.eventId, `${chain} seq ${event.seq}`);
      if (hostId !== undefined && (event.actor !== `host:${hostId}` || event.hostId !== hostId)) {
        problem({
          kind: 'foreign-writer',
          ...where,
          message: `written as ${event.actor} on host ${hostId}'s own chain`,
        });
      }
      if (hostId !== undefined) {
        const found = signatures.check(hostId, event, record.event as object, signing);
        if (found !== undefined) problem({ ...where, ...found });
      }
      if (event.links !== undefined) linking.push({ chain, event, streamSeq: record.streamSeq });
      prev = { seq: event.seq, hash: event.hash };
      at.set(event.seq, event.hash);
    }
    verifiedIn.set(chain, signatures.verified - verifiedBefore);
    chains.push({
      chain,
      ...(hostId !== undefined ? { hostId } : {}),
      events: chainRecords.length,
      ...(prev ? { head: prev } : {}),
      ...(signing.unsigned > 0 ? { unsigned: signing.unsigned } : {}),
    });
  }

  for (const { chain, event, streamSeq } of linking) {
    for (const link of event.links ?? []) {
      const hash = positions.get(link.chain)?.get(link.seq);
      if (hash === link.hash) continue;
      problems.push({
        kind: 'bad-link',
        chain,
        seq: event.seq,
        streamSeq,
        eventId: event.eventId,
        message:
          hash === undefined
            ? `links to seq ${link.seq} of ${link.chain}, which the trail does not hold (deleted or truncated)`
            : `links to seq ${link.seq} of ${link.chain}, whose hash is now different`,
        linked: link.chain,
      });
    }
  }

  if (opts.select === undefined && opts.stream !== undefined) problems.push(...streamProblems(opts.stream));
  const select = opts.select;
  const kept =
    select === undefined
      ? problems
      : problems.filter(
          (p) => (p.chain !== undefined && select(p.chain)) || (p.linked !== undefined && select(p.linked)),
        );
  const keptChains = select === undefined ? chains : chains.filter((c) => select(c.chain));
  for (const c of keptChains) {
    const firstProblem = kept
      .filter((p) => p.chain === c.chain)
      .sort((a, b) => (a.streamSeq ?? 0) - (b.streamSeq ?? 0))[0];
    if (firstProblem !== undefined) c.firstProblem = firstProblem;
  }
  return {
    ok: kept.length === 0,
    events: keptChains.reduce((n, c) => n + c.events, 0),
    chains: keptChains.sort((a, b) => a.chain.localeCompare(b.chain)),
    problems: kept,
    signatures: {
      checked: opts.hostKeys !== undefined,
      verified: keptChains.reduce((n, c) => n + (verifiedIn.get(c.chain) ?? 0), 0),
      unsigned: keptChains.reduce((n, c) => n + (c.unsigned ?? 0), 0),
    },
  };
}

const shortKey = (key: string) => `${key.slice(0, 8)}…`;

/**
 * Checks each host event's signature against its host's enrolled key. Unsigned events before a
 * chain's first signed one were written before hosts signed (counted, not a problem, unless
 * signatures are required); a host that signs never stops, so an unsigned one after is a problem.
 */
function signatureChecker(opts: Options) {
  const keys = new Map<string, KeyObject | undefined>();
  const keyOf = (hostId: string) => {
    if (!keys.has(hostId)) {
      const text = opts.hostKeys?.[hostId];
      let key: KeyObject | undefined;
      try {
        key = text === undefined ? undefined : publicKeyObject(text);
      } catch {
        key = undefined;
      }
      keys.set(hostId, key);
    }
    return keys.get(hostId);
  };
  const checker = {
    verified: 0,
    check(
      hostId: string,
      event: Event,
      stored: object,
      chain: { seen: boolean; unsigned: number },
    ): Pick<AuditProblem, 'kind' | 'message'> | undefined {
      const what = `${event.type} at seq ${event.seq}`;
      if (event.signature === undefined) {
        if (chain.seen)
          return {
            kind: 'unsigned',
            message: `${what} is not signed, after signed events of this chain: not written by host ${hostId}'s worker`,
          };
        if (opts.requireSignatures)
          return { kind: 'unsigned', message: `${what} is not signed, and signatures are required` };
        chain.unsigned++;
        return undefined;
      }
      chain.seen = true;
      if (opts.hostKeys === undefined) return undefined;
      const enrolled = opts.hostKeys[hostId];
      const key = keyOf(hostId);
      if (enrolled === undefined || key === undefined)
        return {
          kind: 'unverifiable',
          message: `${what} is signed by ${shortKey(event.signature.key)}, but host ${hostId} has no enrolled key to check it against`,
        };
      if (event.signature.key !== enrolled)
        return {
          kind: 'forged',
          message: `${what} is signed by ${shortKey(event.signature.key)}, not host ${hostId}'s enrolled key ${shortKey(enrolled)}: written by someone else in its name`,
        };
      if (!verifySignature(key, signedContent(stored), event.signature.sig))
        return {
          kind: 'forged',
          message: `${what}: the signature does not verify against host ${hostId}'s key: its content is not what the host signed`,
        };
      checker.verified++;
      return undefined;
    },
  };
  return checker;
}

function streamProblems(stream: StreamState): AuditProblem[] {
  const out: AuditProblem[] = [];
  if (stream.firstSeq > 1) {
    out.push({
      kind: 'deleted',
      streamSeq: 1,
      message: `stream sequences 1–${stream.firstSeq - 1} are gone: the start of the trail was purged`,
    });
  }
  if (stream.deleted.length > 0) {
    const shown = stream.deleted.slice(0, 20).join(', ') + (stream.deleted.length > 20 ? ', …' : '');
    const n = stream.deleted.length;
    out.push({
      kind: 'deleted',
      streamSeq: stream.deleted[0] as number,
      message: `${n} message${n === 1 ? ' was' : 's were'} deleted from the stream (stream sequence${n === 1 ? '' : 's'} ${shown})`,
    });
  }
  return out;
}
