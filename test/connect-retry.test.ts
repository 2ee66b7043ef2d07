import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Connection } from '@temporalio/client';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SimDriver } from '../activities/host/sim/driver.js';
import { until } from '../activities/poll.js';
import { BUCKETS, STREAMS } from '../schemas/names.js';
import { HostPresence } from '../schemas/host.js';
import { credsFile, type RefitConfig } from '../workers/config.js';
import {
  backoffDelay,
  connectPolicy,
  DEFAULT_CONNECT_POLICY,
  ServerUnreachableError,
  type ConnectPolicy,
} from '../workers/connect-retry.js';
import { startControllerWorker } from '../workers/controller.js';
import {
  ensureCoreIdentities,
  ensureHostIdentities,
  natsConfigFile,
  writeNatsConfig,
  writeUsersConfig,
} from '../workers/dev/credentials.js';
import { controllerIdentity, freePort, freePorts } from '../workers/dev/stack.js';
import { findTool } from '../workers/dev/tools.js';
import { startHost } from '../workers/host/host-process.js';
import { ensureHostConsumer, ensureMessaging } from '../workers/messaging.js';
import { connectNats } from '../workers/nats.js';
import { withNats } from '../workers/clients.js';
import { quietLog, tempDir, testConfig } from './helpers/controller.js';
import { testStack, uniqueHostId } from './helpers/stack.js';

const stack = testStack();
/** Quick retries, so that a server started late is found soon; the bound only ends a broken test. */
const PATIENT: ConnectPolicy = { timeoutMs: 90_000, firstDelayMs: 200, maxDelayMs: 1_000 };
const IMPATIENT: ConnectPolicy = { timeoutMs: 1_500, firstDelayMs: 100, maxDelayMs: 400 };

const servers: ChildProcess[] = [];
const homes: string[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map(stopServer));
});
afterAll(async () => {
  await stack.closeAll();
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

interface LogLine {
  msg: string;
  what?: string;
  attempt?: number;
  nextTryInMs?: number;
}

function capturedLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

/** Wait until `what` has been tried and found missing `count` times, as the log says. */
function failedAttempts(lines: LogLine[], what: string, count = 2) {
  return until(() => lines.filter((l) => l.what === what && l.nextTryInMs !== undefined).length >= count, {
    what: `${count} failed attempts to reach ${what}`,
    timeoutMs: 60_000,
  });
}

/** A NATS server of the test's own (not started yet): its home holds its config, store and credentials. */
async function natsHome(hostIds: string[] = []): Promise<{ home: string; url: string; monitorUrl: string }> {
  const home = tempDir('nats');
  homes.push(home);
  ensureCoreIdentities(home);
  ensureHostIdentities(home, hostIds);
  writeUsersConfig(home);
  const [nats, monitor] = (await freePorts(2)) as [number, number];
  writeNatsConfig(home, { nats, monitor });
  return { home, url: `nats://127.0.0.1:${nats}`, monitorUrl: `http://127.0.0.1:${monitor}` };
}

async function startNats(server: { home: string; monitorUrl: string }): Promise<void> {
  servers.push(spawn(findTool('nats-server'), ['-c', natsConfigFile(server.home)], { stdio: 'ignore' }));
  await until(async () => (await fetch(`${server.monitorUrl}/healthz`).catch(() => undefined))?.ok === true, {
    what: 'nats-server to answer',
    timeoutMs: 30_000,
    intervalMs: 100,
  });
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

describe('connecting with retries', () => {
  it('waits longer after each failure, up to a ceiling, with jitter of up to half', () => {
    const policy: ConnectPolicy = { timeoutMs: 60_000, firstDelayMs: 500, maxDelayMs: 15_000 };
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, policy, () => 1))).toEqual([
      500, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000,
    ]);
    expect(backoffDelay(3, policy, () => 0)).toBe(1_000);
  });

  it('takes its bound from REFIT_CONNECT_TIMEOUT, and refuses one without a unit', () => {
    expect(connectPolicy({})).toEqual(DEFAULT_CONNECT_POLICY);
    expect(connectPolicy({ REFIT_CONNECT_TIMEOUT: '90s' }).timeoutMs).toBe(90_000);
    expect(() => connectPolicy({ REFIT_CONNECT_TIMEOUT: '300' })).toThrow(/REFIT_CONNECT_TIMEOUT .*not "300"/);
  });

  it('starts a host agent before its NATS server, and the host comes online once the server does', async () => {
    const hostId = uniqueHostId('early');
    const server = await natsHome([hostId]);
    // The store a `refit dev up` leaves behind: streams, buckets and the host's consumer.
    await startNats(server);
    const setup = await connectNats(controllerIdentity(server.home, server.url));
    await ensureMessaging(setup);
    await ensureHostConsumer(setup, hostId);
    await setup.close();
    await Promise.all(servers.splice(0).map(stopServer));

    const { log, lines } = capturedLog();
    const starting = startHost({
      hostId,
      natsUrl: server.url,
      credsFile: credsFile(server.home, { host: hostId }),
      driver: await SimDriver.open({ hostId, stateDir: path.join(server.home, 'sim') }),
      labels: { role: 'test' },
      stateDir: path.join(server.home, 'host'),
      log,
      presenceIntervalMs: 300,
      connect: PATIENT,
    });
    await failedAttempts(lines, 'NATS');
    await startNats(server);
    const host = await starting;
    try {
      const nc = await connectNats(controllerIdentity(server.home, server.url));
      try {
        const hosts = await new Kvm(nc).open(BUCKETS.hosts);
        const presence = await until(
          async () => {
            const entry = await hosts.get(hostId);
            return entry?.operation === 'PUT' ? HostPresence.parse(entry.json()) : undefined;
          },
          { what: `presence of ${hostId}`, timeoutMs: 30_000 },
        );
        expect(presence).toMatchObject({ driver: 'sim', labels: { role: 'test' } });
      } finally {
        await nc.close();
      }
    } finally {
      await host.stop();
    }
    const failure = lines.find((l) => l.nextTryInMs !== undefined);
    expect(failure?.msg).toMatch(
      new RegExp(`cannot reach NATS at ${server.url} \\(attempt 1: .+\\); next try in [\\d.]+s, giving up in \\d+s`),
    );
    expect(lines.some((l) => /^reached NATS at .* \(attempt \d+\)$/.test(l.msg))).toBe(true);
  });

  it('starts the controller before its NATS server, and it sets up messaging and runs once the server comes', async () => {
    const server = await natsHome();
    const config: RefitConfig = { ...testConfig(stack), home: server.home, natsUrl: server.url };
    const { log, lines } = capturedLog();
    const starting = startControllerWorker(config, log, { connect: PATIENT });
    await failedAttempts(lines, 'NATS');
    await startNats(server);
    const controller = await starting;
    try {
      expect(controller.worker.getState()).toBe('RUNNING');
      const jsm = await jetstreamManager(controller.nc);
      expect((await jsm.streams.info(STREAMS.commands)).config.name).toBe(STREAMS.commands);
    } finally {
      await controller.shutdown();
    }
  });

  it('starts the controller before its Temporal server, and it polls its task queue once the server comes', async () => {
    const config: RefitConfig = { ...testConfig(stack), temporalAddress: `127.0.0.1:${await freePort()}` };
    const { log, lines } = capturedLog();
    const starting = startControllerWorker(config, log, { connect: PATIENT });
    await failedAttempts(lines, 'Temporal');
    const [ui, http, metrics] = (await freePorts(3)) as [number, number, number];
    const port = config.temporalAddress.split(':')[1] as string;
    const flags = ['--ip', '127.0.0.1', '--port', port, '--headless', '--ui-port', String(ui)];
    flags.push('--http-port', String(http), '--metrics-port', String(metrics), '--log-level', 'error');
    servers.push(spawn(findTool('temporal'), ['server', 'start-dev', ...flags], { stdio: 'ignore' }));
    const controller = await starting;
    const connection = await Connection.connect({ address: config.temporalAddress });
    try {
      expect(controller.worker.getState()).toBe('RUNNING');
      await untilPolled(connection, config, 'a poller on the task queue', 30_000);
    } finally {
      await connection.close();
      await controller.shutdown();
    }
  });

  it('keeps the controller polling through a restart of its Temporal server', async () => {
    // A dev server that does not come up (a port taken between freePorts and its bind) is started
    // again on other ports: this test is about the controller outliving a restart, not about ports.
    let flags: string[] = [];
    let first: ReturnType<typeof spawn> | undefined;
    let port = 0;
    const startTemporal = () => {
      const child = spawn(findTool('temporal'), ['server', 'start-dev', ...flags], { stdio: 'ignore' });
      servers.push(child);
      return child;
    };
    for (let attempt = 1; first === undefined; attempt++) {
      const [p, ui, http, metrics] = (await freePorts(4)) as [number, number, number, number];
      const db = path.join(tempDir('temporal'), 'temporal.db');
      homes.push(path.dirname(db));
      flags = ['--ip', '127.0.0.1', '--port', String(p), '--headless', '--ui-port', String(ui)];
      flags.push('--http-port', String(http), '--metrics-port', String(metrics), '--log-level', 'error');
      flags.push('--db-filename', db);
      const child = startTemporal();
      const answering = await until(() => Connection.connect({ address: `127.0.0.1:${p}` }).catch(() => undefined), {
        what: 'the first Temporal dev server to answer',
        timeoutMs: 30_000,
        intervalMs: 250,
      }).catch((err: unknown) => {
        if (attempt >= 3) throw err;
        return undefined;
      });
      if (answering === undefined) {
        child.kill('SIGKILL');
        continue;
      }
      await answering.close();
      first = child;
      port = p;
    }
    const config: RefitConfig = { ...testConfig(stack), temporalAddress: `127.0.0.1:${port}` };
    const controller = await startControllerWorker(config, quietLog, { connect: PATIENT });
    try {
      await stopServer(first);
      await sleep(3_000);
      startTemporal();
      const connection = await until(
        () => Connection.connect({ address: config.temporalAddress }).catch(() => undefined),
        { what: 'Temporal to answer again', timeoutMs: 60_000, intervalMs: 500 },
      );
      try {
        // Pollers seen before the restart are forgotten with the server's memory; these are new polls.
        await untilPolled(connection, config, 'a poller on the task queue after the restart', 60_000);
        expect(controller.worker.getState()).toBe('RUNNING');
      } finally {
        await connection.close();
      }
    } finally {
      await controller.shutdown();
    }
  });

  it('closes both connections when the controller cannot set up after reaching its servers', async () => {
    const server = await natsHome();
    await startNats(server);
    // Three replicas on a single server: the streams cannot be made.
    const config: RefitConfig = { ...testConfig(stack), home: server.home, natsUrl: server.url, natsReplicas: 3 };
    await expect(startControllerWorker(config, quietLog, { connect: PATIENT })).rejects.toThrow();
    const connz = (await (await fetch(`${server.monitorUrl}/connz`)).json()) as { num_connections: number };
    expect(connz.num_connections).toBe(0);
  });

  it('gives up on NATS after the bound with an error that says what, where and how long', async () => {
    const hostId = uniqueHostId('never');
    const server = await natsHome([hostId]);
    const { log } = capturedLog();
    const starting = startHost({
      hostId,
      natsUrl: server.url,
      credsFile: credsFile(server.home, { host: hostId }),
      driver: await SimDriver.open({ hostId, stateDir: path.join(server.home, 'sim') }),
      labels: {},
      stateDir: path.join(server.home, 'host'),
      log,
      connect: IMPATIENT,
    });
    await expect(starting).rejects.toThrow(ServerUnreachableError);
    await expect(starting).rejects.toThrow(
      new RegExp(`^cannot reach NATS at ${server.url}: gave up after \\d+ attempts in [\\d.]+s .*last error: `),
    );
  });

  it('gives up on Temporal after the bound, and the controller does not start', async () => {
    const config: RefitConfig = { ...testConfig(stack), temporalAddress: `127.0.0.1:${await freePort()}` };
    const { log } = capturedLog();
    await expect(startControllerWorker(config, log, { connect: IMPATIENT })).rejects.toThrow(
      new RegExp(`^cannot reach Temporal at ${config.temporalAddress}: gave up after \\d+ attempts`),
    );
  });

  it('leaves one-shot commands failing at once with their message', async () => {
    const config: RefitConfig = { ...testConfig(stack), natsUrl: `nats://127.0.0.1:${await freePort()}` };
    await expect(withNats(config, () => Promise.resolve())).rejects.toThrow(/^cannot reach NATS at .* refit dev up/);
  });
});

/** Until the controller's workflow poller shows on its task queue. */
async function untilPolled(
  connection: Connection,
  config: RefitConfig,
  what: string,
  timeoutMs: number,
): Promise<void> {
  await until(
    async () => {
      const queue = await connection.workflowService.describeTaskQueue({
        namespace: config.temporalNamespace,
        taskQueue: { name: config.taskQueue },
        taskQueueType: 1, // workflow
      });
      return queue.pollers.length > 0;
    },
    { what, timeoutMs },
  );
}
