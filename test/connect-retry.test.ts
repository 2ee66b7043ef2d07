import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Connection } from '@temporalio/client';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SimDriver } from '../activities/host/sim/driver.js';
import { until } from '../activities/poll.js';
import { BUCKETS, IDENTITIES, inboxPrefix, STREAMS } from '../schemas/names.js';
import { createInbox } from '@nats-io/transport-node';
import { HostPresence } from '../schemas/host.js';
import { credsFile, type RefitConfig } from '../workers/config.js';
import {
  backoffDelay,
  connectPolicy,
  DEFAULT_CONNECT_POLICY,
  ServerUnreachableError,
  type ConnectPolicy,
} from '../workers/connect-retry.js';
import { startControllerWorker, TEMPORAL_CHECK_MS } from '../workers/controller.js';
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
import { connectNats, natsReconnectCounts } from '../workers/nats.js';
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
  await Promise.all(servers.splice(0).map((child) => stopServer(child)));
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

async function stopServer(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

const AGENT = path.resolve('dist/workers/host/agent-main.js');

/** The store a `refit dev up` leaves behind: streams, buckets and, for each host, its consumer. */
async function setUpMessaging(server: { home: string; url: string }, hostIds: string[] = []): Promise<void> {
  const setup = await connectNats(controllerIdentity(server.home, server.url));
  try {
    await ensureMessaging(setup);
    for (const hostId of hostIds) await ensureHostConsumer(setup, hostId);
  } finally {
    await setup.close();
  }
}

/** The attempt numbers of the "reconnecting to NATS" lines, in order. */
function reconnectAttempts(messages: string[]): number[] {
  return messages.flatMap((m) => {
    const n = /^reconnecting to NATS at \S+ \(attempt (\d+), lost for [\d.]+s; giving up in [\d.]+s\)$/.exec(m)?.[1];
    return n === undefined ? [] : [Number(n)];
  });
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
    await Promise.all(servers.splice(0).map((child) => stopServer(child)));

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
    const { first, port, startTemporal } = await dedicatedTemporal();
    const config: RefitConfig = { ...testConfig(stack), temporalAddress: `127.0.0.1:${port}` };
    const { log, lines } = capturedLog();
    const controller = await startControllerWorker(config, log, { connect: PATIENT });
    try {
      await stopServer(first);
      // Longer than TEMPORAL_CHECK_MS: the controller notices, and says so.
      await until(() => lines.some((l) => l.what === 'Temporal' && l.msg.startsWith('lost Temporal at ')), {
        what: 'the controller to notice Temporal is gone',
        timeoutMs: TEMPORAL_CHECK_MS * 3,
      });
      startTemporal();
      const connection = await until(
        () => Connection.connect({ address: config.temporalAddress }).catch(() => undefined),
        { what: 'Temporal to answer again', timeoutMs: 60_000, intervalMs: 500 },
      );
      try {
        // Pollers seen before the restart are forgotten with the server's memory; these are new polls.
        await untilPolled(connection, config, 'a poller on the task queue after the restart', 60_000);
        expect(controller.worker.getState()).toBe('RUNNING');
        await until(
          () => lines.some((l) => /^reached Temporal at \S+ again after [\d.]+s \(attempt \d+\)$/.test(l.msg)),
          {
            what: 'the controller to say Temporal is back',
            timeoutMs: TEMPORAL_CHECK_MS * 3,
          },
        );
        expect(lines.find((l) => l.msg.startsWith('lost Temporal at '))?.msg).toMatch(
          new RegExp(`^lost Temporal at ${config.temporalAddress} \\(attempt 1: .+\\); giving up in \\d+s$`),
        );
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

/**
 * A Temporal dev server of the test's own, and how to start it again on the same ports and database.
 * A dev server that does not come up (a port taken between freePorts and its bind) is started again
 * on other ports: the tests are about the controller outliving its server, not about ports.
 */
async function dedicatedTemporal(): Promise<{ first: ChildProcess; port: number; startTemporal: () => ChildProcess }> {
  let flags: string[] = [];
  const startTemporal = () => {
    const child = spawn(findTool('temporal'), ['server', 'start-dev', ...flags], { stdio: 'ignore' });
    servers.push(child);
    return child;
  };
  for (let attempt = 1; ; attempt++) {
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
    return { first: child, port: p, startTemporal };
  }
}

describe('reconnecting after losing the server', () => {
  it('a controller that loses Temporal for longer than the bound stops with an error saying how long', async () => {
    const { first, port } = await dedicatedTemporal();
    const config: RefitConfig = { ...testConfig(stack), temporalAddress: `127.0.0.1:${port}` };
    const { log, lines } = capturedLog();
    const controller = await startControllerWorker(config, log, {
      connect: { timeoutMs: 4_000, firstDelayMs: 200, maxDelayMs: 1_000 },
    });
    const stopped = controller.running.then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    await stopServer(first);
    const err = await stopped;
    expect(err).toBeInstanceOf(ServerUnreachableError);
    expect(err?.message).toMatch(
      new RegExp(
        `^lost Temporal at ${config.temporalAddress}: no answer for [\\d.]+s over \\d+ attempts \\(bound: 4\\.0s`,
      ),
    );
    // A line when it was lost and one per attempt after that, each saying when it gives up.
    const attempts = lines.filter((l) => l.what === 'Temporal' && l.msg.startsWith('lost Temporal at '));
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(attempts[0]?.msg).toMatch(/\(attempt 1: .+\); giving up in [\d.]+s$/);
  });

  it('a host agent that loses NATS logs each attempt, and past the bound exits 1 saying why', async () => {
    const hostId = uniqueHostId('lost');
    const server = await natsHome([hostId]);
    await startNats(server);
    await setUpMessaging(server, [hostId]);
    const args = ['run', '--nats-url', server.url, '--creds', credsFile(server.home, { host: hostId })];
    args.push('--id', hostId, '--driver', 'sim', '--state-dir', path.join(server.home, 'agent'));
    const agent = spawn(process.execPath, [AGENT, ...args], {
      env: { ...process.env, REFIT_CONNECT_TIMEOUT: '4s', REFIT_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = once(agent, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    let stderr = '';
    agent.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    try {
      await until(() => stderr.includes('host worker started'), { what: 'the agent to start', timeoutMs: 30_000 });
      const killedAt = Date.now();
      servers[0]?.kill('SIGKILL');
      const [code] = await exited;
      const took = Date.now() - killedAt;
      const messages = stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => (JSON.parse(l) as LogLine).msg);
      expect(messages).toContainEqual(expect.stringMatching(/^lost NATS at \S+; reconnecting, giving up in 4\.0s$/));
      const attempts = reconnectAttempts(messages);
      expect(attempts.length).toBeGreaterThanOrEqual(3);
      expect(attempts).toEqual(attempts.map((_, i) => i + 1));
      expect(stderr).toMatch(
        new RegExp(
          `refit-host: lost NATS at \\S+ and reached no server of ${server.url} again: gave up after \\d+ attempts in [\\d.]+s \\(bound: 4\\.0s, set with REFIT_CONNECT_TIMEOUT\\)\\n`,
        ),
      );
      expect(code).toBe(1);
      expect(took).toBeGreaterThanOrEqual(4_000);
      expect(took).toBeLessThan(20_000);
    } finally {
      agent.kill('SIGKILL');
    }
  });

  it('the controller counts a reconnect, and when NATS stays away past the bound its worker stops with the error', async () => {
    const server = await natsHome();
    await startNats(server);
    const config: RefitConfig = { ...testConfig(stack), home: server.home, natsUrl: server.url };
    const { log, lines } = capturedLog();
    const policy: ConnectPolicy = { timeoutMs: 3_000, firstDelayMs: 100, maxDelayMs: 400 };
    const controller = await startControllerWorker(config, log, { connect: policy });
    const before = { ...natsReconnectCounts };
    try {
      // Back within the bound: one reconnect, logged.
      await Promise.all(servers.splice(0).map((child) => stopServer(child, 'SIGKILL')));
      await startNats(server);
      await until(() => lines.some((l) => /^reconnected to NATS at \S+ after [\d.]+s \(attempt \d+\)$/.test(l.msg)), {
        what: 'the controller to reconnect',
        timeoutMs: 20_000,
      });
      expect(natsReconnectCounts.disconnects - before.disconnects).toBe(1);
      expect(natsReconnectCounts.reconnects - before.reconnects).toBe(1);
      expect(controller.worker.getState()).toBe('RUNNING');

      // Gone for good.
      await Promise.all(servers.splice(0).map((child) => stopServer(child, 'SIGKILL')));
      await expect(controller.running).rejects.toThrow(
        new RegExp(`^lost NATS at \\S+ and reached no server of ${server.url} again: gave up after \\d+ attempts`),
      );
      expect(natsReconnectCounts.givenUp - before.givenUp).toBe(1);
      expect(natsReconnectCounts.attempts - before.attempts).toBeGreaterThanOrEqual(3);
      expect(reconnectAttempts(lines.map((l) => l.msg)).length).toBeGreaterThanOrEqual(3);
      expect(controller.worker.getState()).not.toBe('RUNNING');
    } finally {
      await controller.shutdown().catch(() => undefined);
    }
  });

  it('a CLI read whose NATS server dies under it fails with the reason instead of waiting for ever', async () => {
    const server = await natsHome();
    await startNats(server);
    const config: RefitConfig = { ...testConfig(stack), home: server.home, natsUrl: server.url };
    const started = Date.now();
    const read = withNats(config, async (nc) => {
      // A read that waits for the server to say something (on the CLI's own inbox; nothing will).
      const waiting = nc.subscribe(createInbox(inboxPrefix(IDENTITIES.cli)));
      await Promise.all(servers.splice(0).map((child) => stopServer(child, 'SIGKILL')));
      for await (const msg of waiting) void msg;
    });
    await expect(read).rejects.toThrow(
      /^lost NATS at \S+ and reached no server of .* again: gave up after \d+ attempts in [\d.]+s \(bound: 10s\); try again once NATS answers$/,
    );
    expect(Date.now() - started).toBeLessThan(30_000);
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
