import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTrail } from '../activities/audit/read.js';
import { adminChainStore } from '../activities/audit/store.js';
import { appendToChain } from '../activities/audit/writer.js';
import { AUDIT_CHAINS, StoredAuditEvent, type AuditDraft, type AuditRecord } from '../schemas/audit.js';
import { HostEventCache } from '../workers/control/host-events.js';
import { testStack } from './helpers/stack.js';

const stack = testStack();
afterAll(() => stack.closeAll());

const tag = randomBytes(3).toString('hex');
const hostId = `uiev-${tag}`;
const rolloutId = `uiev-${tag}`;
/** Other rollouts' events on the trail: a host page must not pay for them at every poll. */
const NOISE_CHAINS = 20;
const NOISE_PER_CHAIN = 500;
const HOST_EVENTS = 400;
const MAX_EVENTS = 300;
const since = new Date(Date.now() - 10 * 60_000);

const draft = (rollout: string, host: string, n: number): AuditDraft => ({
  eventId: `test-${rollout}/${host}/${n}`,
  at: new Date().toISOString(),
  actor: 'controller',
  type: 'step.command',
  rolloutId: rollout,
  hostId: host,
  step: 'ovs-convert',
  data: { argv: ['ovs-vsctl', 'add-port', 'vmbr0', `port${n}`], exitCode: 0, durationMs: n },
});

async function appendMany(rollout: string, host: string, from: number, count: number): Promise<void> {
  const store = adminChainStore(await stack.controllerConnection());
  let tail = null as Awaited<ReturnType<typeof appendToChain>>['tail'] | null;
  for (let i = from; i < from + count; i++)
    tail = (await appendToChain(store, AUDIT_CHAINS.rollout(rollout), draft(rollout, host, i), { tail })).tail ?? null;
}

describe("the host page's audit events", () => {
  beforeAll(async () => {
    await Promise.all([
      appendMany(rolloutId, hostId, 0, HOST_EVENTS),
      ...Array.from({ length: NOISE_CHAINS }, (_, i) =>
        appendMany(`uiev-noise-${tag}-${i}`, `uiev-other-${tag}`, 0, NOISE_PER_CHAIN),
      ),
    ]);
  }, 120_000);

  it('are read in full once, then at each poll only after the last stream sequence seen', async () => {
    const nc = await stack.connectAsCli();
    const reads: { opts: { since?: Date; afterSeq?: number }; records: AuditRecord[] }[] = [];
    const cache = new HostEventCache(async (opts) => {
      const records = await readTrail(nc, opts);
      reads.push({ opts, records });
      return records;
    }, MAX_EVENTS);

    // What every poll did before: the whole trail since the rollout started, filtered.
    let t = performance.now();
    const whole = (await readTrail(nc, { since }))
      .flatMap((r) => {
        const parsed = StoredAuditEvent.safeParse(r.event);
        return parsed.success ? [parsed.data] : [];
      })
      .filter((e) => e.hostId === hostId && e.rolloutId === rolloutId);
    const wholeMs = performance.now() - t;

    t = performance.now();
    const first = await cache.events(hostId, rolloutId, since);
    const firstMs = performance.now() - t;
    expect(first.total).toBe(HOST_EVENTS);
    expect(first.events).toEqual(whole.slice(-MAX_EVENTS));
    expect(reads[0]?.opts).toEqual({ since });
    const seen = reads[0]?.records.at(-1)?.streamSeq ?? 0;

    await appendMany(rolloutId, hostId, HOST_EVENTS, 3);
    t = performance.now();
    const second = await cache.events(hostId, rolloutId, since);
    const secondMs = performance.now() - t;
    expect(reads[1]?.opts).toEqual({ afterSeq: seen });
    expect(reads[1]?.records.every((r) => r.streamSeq > seen)).toBe(true);
    expect(second.total).toBe(HOST_EVENTS + 3);
    expect(second.events).toHaveLength(MAX_EVENTS);
    expect(second.events.slice(-4).map((e) => e.data)).toEqual(
      [HOST_EVENTS - 1, HOST_EVENTS, HOST_EVENTS + 1, HOST_EVENTS + 2].map((n) => draft(rolloutId, hostId, n).data),
    );

    // A poll with nothing new reads nothing and changes nothing.
    t = performance.now();
    const third = await cache.events(hostId, rolloutId, since);
    const idleMs = performance.now() - t;
    expect(third).toEqual(second);

    console.info(
      `host page over ${reads[0]?.records.length} audit records: whole trail ${wholeMs.toFixed(0)} ms, ` +
        `first read ${firstMs.toFixed(0)} ms, next poll (${reads[1]?.records.length} new) ${secondMs.toFixed(1)} ms, ` +
        `idle poll ${idleMs.toFixed(1)} ms`,
    );
  });

  it('keeps each page apart, and forgets the least recently read past its limit', async () => {
    const nc = await stack.connectAsCli();
    const opts: { since?: Date; afterSeq?: number }[] = [];
    const cache = new HostEventCache(
      (o) => {
        opts.push(o);
        return readTrail(nc, o);
      },
      MAX_EVENTS,
      1,
    );
    expect((await cache.events(hostId, rolloutId, since)).total).toBe(HOST_EVENTS + 3);
    expect((await cache.events(`uiev-other-${tag}`, `uiev-noise-${tag}-0`, since)).total).toBe(NOISE_PER_CHAIN);
    // The first page was forgotten: it is read in full again, and still right.
    expect((await cache.events(hostId, rolloutId, since)).total).toBe(HOST_EVENTS + 3);
    expect(opts.map((o) => Object.keys(o))).toEqual([['since'], ['since'], ['since']]);
  });
});
