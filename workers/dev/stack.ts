import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { Connection } from '@temporalio/client';
import pLimit from 'p-limit';
import { SEARCH_ATTRIBUTE_TYPES } from '../../schemas/names.js';
import { credsFile, readStackFile, stackFilePath, writeStackFile, type StackFile } from '../config.js';
import { ensureHostConsumer, ensureMessaging } from '../messaging.js';
import { connectNats, type NatsIdentity } from '../nats.js';
import {
  enrolledHostIds,
  ensureCoreIdentities,
  natsConfigFile,
  withIdentityLock,
  writeNatsConfig,
  writeUsersConfig,
} from './credentials.js';
import { findTool } from './tools.js';
import { RefitError } from '../../schemas/errors.js';

export interface StackOptions {
  home: string;
  temporalPort?: number | undefined;
  temporalUiPort?: number | undefined;
  natsPort?: number | undefined;
  natsMonitorPort?: number | undefined;
}

export interface ComponentStatus {
  pid: number;
  /** The recorded process still runs (and is this home's server, not a reused pid). */
  alive: boolean;
  answering: boolean;
  address: string;
}

export interface StackStatus {
  home: string;
  /** A stack.json exists: `refit dev up` ran and `refit dev down` did not. */
  started: boolean;
  /** Both servers alive and answering. */
  healthy: boolean;
  temporal?: ComponentStatus & { uiUrl: string };
  nats?: ComponentStatus & { monitorUrl: string };
}

export class StackError extends RefitError {}

export const DEFAULT_PORTS = { temporal: 7233, temporalUi: 8233, nats: 4222, natsMonitor: 8222 } as const;

const TEMPORAL_START_TIMEOUT_MS = 90_000;
const NATS_START_TIMEOUT_MS = 30_000;
const STOP_SIGNALS = [['SIGTERM', 15_000] as const, ['SIGKILL', 5_000] as const];

export const logFile = (home: string, name: 'temporal' | 'nats') => path.join(home, 'logs', `${name}.log`);

/** The controller's NATS identity in a `refit dev` home. */
export function controllerIdentity(home: string, url: string): NatsIdentity {
  return { url, credsFile: credsFile(home, 'controller'), identity: 'controller' };
}

/**
 * Start Temporal's dev server and nats-server for this home, detached, and wait until both answer
 * and the streams, buckets and host consumers exist. A healthy stack already running is returned as is.
 */
export async function startStack(opts: StackOptions): Promise<StackFile> {
  const home = path.resolve(opts.home);
  const existing = readStackFile(home);
  if (existing !== undefined) {
    const status = await stackStatus(home);
    if (status.healthy) return existing;
    if (status.temporal?.alive === true && status.nats?.alive === true) {
      throw new StackError(
        `the stack in ${home} runs (pids ${existing.temporal.pid}, ${existing.nats.pid}) but does not answer; see ${path.join(home, 'logs')} or restart it with \`refit dev down\``,
      );
    }
    await stopStack(home); // one server died: clear away the other and start afresh
  }
  const ports = {
    temporal: opts.temporalPort ?? DEFAULT_PORTS.temporal,
    temporalUi: opts.temporalUiPort ?? DEFAULT_PORTS.temporalUi,
    nats: opts.natsPort ?? DEFAULT_PORTS.nats,
    natsMonitor: opts.natsMonitorPort ?? DEFAULT_PORTS.natsMonitor,
  };
  await assertPortsFree(ports);
  for (const dir of ['temporal', 'logs', 'nats']) mkdirSync(path.join(home, dir), { recursive: true, mode: 0o700 });
  await withIdentityLock(home, async () => {
    ensureCoreIdentities(home);
    writeUsersConfig(home);
  });
  writeNatsConfig(home, { nats: ports.nats, monitor: ports.natsMonitor });

  const temporalAddress = `127.0.0.1:${ports.temporal}`;
  const natsUrl = `nats://127.0.0.1:${ports.nats}`;
  const tools = { temporal: findTool('temporal'), nats: findTool('nats-server') };
  const children: ChildProcess[] = [];
  try {
    const temporal = launch(tools.temporal, temporalArgs(home, ports), logFile(home, 'temporal'));
    children.push(temporal);
    const nats = launch(tools.nats, ['-c', natsConfigFile(home)], logFile(home, 'nats'));
    children.push(nats);
    await Promise.all([
      waitUntilAnswering('Temporal', temporal, logFile(home, 'temporal'), TEMPORAL_START_TIMEOUT_MS, () =>
        temporalAnswers(temporalAddress, 5_000),
      ),
      waitUntilAnswering('nats-server', nats, logFile(home, 'nats'), NATS_START_TIMEOUT_MS, () =>
        connectNats(controllerIdentity(home, natsUrl)).catch(() => undefined),
      ).then(prepareMessaging(home)),
    ]);
    const stack: StackFile = {
      temporal: { address: temporalAddress, uiAddress: `http://127.0.0.1:${ports.temporalUi}`, pid: pidOf(temporal) },
      nats: { url: natsUrl, monitorUrl: `http://127.0.0.1:${ports.natsMonitor}`, pid: pidOf(nats) },
      home,
      startedAt: new Date().toISOString(),
    };
    writeStackFile(home, stack);
    return stack;
  } catch (cause) {
    await Promise.all(children.flatMap((c) => (c.pid === undefined ? [] : [stopProcess(c.pid, home)])));
    throw cause;
  }
}

function temporalArgs(home: string, ports: { temporal: number; temporalUi: number }): string[] {
  const flags = {
    '--ip': '127.0.0.1',
    '--port': String(ports.temporal),
    '--ui-port': String(ports.temporalUi),
    '--db-filename': path.join(home, 'temporal', 'temporal.db'),
    '--log-level': 'warn',
  };
  const attributes = Object.entries(SEARCH_ATTRIBUTE_TYPES).map(([name, type]) => [
    '--search-attribute',
    `${name}=${type}`,
  ]);
  return ['server', 'start-dev', ...Object.entries(flags).flat(), ...attributes.flat()];
}

function prepareMessaging(home: string) {
  return async (nc: NatsConnection) => {
    try {
      await ensureMessaging(nc);
      await ensureHostConsumers(nc, enrolledHostIds(home));
    } finally {
      await nc.close();
    }
  };
}

/** Create the command consumers of many hosts, a bounded number of requests at a time. */
export async function ensureHostConsumers(
  nc: NatsConnection,
  hostIds: readonly string[],
  parallel = 32,
): Promise<void> {
  await pLimit(parallel).map(new Set(hostIds), (hostId) => ensureHostConsumer(nc, hostId));
}

/** Stop both servers of this home (SIGTERM, then SIGKILL after a timeout) and forget the stack. */
export async function stopStack(home: string): Promise<void> {
  home = path.resolve(home);
  const stack = readStackFile(home);
  if (stack === undefined) return;
  await Promise.all([stopProcess(stack.temporal.pid, home), stopProcess(stack.nats.pid, home)]);
  rmSync(stackFilePath(home), { force: true });
}

export async function stackStatus(home: string): Promise<StackStatus> {
  home = path.resolve(home);
  const stack = readStackFile(home);
  if (stack === undefined) return { home, started: false, healthy: false };
  const temporalAlive = isStackProcess(stack.temporal.pid, home);
  const natsAlive = isStackProcess(stack.nats.pid, home);
  const [temporalAnswering, natsAnswering] = await Promise.all([
    temporalAlive && temporalAnswers(stack.temporal.address, 3_000).then((ok) => ok === true),
    natsAlive && natsHealthy(stack.nats.monitorUrl),
  ]);
  return {
    home,
    started: true,
    healthy: temporalAnswering && natsAnswering,
    temporal: {
      pid: stack.temporal.pid,
      alive: temporalAlive,
      answering: temporalAnswering,
      address: stack.temporal.address,
      uiUrl: stack.temporal.uiAddress,
    },
    nats: {
      pid: stack.nats.pid,
      alive: natsAlive,
      answering: natsAnswering,
      address: stack.nats.url,
      monitorUrl: stack.nats.monitorUrl,
    },
  };
}

/** A free TCP port on the loopback address, for tests that must not use the defaults. */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port as number;
}

/** Several distinct free ports: all are held open until every one is picked. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => listen(0)));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

function listen(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(server));
  });
}

const PORT_FLAGS = {
  temporal: '--temporal-port',
  temporalUi: '--temporal-ui-port',
  nats: '--nats-port',
  natsMonitor: '--nats-monitor-port',
};

async function assertPortsFree(ports: Record<keyof typeof PORT_FLAGS, number>): Promise<void> {
  const seen = new Map<number, string>();
  for (const [name, port] of Object.entries(ports) as [keyof typeof PORT_FLAGS, number][]) {
    const other = seen.get(port);
    if (other !== undefined) throw new StackError(`port ${port} is given both to ${other} and ${PORT_FLAGS[name]}`);
    seen.set(port, PORT_FLAGS[name]);
    try {
      const server = await listen(port);
      await new Promise((resolve) => server.close(resolve));
    } catch (cause) {
      throw new StackError(
        `port ${port} on 127.0.0.1 is already in use by another program; pick another with ${PORT_FLAGS[name]}`,
        { cause },
      );
    }
  }
}

function launch(bin: string, args: string[], log: string): ChildProcess {
  const fd = openSync(log, 'a', 0o600);
  try {
    const child = spawn(bin, args, { detached: true, stdio: ['ignore', fd, fd] });
    child.on('error', () => {}); // a failed spawn shows as a missing pid and an exit code
    child.unref();
    return child;
  } finally {
    closeSync(fd);
  }
}

function pidOf(child: ChildProcess): number {
  if (child.pid === undefined) throw new StackError(`could not start ${child.spawnfile}`);
  return child.pid;
}

async function waitUntilAnswering<T>(
  what: string,
  child: ChildProcess,
  log: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined | false>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) {
      throw new StackError(`${what} exited before answering; the end of ${log}:\n${logTail(log)}`);
    }
    const answer = await probe();
    if (answer !== undefined && answer !== false) return answer;
    await sleep(250);
  }
  throw new StackError(`${what} did not answer within ${timeoutMs / 1000} s; the end of ${log}:\n${logTail(log)}`);
}

/** The last lines of a server log, for error messages. */
export function logTail(log: string, lines = 15): string {
  const text = existsSync(log) ? readFileSync(log, 'utf8').trimEnd() : '';
  return text === '' ? '(nothing logged)' : text.split('\n').slice(-lines).join('\n');
}

async function temporalAnswers(address: string, timeoutMs: number): Promise<true | undefined> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: timeoutMs });
    const c = connection;
    await c.withDeadline(Date.now() + timeoutMs, () => c.workflowService.describeNamespace({ namespace: 'default' }));
    return true;
  } catch {
    return undefined;
  } finally {
    await connection?.close();
  }
}

async function natsHealthy(monitorUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${monitorUrl}/healthz`, { signal: AbortSignal.timeout(2_000) });
    return res.ok;
  } catch {
    return false;
  }
}

/** True when pid runs one of this home's servers; a pid reused by another program does not count. */
export function isStackProcess(pid: number, home: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (!existsSync('/proc')) return true;
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    if (state === 'Z') return false;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${home}${path.sep}`);
  } catch {
    return false;
  }
}

async function stopProcess(pid: number, home: string): Promise<void> {
  for (const [signal, waitMs] of STOP_SIGNALS) {
    if (!isStackProcess(pid, home)) return;
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && isStackProcess(pid, home)) await sleep(100);
  }
  if (isStackProcess(pid, home)) throw new StackError(`process ${pid} did not stop after SIGKILL`);
}
