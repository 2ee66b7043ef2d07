import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { Connection } from '@temporalio/client';
import { afterAll, describe, expect, it } from 'vitest';
import { readIdentities } from '../workers/dev/credentials.js';
import { enrollHosts } from '../workers/dev/enroll.js';
import {
  controllerIdentity,
  freePorts,
  isStackProcess,
  stackStatus,
  startStack,
  stopStack,
} from '../workers/dev/stack.js';
import { BUCKETS, SEARCH_ATTRIBUTE_TYPES, STREAMS, commandConsumer } from '../schemas/names.js';
import { credsFile, readStackFile, type StackFile } from '../workers/config.js';
import { connectNats, identityOfHost } from '../workers/nats.js';
import { testStack, uniqueHostId } from './helpers/stack.js';

const stack = testStack();
afterAll(() => stack.closeAll());

const portOf = (address: string) => Number(new URL(address.includes('://') ? address : `x://${address}`).port);

function portsOf(s: StackFile) {
  return {
    temporalPort: portOf(s.temporal.address),
    temporalUiPort: portOf(s.temporal.uiAddress),
    natsPort: portOf(s.nats.url),
    natsMonitorPort: portOf(s.nats.monitorUrl),
  };
}

describe('the embedded stack', () => {
  it('returns the running stack when started again on the same home, without starting new servers', async () => {
    const before = readStackFile(stack.home);
    if (before === undefined) throw new Error('the global setup wrote no stack.json');
    const again = await startStack({ home: stack.home, ...portsOf(before) });
    expect(again).toEqual(before);
    expect(isStackProcess(before.temporal.pid, stack.home)).toBe(true);
    expect(isStackProcess(before.nats.pid, stack.home)).toBe(true);
  });

  it('reports both servers alive and answering', async () => {
    const status = await stackStatus(stack.home);
    expect(status).toMatchObject({
      started: true,
      healthy: true,
      temporal: { alive: true, answering: true, address: stack.temporalAddress },
      nats: { alive: true, answering: true, address: stack.natsUrl },
    });
  });

  it('registers the search attributes on Temporal', async () => {
    const connection = await Connection.connect({ address: stack.temporalAddress });
    try {
      const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
      for (const name of Object.keys(SEARCH_ATTRIBUTE_TYPES)) expect(customAttributes).toHaveProperty(name);
    } finally {
      await connection.close();
    }
  });

  it("keeps Temporal's SQLite file in write-ahead-log mode (decision 0033)", () => {
    // SQLite's header: bytes 18 and 19 (file format write and read versions) are 2 in WAL mode, 1 in rollback-journal mode.
    const header = readFileSync(path.join(stack.home, 'temporal', 'temporal.db')).subarray(0, 100);
    expect(header.subarray(0, 15).toString()).toBe('SQLite format 3');
    expect([header[18], header[19]]).toEqual([2, 2]);
  });

  it('creates the command and audit streams and the hosts and results buckets', async () => {
    const jsm = await jetstreamManager(await stack.controllerConnection());
    const names = [STREAMS.commands, STREAMS.audit, `KV_${BUCKETS.hosts}`, `KV_${BUCKETS.results}`];
    for (const name of names) expect((await jsm.streams.info(name)).config.name).toBe(name);
  });

  it('refuses to start on a port another program holds, naming the port', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'refit-test-ports-'));
    try {
      const [temporalPort, temporalUiPort, natsMonitorPort] = await freePorts(3);
      const taken = portOf(stack.natsUrl);
      const starting = startStack({ home, temporalPort, temporalUiPort, natsPort: taken, natsMonitorPort });
      await expect(starting).rejects.toThrow(`port ${taken} on 127.0.0.1 is already in use`);
      expect(readStackFile(home)).toBeUndefined();
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('gives hosts enrolled while it was down their command queues when it starts', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'refit-test-offline-'));
    try {
      const hostId = uniqueHostId('offline');
      expect(await enrollHosts(home, [hostId])).toEqual({ added: [hostId], live: false });
      const [temporalPort, temporalUiPort, natsPort, natsMonitorPort] = await freePorts(4);
      await startStack({ home, temporalPort, temporalUiPort, natsPort, natsMonitorPort });
      const nc = await connectNats(controllerIdentity(home, `nats://127.0.0.1:${natsPort}`));
      try {
        const consumer = await (await jetstreamManager(nc)).consumers.info(STREAMS.commands, commandConsumer(hostId));
        expect(consumer.config.filter_subject).toBe(`refit.cmd.${hostId}`);
      } finally {
        await nc.close();
      }
    } finally {
      await stopStack(home);
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('restarts a stack whose server died, and stops it idempotently', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'refit-test-restart-'));
    try {
      const [temporalPort, temporalUiPort, natsPort, natsMonitorPort] = await freePorts(4);
      const ports = { temporalPort, temporalUiPort, natsPort, natsMonitorPort };
      const first = await startStack({ home, ...ports });
      process.kill(first.nats.pid, 'SIGKILL');
      await expect.poll(() => isStackProcess(first.nats.pid, home)).toBe(false);
      expect(await stackStatus(home)).toMatchObject({ healthy: false, nats: { alive: false } });

      const second = await startStack({ home, ...ports });
      expect(second.nats.pid).not.toBe(first.nats.pid);
      expect(second.temporal.pid).not.toBe(first.temporal.pid);
      expect(isStackProcess(first.temporal.pid, home)).toBe(false);
      expect((await stackStatus(home)).healthy).toBe(true);

      await stopStack(home);
      expect(isStackProcess(second.temporal.pid, home)).toBe(false);
      expect(isStackProcess(second.nats.pid, home)).toBe(false);
      expect(readStackFile(home)).toBeUndefined();
      await expect(stopStack(home)).resolves.toBeUndefined();
      expect(await stackStatus(home)).toEqual({ home, started: false, healthy: false });
    } finally {
      await stopStack(home);
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('enrollment', () => {
  it('gives a host private credentials and a command consumer, once', async () => {
    const hostId = uniqueHostId('enroll');
    expect(await enrollHosts(stack.home, [hostId])).toEqual({ added: [hostId], live: true });
    const seedFile = credsFile(stack.home, { host: hostId });
    const seed = readFileSync(seedFile, 'utf8');
    expect(statSync(seedFile).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(seedFile)).mode & 0o777).toBe(0o700);
    const key = readIdentities(stack.home)[identityOfHost(hostId)]?.publicKey;

    expect(await enrollHosts(stack.home, [hostId, hostId])).toEqual({ added: [], live: true });
    expect(readFileSync(seedFile, 'utf8')).toBe(seed);
    expect(readIdentities(stack.home)[identityOfHost(hostId)]?.publicKey).toBe(key);

    const jsm = await jetstreamManager(await stack.controllerConnection());
    const consumer = await jsm.consumers.info(STREAMS.commands, commandConsumer(hostId));
    expect(consumer.config.filter_subject).toBe(`refit.cmd.${hostId}`);
    // The server takes the host's own credentials: it answers a ping on that connection.
    await expect((await stack.connectAsHost(hostId)).flush()).resolves.toBeUndefined();
  });

  it('refuses a host id that is not a DNS label', async () => {
    await expect(enrollHosts(stack.home, ['Bad_Host'])).rejects.toThrow('must be a DNS label');
  });

  it('enrolls a thousand hosts with a single nats-server reload', async () => {
    const hostIds = Array.from({ length: 1000 }, (_, i) => uniqueHostId(`fleet${i}`));
    const log = path.join(stack.home, 'logs', 'nats.log');
    const reloads = () =>
      readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l.includes('Reloaded server configuration')).length;
    const before = reloads();
    const started = Date.now();

    const result = await enrollHosts(stack.home, hostIds);

    expect(Date.now() - started).toBeLessThan(30_000);
    expect(result.added).toHaveLength(1000);
    expect(reloads()).toBe(before + 1);
    const jsm = await jetstreamManager(await stack.controllerConnection());
    const consumers = new Set<string>();
    for await (const c of jsm.consumers.list(STREAMS.commands)) consumers.add(c.name);
    expect(hostIds.filter((h) => !consumers.has(commandConsumer(h)))).toEqual([]);
    const last = hostIds.at(-1) as string;
    await expect((await stack.connectAsHost(last)).flush()).resolves.toBeUndefined();
  });
});
