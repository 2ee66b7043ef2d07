import { describe, expect, it } from 'vitest';
import { AUDIT_CHAINS, type AuditDraft } from '../../schemas/audit.js';
import { canonicalJson, eventHash, sealEvent } from './hash.js';
import { MemoryChainStore } from './memory-store.js';
import { streamStateOf, verifyTrail } from './verify.js';
import { appendToChain } from './writer.js';

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
