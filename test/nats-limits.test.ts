import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  RetentionPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUCKETS, STREAMS, SUBJECTS } from '../schemas/names.js';
import { RESULTS_MAX_BYTES, ensureMessaging } from '../workers/messaging.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { freePorts } from '../workers/dev/stack.js';
import { findTool } from '../workers/dev/tools.js';
import { until } from '../activities/poll.js';
import { campaignStepsYaml, tempDir } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { uniqueHostId } from './helpers/stack.js';

const hosts = simHostIds(2, `lim${randomBytes(2).toString('hex')}`);
const spares = simHostIds(2, `lims${randomBytes(2).toString('hex')}`);
const suite = useSimFleet({ hosts: [...hosts, ...spares], speed: 4, rebootPauseMs: 400 });

let controller: NatsConnection;
let jsm: JetStreamManager;
beforeAll(async () => {
  controller = await suite.stack.controllerConnection();
  jsm = await jetstreamManager(controller);
});

/** Almost 1 MB: what nats-server accepts by default (max_payload), so only a stream limit can refuse it. */
const nearlyOneMegabyte = 'x'.repeat(1_000_000);

async function outcome(attempt: Promise<unknown>): Promise<string> {
  return attempt.then(
    () => 'stored',
    (e: unknown) => (e instanceof Error ? e.message : String(e)),
  );
}

async function maxMsgSize(stream: string): Promise<number> {
  return (await jsm.streams.info(stream)).config.max_msg_size ?? -1;
}

describe('what one host can write', () => {
  // Not a host of the campaign below, whose largest messages are measured.
  const host = uniqueHostId('lim-writer');

  it('cannot store a result of nearly 1 MB', async () => {
    const js = jetstream(await suite.stack.connectAsHost(host));
    expect(await outcome(js.publish(`$KV.${BUCKETS.results}.${host}.big`, nearlyOneMegabyte))).toMatch(
      /message size exceeds maximum allowed/,
    );
  });

  it('cannot store a presence of nearly 1 MB', async () => {
    const js = jetstream(await suite.stack.connectAsHost(host));
    expect(await outcome(js.publish(`$KV.${BUCKETS.hosts}.${host}`, nearlyOneMegabyte))).toMatch(
      /message size exceeds maximum allowed/,
    );
  });

  it('cannot append an audit event of nearly 1 MB', async () => {
    const js = jetstream(await suite.stack.connectAsHost(host));
    expect(await outcome(js.publish(SUBJECTS.auditHost(host), nearlyOneMegabyte))).toMatch(
      /message size exceeds maximum allowed/,
    );
  });

  it('cannot give its result keys a time to live of their own', async () => {
    const js = jetstream(await suite.stack.connectAsHost(host));
    const h = headers();
    h.set('Nats-TTL', '1000h');
    expect(await outcome(js.publish(`$KV.${BUCKETS.results}.${host}.ttl`, '{}', { headers: h }))).toMatch(
      /per-message TTL is disabled|ttl/i,
    );
  });
});

describe('the limits against what a real campaign writes', () => {
  it('leave at least four times the largest status, presence and audit event of a whole campaign', async () => {
    const { result } = await suite.controller.runRollout(`
apiVersion: refit/v1
kind: Campaign
name: limits-campaign
targets:
  hosts: [${hosts.join(', ')}]
waves:
  canary: 0
  batchSize: 2
  maxInFlight: 2
${campaignStepsYaml()}
`);
    expect(result.state).toBe('completed');

    const largest = {
      result: await largestKvValue(
        BUCKETS.results,
        hosts.map((h) => `${h}.>`),
      ),
      presence: await largestKvValue(BUCKETS.hosts, hosts),
      audit: await largestAuditEvent([...hosts.map((h) => SUBJECTS.auditHost(h)), SUBJECTS.auditController]),
    };
    const limits = {
      result: await maxMsgSize(`KV_${BUCKETS.results}`),
      presence: await maxMsgSize(`KV_${BUCKETS.hosts}`),
      audit: await maxMsgSize(STREAMS.audit),
    };
    console.info('largest messages of the campaign (bytes):', largest, 'limits:', limits);
    for (const key of ['result', 'presence', 'audit'] as const) {
      expect(largest[key], key).toBeGreaterThan(0);
      expect(limits[key], key).toBeGreaterThanOrEqual(4 * largest[key]);
    }
  });
});

async function largestKvValue(bucket: string, filters: string[]): Promise<number> {
  const kv = await new Kvm(controller).open(bucket);
  let largest = 0;
  for (const filter of filters) {
    for await (const key of await kv.keys(filter)) {
      const entry = await kv.get(key);
      largest = Math.max(largest, entry?.length ?? 0);
    }
  }
  return largest;
}

async function largestAuditEvent(subjects: string[]): Promise<number> {
  const js = jetstream(controller);
  const consumer = await js.consumers.get(STREAMS.audit, { filter_subjects: subjects });
  const { num_pending: pending } = await consumer.info();
  let largest = 0;
  for (let seen = 0; seen < pending;) {
    const batch = await consumer.fetch({ max_messages: 500, expires: 2_000 });
    for await (const m of batch) {
      largest = Math.max(largest, m.data.length);
      seen++;
    }
  }
  return largest;
}

describe('ensureMessaging on a server whose streams an earlier refit made', () => {
  let server: ChildProcess;
  let nc: NatsConnection;

  beforeAll(async () => {
    const [port] = (await freePorts(1)) as [number];
    server = spawn(
      findTool('nats-server'),
      ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', tempDir('old-nats')],
      {
        stdio: 'ignore',
      },
    );
    nc = await until(() => connect({ servers: `127.0.0.1:${port}`, reconnect: false }).catch(() => undefined), {
      what: () => 'the scratch nats-server to answer',
      timeoutMs: 10_000,
      intervalMs: 100,
    });
    await makeStreamsAsBefore(nc);
  });
  afterAll(async () => {
    await nc?.close();
    server?.kill('SIGTERM');
    if (server) await once(server, 'exit');
  });

  it('brings them to the new settings and says what it changed', async () => {
    const lines: string[] = [];
    await ensureMessaging(nc, 1, pino({ level: 'info' }, { write: (l: string) => lines.push(l) }));

    const m = await jetstreamManager(nc);
    for (const name of [`KV_${BUCKETS.hosts}`, `KV_${BUCKETS.results}`, `KV_${BUCKETS.leases}`, STREAMS.audit]) {
      const { config } = await m.streams.info(name);
      expect(security(config), name).toEqual({ allow_rollup_hdrs: false, deny_delete: true, deny_purge: true });
    }
    for (const name of [
      `KV_${BUCKETS.hosts}`,
      `KV_${BUCKETS.results}`,
      `KV_${BUCKETS.leases}`,
      STREAMS.audit,
      STREAMS.commands,
    ]) {
      expect((await m.streams.info(name)).config.max_msg_size, name).toBeGreaterThan(0);
      expect(lines.join('\n'), name).toContain(`stream ${name} brought to refit's settings`);
    }
    expect((await m.streams.info(`KV_${BUCKETS.results}`)).config).toMatchObject({
      max_bytes: RESULTS_MAX_BYTES,
      max_msgs_per_subject: 1,
      allow_direct: true,
    });
    expect((await m.streams.info(`KV_${BUCKETS.hosts}`)).config.allow_direct).toBe(true);
    await expect(m.streams.purge(STREAMS.audit)).rejects.toThrow(/not permitted/);

    const h = headers();
    h.set('Nats-Rollup', 'all');
    expect(await outcome(jetstream(nc).publish(`$KV.${BUCKETS.hosts}.h1`, 'x', { headers: h }))).toMatch(
      /rollup not permitted/,
    );
  });

  it('changes nothing when run again', async () => {
    const lines: string[] = [];
    await ensureMessaging(nc, 1, pino({ level: 'info' }, { write: (l: string) => lines.push(l) }));
    expect(lines).toEqual([]);
  });
});

function security(c: StreamConfig) {
  return { allow_rollup_hdrs: c.allow_rollup_hdrs, deny_delete: c.deny_delete, deny_purge: c.deny_purge };
}

/** The streams and buckets as refit made them before rollups were turned off and limits set. */
async function makeStreamsAsBefore(nc: NatsConnection): Promise<void> {
  const m = await jetstreamManager(nc);
  await m.streams.add({
    name: STREAMS.commands,
    subjects: [SUBJECTS.commandsAll],
    retention: RetentionPolicy.Workqueue,
  });
  await m.streams.add({ name: STREAMS.audit, subjects: [SUBJECTS.auditAll], allow_direct: true });
  const kvm = new Kvm(nc);
  for (const bucket of [BUCKETS.hosts, BUCKETS.leases, BUCKETS.results]) await kvm.create(bucket, { history: 1 });
}
