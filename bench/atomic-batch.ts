/**
 * What a host's audit events would cost appended as one atomic batch (nats-server 2.12's
 * `allow_atomic`, ADR-50) instead of one acknowledged append after another, on the server refit
 * uses: one stream on file storage (the dev stack and the bench), the same in memory (to tell the
 * batch's own cost from its staging), and three servers with the stream replicated (the compose
 * stack). Decision 0039 rests on it.
 *
 *   npm run build && node dist/bench/atomic-batch.js [--ops 300] [--out bench/results/x.json]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { until } from '../activities/poll.js';
import { freePorts } from '../workers/dev/stack.js';
import { findTool } from '../workers/dev/tools.js';
import { cpuBetween, loadAverage, sampleProcess } from './proc.js';
import { round } from './stats.js';

/** An audit event's size in a bench run: about 1.5 KB. */
const BODY = 'x'.repeat(1_500);
const SIZES = [2, 3, 4] as const;

type Setup = { name: string; storage: StorageType; replicas: number };
const SETUPS: Setup[] = [
  { name: 'one server, file storage (dev stack, bench)', storage: StorageType.File, replicas: 1 },
  { name: 'one server, memory storage', storage: StorageType.Memory, replicas: 1 },
  { name: 'three servers, file storage, 3 replicas (compose)', storage: StorageType.File, replicas: 3 },
];

/** Send `k` events to one subject, each after the one before, and wait until all are stored. */
type Way = (nc: NatsConnection, subject: string, k: number, last: number) => Promise<number>;

const WAYS: Record<string, Way> = {
  // As activities/audit/store.ts appends: message id and expected last subject sequence, one ack each.
  'one append after another': async (nc, subject, k, last) => {
    const js = jetstream(nc);
    for (let i = 0; i < k; i++) {
      const id = `${subject}-${last}-${i}`;
      last = (await js.publish(subject, BODY, { msgID: id, expect: { lastSubjectSequence: last } })).seq;
    }
    return last;
  },
  // nats.js 3.4.0's startBatch: the first message is a request, answered before the rest go.
  'atomic batch, nats.js startBatch': async (nc, subject, k, last) => {
    const batch = await jetstream(nc).startBatch(subject, BODY, { expect: { lastSubjectSequence: last } });
    for (let i = 1; i < k - 1; i++) batch.add(subject, BODY);
    return (await batch.commit(subject, BODY)).seq;
  },
  // The same headers, every message sent at once and only the commit waited for: one round trip.
  'atomic batch, one round trip': async (nc, subject, k, last) => {
    const id = `${subject}-${last}`;
    const marked = (seq: number) => {
      const h = headers();
      h.set('Nats-Batch-Id', id);
      h.set('Nats-Batch-Sequence', String(seq));
      if (seq === 1) h.set('Nats-Expected-Last-Subject-Sequence', String(last));
      if (seq === k) h.set('Nats-Batch-Commit', '1');
      return h;
    };
    for (let seq = 1; seq < k; seq++) nc.publish(subject, BODY, { headers: marked(seq) });
    const ack = (await nc.request(subject, BODY, { headers: marked(k), timeout: 5_000 })).json<{
      seq: number;
      error?: unknown;
    }>();
    if (ack.error !== undefined) throw new Error(`batch refused: ${JSON.stringify(ack.error)}`);
    return ack.seq;
  },
};

interface Servers {
  url: string;
  pids: number[];
  stop(): Promise<void>;
}

async function startServers(count: number): Promise<Servers> {
  const home = mkdtempSync(path.join(os.tmpdir(), 'refit-atomic-batch-'));
  const ports = await freePorts(count * 3);
  const at = (i: number, what: number) => ports[i * 3 + what] as number;
  const routes = Array.from({ length: count }, (_, i) => `nats://127.0.0.1:${at(i, 2)}`).join(',');
  const children: ChildProcess[] = Array.from({ length: count }, (_, i) => {
    const args = ['-a', '127.0.0.1', '-p', String(at(i, 0)), '-m', String(at(i, 1)), '-js', '-n', `n${i + 1}`];
    args.push('-sd', path.join(home, `js${i + 1}`));
    if (count > 1)
      args.push('--cluster_name', 'bench', '--cluster', `nats://127.0.0.1:${at(i, 2)}`, '--routes', routes);
    return spawn(findTool('nats-server'), args, { stdio: 'ignore' });
  });
  for (let i = 0; i < count; i++) {
    await until(async () => (await fetch(`http://127.0.0.1:${at(i, 1)}/healthz`).catch(() => undefined))?.ok === true, {
      what: 'nats-server to answer',
      timeoutMs: 30_000,
      intervalMs: 100,
    });
  }
  return {
    url: `nats://127.0.0.1:${at(0, 0)}`,
    pids: children.map((c) => c.pid ?? 0),
    async stop() {
      await Promise.all(
        children.map(async (c) => {
          if (c.exitCode !== null || c.signalCode !== null) return;
          const exited = once(c, 'exit');
          c.kill('SIGTERM');
          await exited;
        }),
      );
      rmSync(home, { recursive: true, force: true });
    },
  };
}

interface Row {
  setup: string;
  way: string;
  events: number;
  msPerEvents: number;
  serverCpuMsPerEvents: number;
}

async function measure(setup: Setup, ops: number): Promise<Row[]> {
  const servers = await startServers(setup.replicas);
  const nc = await connect({ servers: servers.url });
  try {
    const jsm = await jetstreamManager(nc);
    await until(
      async () =>
        jsm.streams
          .add({
            name: 'AUDIT',
            subjects: ['audit.>'],
            storage: setup.storage,
            num_replicas: setup.replicas,
            allow_atomic: true,
          })
          .then(() => true)
          .catch(() => false),
      { what: 'the stream to be created', timeoutMs: 30_000, intervalMs: 250 },
    );
    const rows: Row[] = [];
    const cpu = () => servers.pids.map((pid) => sampleProcess(pid));
    // Each way twice, to see the noise; the first pass also warms the servers up.
    for (const pass of [1, 2]) {
      for (const [way, send] of Object.entries(WAYS)) {
        for (const k of SIZES) {
          const subject = `audit.${way.replace(/\W+/g, '-')}.${k}.${pass}`;
          let last = 0;
          const before = cpu();
          const started = performance.now();
          for (let op = 0; op < ops; op++) {
            last = await send(nc, subject, k, last).catch((err: unknown) => {
              throw new Error(`${setup.name}, ${way}, ${k} events, send ${op + 1}`, { cause: err });
            });
          }
          const ms = performance.now() - started;
          const after = cpu();
          const cpuMs = before.reduce((sum, b, i) => sum + cpuBetween(b, after[i]), 0) * 1_000;
          rows.push({
            setup: setup.name,
            way,
            events: k,
            msPerEvents: round(ms / ops, 3),
            serverCpuMsPerEvents: round(cpuMs / ops, 3),
          });
        }
      }
    }
    return rows;
  } finally {
    await nc.close();
    await servers.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { ops: { type: 'string', default: '300' }, out: { type: 'string' } } });
  const ops = Number(values.ops);
  const load = [loadAverage()];
  const rows: Row[] = [];
  for (const setup of SETUPS) rows.push(...(await measure(setup, ops)));
  load.push(loadAverage());
  console.log(`| setup | way | events | ms for them | server CPU ms for them |\n|---|---|---|---|---|`);
  for (const r of rows)
    console.log(`| ${r.setup} | ${r.way} | ${r.events} | ${r.msPerEvents} | ${r.serverCpuMsPerEvents} |`);
  console.log(`load average ${load.join(' → ')}; ${ops} sends of each size, each way, twice`);
  if (values.out !== undefined)
    writeFileSync(
      values.out,
      `${JSON.stringify({ at: new Date().toISOString(), ops, loadAverage: load, rows }, null, 2)}\n`,
    );
}

await main();
