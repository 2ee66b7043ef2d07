import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryChainStore } from '../../activities/audit/memory-store.js';
import { verifyTrail } from '../../activities/audit/verify.js';
import type { AuditDraft } from '../../schemas/audit.js';
import { AuditNotStoredError, HostAuditLog } from './audit-spool.js';

const log = pino({ level: 'silent' });
let dir: string;
const opened: HostAuditLog[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'refit-audit-spool-'));
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((a) => a.stop(0)));
  await rm(dir, { recursive: true, force: true });
});

const draft = (n: number): AuditDraft => ({
  eventId: `c/1/e${n}`,
  at: new Date().toISOString(),
  actor: 'host:h1',
  type: 'step.started',
  hostId: 'h1',
  data: { n },
});

/** A store that counts reads, to show the host appends without reading its chain. */
class CountingStore extends MemoryChainStore {
  reads = 0;
  override async last(subject: string) {
    this.reads++;
    return super.last(subject);
  }
}

async function open(store: MemoryChainStore): Promise<HostAuditLog> {
  const audit = await HostAuditLog.open({ hostId: 'h1', dir, store, log });
  audit.start();
  opened.push(audit);
  return audit;
}

const stored = (store: MemoryChainStore) => store.records.map((r) => (r.event as { data: { n: number } }).data.n);

describe('the host audit spool', () => {
  it('keeps events while the stream is unreachable and stores them in order when it is back', async () => {
    const store = new CountingStore();
    store.faults.push('unreachable', 'unreachable', 'unreachable');
    const audit = await open(store);
    for (let n = 1; n <= 3; n++) await audit.record(draft(n));
    await audit.flush(AbortSignal.timeout(20_000));
    expect(stored(store)).toEqual([1, 2, 3]);
    expect(verifyTrail(store.records).ok).toBe(true);
    expect(store.reads).toBe(0);
    await audit.stop(0);
    expect(await readdir(path.join(dir, 'spool'))).toEqual([]);
  });

  it('removes the spool files of stored events once their batch is stored, and notes the chain end in tail.json', async () => {
    const store = new CountingStore();
    const audit = await open(store);
    for (let n = 1; n <= 4; n++) void audit.record(draft(n));
    await audit.flush(AbortSignal.timeout(5_000));
    expect(stored(store)).toEqual([1, 2, 3, 4]);
    await audit.stop(0);
    expect(await readdir(path.join(dir, 'spool'))).toEqual([]);
    const tail = JSON.parse(await readFile(path.join(dir, 'tail.json'), 'utf8')) as { seq: number; eventId: string };
    expect(tail).toMatchObject({ seq: 4, eventId: 'c/1/e4' });
    expect(store.reads).toBe(0);
  });

  it('opens with an unreadable tail.json and reads the end of its chain from the stream instead', async () => {
    const store = new CountingStore();
    const before = await open(store);
    await before.record(draft(1));
    await before.flush(AbortSignal.timeout(5_000));
    await before.stop(0);
    await writeFile(path.join(dir, 'tail.json'), '{"chain": "audit.host.h1", "se');
    const after = await open(store);
    await after.record(draft(2));
    await after.flush(AbortSignal.timeout(10_000));
    expect(store.records.map((r) => (r.event as { seq: number }).seq)).toEqual([1, 2]);
    expect(verifyTrail(store.records).ok).toBe(true);
    expect(store.reads).toBe(1);
  });

  it('sends what a stopped worker left behind at the next start, chained on what it stored before', async () => {
    const store = new CountingStore();
    const first = await open(store);
    await first.record(draft(1));
    await first.flush(AbortSignal.timeout(5_000));
    store.faults.push(...Array<'unreachable'>(50).fill('unreachable'));
    await first.record(draft(2));
    await first.stop(0);
    store.faults.length = 0;
    const second = await open(store);
    await second.flush(AbortSignal.timeout(10_000));
    await second.record(draft(3));
    await second.flush(AbortSignal.timeout(10_000));
    expect(stored(store)).toEqual([1, 2, 3]);
    expect(verifyTrail(store.records).ok).toBe(true);
    expect(store.reads).toBe(0);
  });

  it('stores an event once when its acknowledgement was lost', async () => {
    const store = new MemoryChainStore();
    store.faults.push('ack-lost');
    const audit = await open(store);
    await audit.record(draft(1));
    await audit.record(draft(2));
    await audit.flush(AbortSignal.timeout(10_000));
    expect(stored(store)).toEqual([1, 2]);
    expect(verifyTrail(store.records).ok).toBe(true);
  });

  it('finds the end of its chain again when its state dir was lost', async () => {
    const store = new MemoryChainStore();
    const before = await open(store);
    await before.record(draft(1));
    await before.flush(AbortSignal.timeout(5_000));
    await before.stop(0);
    await rm(dir, { recursive: true, force: true });
    const after = await open(store);
    await after.record(draft(2));
    await after.flush(AbortSignal.timeout(10_000));
    expect(store.records.map((r) => (r.event as { seq: number }).seq)).toEqual([1, 2]);
    expect(verifyTrail(store.records).ok).toBe(true);
  });

  it('answers a flush once the stream has the events, without waiting for the disk', async () => {
    const store = new MemoryChainStore();
    store.faults.push('unreachable');
    const audit = await open(store);
    await audit.record(draft(1));
    // The spool is gone: its fsync fails, the stream still stores the event from memory.
    await rm(path.join(dir, 'spool'), { recursive: true, force: true });
    await audit.flush(AbortSignal.timeout(10_000));
    expect(stored(store)).toEqual([1]);
    expect(audit.backlog).toBe(0);
  });

  it('gives up waiting when told to, leaving the events spooled', async () => {
    const store = new MemoryChainStore();
    store.faults.push(...Array<'unreachable'>(50).fill('unreachable'));
    const audit = await open(store);
    await audit.record(draft(1));
    await expect(audit.flush(AbortSignal.timeout(300))).rejects.toBeInstanceOf(AuditNotStoredError);
    expect(audit.backlog).toBe(1);
  });
});
