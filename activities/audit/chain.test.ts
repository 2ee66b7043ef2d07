import { describe, expect, it } from 'vitest';
import { createUser } from '@nats-io/nkeys';
import { signerOfSeed, verifySignature } from '../nkey.js';
import { AUDIT_CHAINS, AuditEvent, type AuditDraft } from '../../schemas/audit.js';
import { CanonicalMembers, canonicalJson, eventHash, sealDraft, sealEvent, signedContent } from './hash.js';
import { MemoryChainStore } from './memory-store.js';
import { streamStateOf, verifyTrail } from './verify.js';
import { ChainWriter, appendToChain } from './writer.js';

const chain = AUDIT_CHAINS.host('h1');
const draft = (n: number, extra: Partial<AuditDraft> = {}): AuditDraft => ({
  eventId: `cmd-1/1/e${n}`,
  at: new Date(Date.UTC(2025, 0, 1, 0, 0, n)).toISOString(),
  actor: 'host:h1',
  type: 'step.command',
  hostId: 'h1',
  data: { argv: ['ip', 'link'], exitCode: 0, durationMs: n },
  ...extra,
});

async function trail(n: number): Promise<MemoryChainStore> {
  const store = new MemoryChainStore();
  for (let i = 1; i <= n; i++) await appendToChain(store, chain, draft(i));
  return store;
}

describe('canonical JSON and hashes', () => {
  it('gives the same bytes whatever the key order, and leaves out undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: undefined }], c: 'x' } })).toBe(
      '{"a":{"c":"x","d":[1,{"z":1}]},"b":1}',
    );
  });

  it('hashes an event without its own hash member', () => {
    const sealed = sealEvent(draft(1), chain, undefined);
    expect(sealed).toMatchObject({ chain, seq: 1, prevHash: null });
    expect(eventHash(sealed)).toBe(sealed.hash);
    expect(eventHash({ ...sealed, at: '2030-01-01T00:00:00.000Z' })).not.toBe(sealed.hash);
  });

  it('joins members written once into the canonical JSON of the whole', () => {
    const value = { b: 1, a: { d: [1, { z: 1, y: undefined }], c: 'x' }, gone: undefined, é: 'ü', A: null };
    const members = CanonicalMembers.of(value);
    expect(members.json()).toBe(canonicalJson(value));
    expect(members.with({ c: [2], b: undefined }).json()).toBe(canonicalJson({ ...value, c: [2], b: undefined }));
    expect(members.json()).toBe(canonicalJson(value));
  });

  it('seals an event into the bytes, hash and signature of its canonical JSON, sealed again from the same members', () => {
    const signer = signerOfSeed(seed());
    const d = draft(1, { rolloutId: undefined, data: { before: { b: [1, 2], a: 'x' }, after: { a: 'y' }, n: 3 } });
    const members = CanonicalMembers.of(d);
    for (const tail of [undefined, { seq: 4, hash: 'a'.repeat(64), streamSeq: 9 }]) {
      const { event, json } = sealDraft(d, members, chain, tail, signer);
      expect(event).toMatchObject({ chain, seq: (tail?.seq ?? 0) + 1, prevHash: tail?.hash ?? null });
      expect(AuditEvent.parse(event)).toEqual(event);
      expect(json).toBe(canonicalJson(event));
      expect(event.hash).toBe(eventHash(event));
      expect(verifySignature(signer.publicKey, signedContent(event), event.signature?.sig ?? '')).toBe(true);
    }
  });

  it('refuses to seal onto a tail whose hash is not a sha256', () => {
    expect(() => sealEvent(draft(2), chain, { seq: 1, hash: 'not a hash', streamSeq: 1 })).toThrow(/sha256/);
  });
});

describe('appending to a chain', () => {
  it('links each event to the one before and verifies intact', async () => {
    const store = await trail(3);
    const events = store.records.map((r) => r.event as { seq: number; prevHash: string | null; hash: string });
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(events[1]?.prevHash).toBe(events[0]?.hash);
    expect(verifyTrail(store.records)).toMatchObject({
      ok: true,
      events: 3,
      chains: [{ chain, events: 3, head: { seq: 3 } }],
    });
  });

  it('re-reads the end of the chain when another writer got there first, instead of forking it', async () => {
    const store = await trail(1);
    const stale = { seq: 1, hash: (store.records[0]?.event as { hash: string }).hash, streamSeq: 1 };
    await appendToChain(store, chain, draft(2));
    const done = await appendToChain(store, chain, draft(3), { tail: stale });
    expect(done.tail?.seq).toBe(3);
    expect(verifyTrail(store.records).ok).toBe(true);
  });

  it('stores an event once when its acknowledgement was lost and it is sent again', async () => {
    const store = await trail(1);
    store.faults.push('ack-lost');
    const tail = { seq: 1, hash: (store.records[0]?.event as { hash: string }).hash, streamSeq: 1 };
    await expect(appendToChain(store, chain, draft(2), { tail })).rejects.toThrow('timeout');
    const again = await appendToChain(store, chain, draft(2), { tail });
    expect(again).toMatchObject({ duplicate: true, tail: { seq: 2, eventId: 'cmd-1/1/e2' } });
    expect(store.records).toHaveLength(2);
    expect(verifyTrail(store.records).ok).toBe(true);
  });

  it('drops a duplicate the stream recognises by event id, leaving the chain as it was', async () => {
    const store = await trail(2);
    const done = await appendToChain(store, chain, draft(1));
    expect(done).toMatchObject({ duplicate: true, streamSeq: 1, tail: { seq: 2 } });
    expect(store.records).toHaveLength(2);
  });
});

describe('verifying a trail', () => {
  const edit = (
    store: MemoryChainStore,
    index: number,
    change: (e: Record<string, unknown>) => Record<string, unknown>,
  ) => {
    const r = store.records[index];
    if (r) r.event = change(r.event as Record<string, unknown>);
  };

  it('finds an event edited in place at its own position', async () => {
    const store = await trail(4);
    edit(store, 1, (e) => ({ ...e, data: { argv: ['true'], exitCode: 0, durationMs: 2 } }));
    const report = verifyTrail(store.records);
    expect(report.ok).toBe(false);
    expect(report.chains[0]?.firstProblem).toMatchObject({ kind: 'edited', seq: 2, hostId: 'h1', streamSeq: 2 });
  });

  it('finds an edit whose hash was recomputed at the next link', async () => {
    const store = await trail(4);
    edit(store, 1, (e) => {
      const changed = { ...e, data: { forged: true } };
      return { ...changed, hash: eventHash(changed) };
    });
    expect(verifyTrail(store.records).chains[0]?.firstProblem).toMatchObject({ kind: 'broken', seq: 3 });
  });

  it('finds a deleted event as missing, and the gap in the stream', async () => {
    const store = await trail(4);
    store.records.splice(1, 1);
    const report = verifyTrail(store.records, { stream: streamStateOf(store.records) });
    expect(report.problems.map((p) => [p.kind, p.seq ?? p.streamSeq])).toEqual([
      ['missing', 3],
      ['deleted', 2],
    ]);
  });

  it('finds events put back in another order', async () => {
    const store = await trail(3);
    const [a, b] = [store.records[1]?.event, store.records[2]?.event];
    edit(store, 1, () => b as Record<string, unknown>);
    edit(store, 2, () => a as Record<string, unknown>);
    expect(verifyTrail(store.records).chains[0]?.firstProblem).toMatchObject({
      kind: 'reordered',
      seq: 3,
      streamSeq: 2,
    });
  });

  it('finds a forged event appended by someone other than the host', async () => {
    const store = await trail(2);
    const last = store.records[1]?.event as { hash: string };
    const forged = sealEvent(draft(3, { actor: 'controller' }), chain, { seq: 2, hash: last.hash, streamSeq: 2 });
    store.put(chain, canonicalJson(forged));
    expect(verifyTrail(store.records).chains[0]?.firstProblem).toMatchObject({ kind: 'foreign-writer', seq: 3 });
  });

  it('finds a message that is not an event; a writer that remembers its tail chains on past it', async () => {
    const store = new MemoryChainStore();
    const first = await appendToChain(store, chain, draft(1));
    store.put(chain, '{}');
    await appendToChain(store, chain, draft(2), { tail: first.tail ?? null });
    const report = verifyTrail(store.records);
    expect(report.problems).toEqual([expect.objectContaining({ kind: 'malformed', seq: 2, streamSeq: 2 })]);
  });

  it('finds a host chain truncated behind a link the rollout chain holds', async () => {
    const store = await trail(3);
    const head = store.records[2]?.event as { seq: number; hash: string };
    const rollout = AUDIT_CHAINS.rollout('r1');
    await appendToChain(store, rollout, {
      ...draft(9, { actor: 'controller', type: 'host.succeeded', rolloutId: 'r1' }),
      links: [{ chain, seq: head.seq, hash: head.hash }],
    });
    store.records.splice(2, 1);
    const scoped = verifyTrail(store.records, { select: (c) => c === chain });
    expect(scoped.problems).toEqual([expect.objectContaining({ kind: 'bad-link', chain: rollout, linked: chain })]);
  });

  it('encodes a rollout id that is not a subject token', () => {
    expect(AUDIT_CHAINS.rollout('nightly-2025')).toBe('refit.audit.rollout.nightly-2025');
    expect(AUDIT_CHAINS.rollout('a.b c')).toMatch(/^refit\.audit\.rollout\._b64_[A-Za-z0-9_-]+$/);
  });
});

const seed = () => new TextDecoder().decode(createUser().getSeed());
const host = signerOfSeed(seed());
const controller = signerOfSeed(seed());
const keys = { h1: host.publicKey };
async function appendSigned(store: MemoryChainStore, n: number, signer = host): Promise<void> {
  await appendToChain(store, chain, draft(n), { signer });
}

describe("a host's signed audit events", () => {
  it('verify against its enrolled key, and the hash still covers everything but itself', async () => {
    const store = new MemoryChainStore();
    for (let i = 1; i <= 3; i++) await appendSigned(store, i);
    const event = store.records[0]?.event as { signature: { key: string }; hash: string };
    expect(event.signature.key).toBe(host.publicKey);
    expect(eventHash(event)).toBe(event.hash);
    const report = verifyTrail(store.records, { hostKeys: keys });
    expect(report).toMatchObject({ ok: true, problems: [], signatures: { checked: true, verified: 3, unsigned: 0 } });
  });

  it('count only the chains a report is about (audit verify --host counts that host)', async () => {
    const store = new MemoryChainStore();
    for (let i = 1; i <= 3; i++) await appendSigned(store, i);
    expect(verifyTrail(store.records, { hostKeys: keys, select: (c) => c === chain }).signatures.verified).toBe(3);
    expect(verifyTrail(store.records, { hostKeys: keys, select: (c) => c !== chain }).signatures.verified).toBe(0);
  });

  it('an event forged in the host name with the controller credentials fails verify as forged', async () => {
    const store = new MemoryChainStore();
    await appendSigned(store, 1);
    await appendSigned(store, 2, controller);
    const report = verifyTrail(store.records, { hostKeys: keys });
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      expect.objectContaining({
        kind: 'forged',
        chain,
        seq: 2,
        message: expect.stringMatching(/not host h1's enrolled key/),
      }),
    ]);
  });

  it('an event signed with the right key claim but a false signature fails verify as forged', async () => {
    const store = new MemoryChainStore();
    await appendSigned(store, 1, { publicKey: host.publicKey, sign: (data) => controller.sign(data) });
    const report = verifyTrail(store.records, { hostKeys: keys });
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'forged', seq: 1, message: expect.stringMatching(/signature does not verify/) }),
    ]);
  });

  it('a signed event whose content was changed, its hash recomputed, fails as forged (not only as edited)', async () => {
    const store = new MemoryChainStore();
    await appendSigned(store, 1);
    const record = store.records[0] as { event: Record<string, unknown> };
    const edited = { ...record.event, data: { argv: ['rm', '-rf', '/'], exitCode: 0, durationMs: 1 } };
    record.event = { ...edited, hash: eventHash(edited) };
    const report = verifyTrail(store.records, { hostKeys: keys });
    expect(report.problems.map((p) => p.kind)).toEqual(['forged']);
  });

  it('old unsigned events are counted as unsigned, not as problems; an unsigned one after signed ones is a problem', async () => {
    const store = new MemoryChainStore();
    await appendToChain(store, chain, draft(1));
    await appendToChain(store, chain, draft(2));
    await appendSigned(store, 3);
    expect(verifyTrail(store.records, { hostKeys: keys })).toMatchObject({
      ok: true,
      signatures: { checked: true, verified: 1, unsigned: 2 },
      chains: [{ chain, unsigned: 2 }],
    });
    await appendToChain(store, chain, draft(4));
    const report = verifyTrail(store.records, { hostKeys: keys });
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'unsigned', seq: 4, message: expect.stringMatching(/after signed events/) }),
    ]);
    expect(verifyTrail(store.records.slice(0, 2), { hostKeys: keys, requireSignatures: true }).problems).toEqual([
      expect.objectContaining({ kind: 'unsigned', seq: 1 }),
      expect.objectContaining({ kind: 'unsigned', seq: 2 }),
    ]);
  });

  it('a signed event of a host with no enrolled key cannot be verified, and says so', async () => {
    const store = new MemoryChainStore();
    await appendSigned(store, 1);
    expect(verifyTrail(store.records, { hostKeys: {} }).problems).toEqual([
      expect.objectContaining({ kind: 'unverifiable', message: expect.stringMatching(/no enrolled key/) }),
    ]);
  });

  it('without enrolled keys nothing is checked, and the report says so', async () => {
    const store = new MemoryChainStore();
    await appendSigned(store, 1, controller);
    expect(verifyTrail(store.records)).toMatchObject({ ok: true, signatures: { checked: false } });
  });

  it('an older verifier (hash over every member but hash) still finds a signed event intact', async () => {
    const store = new MemoryChainStore();
    await appendSigned(store, 1);
    const { hash, ...rest } = store.records[0]?.event as Record<string, unknown>;
    expect(hash).toBe(eventHash(rest));
    expect(canonicalJson(rest)).toContain('"signature"');
  });
});

describe("one process's appends (ChainWriter)", () => {
  /** Counts reads of a chain's end and refused appends. */
  class CountingStore extends MemoryChainStore {
    reads = 0;
    conflicts = 0;
    override async last(subject: string) {
      this.reads++;
      return super.last(subject);
    }
    override async append(subject: string, body: string, msgId: string, expectLast: number) {
      try {
        return await super.append(subject, body, msgId, expectLast);
      } catch (err) {
        this.conflicts++;
        throw err;
      }
    }
  }
  const rollout = AUDIT_CHAINS.rollout('r1');
  const hostEvent = (n: number): AuditDraft => draft(n, { eventId: `refit-host-h${n}/run/1`, actor: 'controller' });

  it('appends events sent at once one after another, reading the end of the chain once and never conflicting', async () => {
    const store = new CountingStore();
    const writer = new ChainWriter(store);
    await Promise.all(Array.from({ length: 20 }, (_, i) => writer.append(rollout, hostEvent(i + 1))));
    expect(store.records).toHaveLength(20);
    expect(verifyTrail(store.records)).toMatchObject({ ok: true, chains: [{ chain: rollout, events: 20 }] });
    expect(store.reads).toBe(1);
    expect(store.conflicts).toBe(0);
  });

  it('still finds a chain another process appended to: the append is refused, the end read again, nothing forked', async () => {
    const store = new CountingStore();
    const writer = new ChainWriter(store);
    await writer.append(rollout, hostEvent(1));
    await appendToChain(store, rollout, hostEvent(2));
    const done = await writer.append(rollout, hostEvent(3));
    expect(store.conflicts).toBe(1);
    expect(done.tail).toMatchObject({ seq: 3, streamSeq: 3 });
    expect(verifyTrail(store.records)).toMatchObject({ ok: true, chains: [{ chain: rollout, events: 3 }] });
    // and a retried append of a stored event stays one event
    const again = await writer.append(rollout, hostEvent(3));
    expect(again.duplicate).toBe(true);
    expect(store.records).toHaveLength(3);
  });

  it('forgets the end it believed when an append fails, and reads it at the next', async () => {
    const store = new CountingStore();
    const writer = new ChainWriter(store);
    await writer.append(rollout, hostEvent(1));
    store.faults.push('ack-lost');
    await expect(writer.append(rollout, hostEvent(2))).rejects.toThrow('timeout');
    const reads = store.reads;
    const again = await writer.append(rollout, hostEvent(2));
    expect(store.reads).toBe(reads + 1);
    expect(again).toMatchObject({ duplicate: true, tail: { seq: 2 } });
    expect(store.records).toHaveLength(2);
  });
});
