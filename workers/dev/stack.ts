import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import { Connection } from '@temporalio/client';
import pLimit from 'p-limit';
import { SEARCH_ATTRIBUTE_TYPES } from '../../schemas/names.js';
import {
  credsFile,
  natsNodes,
  readStackFile,
  stackFilePath,
  temporalTlsOptions,
  writeStackFile,
  type NatsNode,
  type NatsTls,
  type StackFile,
  type TemporalTls,
} from '../config.js';
import { ensureHostConsumer, ensureMessaging } from '../messaging.js';
import { connectNats, type NatsIdentity } from '../nats.js';
import {
  clusterNodeName,
  enrolledHostIds,
  ensureCoreIdentities,
  natsConfigFile,
  withIdentityLock,
  writeNatsConfig,
  writeUsersConfig,
  type NatsNodePorts,
} from './credentials.js';
import { findTool } from './tools.js';
import { ensureDevCertificates, type DevCertificates } from './tls.js';
import { tlsFrontArgs } from './tls-front.js';
import { RefitError } from '../../schemas/errors.js';

export interface StackOptions {
  home: string;
  temporalPort?: number | undefined;
  temporalUiPort?: number | undefined;
  natsPort?: number | undefined;
  natsMonitorPort?: number | undefined;
  /**
   * Run this many clustered nats-servers on loopback instead of one (`refit dev up --nats-cluster 3`),
   * with streams and buckets at CLUSTER_REPLICAS replicas. Node n takes the client, monitoring and
   * route ports that follow the first node's by n-1, unless `natsNodePorts` names them.
   */
  natsCluster?: number | undefined;
  /** The first cluster node's route port (default 6222). */
  natsRoutePort?: number | undefined;
  /** Each cluster node's ports (tests pick free ones); overrides natsPort, natsMonitorPort, natsRoutePort. */
  natsNodePorts?: readonly NatsNodePorts[] | undefined;
  /**
   * Serve NATS and Temporal over TLS with a local CA made under `<home>/tls` (workers/dev/tls.ts);
   * clients must show a certificate of that CA too (mutual TLS). Recorded in stack.json, from
   * which every refit command of this home takes the client settings.
   */
  tls?: boolean | undefined;
  /** The dev server beyond refit's settings; the bench's experiments (docs/BENCHMARKS.md "Where the time goes"). */
  temporalServer?: TemporalServerOptions | undefined;
}

export interface TemporalServerOptions {
  /** Keep workflows in memory instead of the home's SQLite file: lost when the server stops. */
  inMemory?: boolean;
  /** Serve the server's Prometheus metrics on this loopback port (else on a random one). */
  metricsPort?: number;
  /** `--dynamic-config-value KEY=VALUE` of the dev server, VALUE as JSON. */
  dynamicConfig?: Record<string, string>;
  /** `--sqlite-pragma PRAGMA=VALUE`, over DEV_SQLITE_PRAGMAS. */
  sqlitePragmas?: Record<string, string>;
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
  /** NATS as a whole: alive and answering when every node is; address lists every node's URL. */
  nats?: ComponentStatus & { monitorUrl: string; nodes: NatsNodeStatus[] };
}

export type NatsNodeStatus = ComponentStatus & { name: string; monitorUrl: string };

export class StackError extends RefitError {}

export const DEFAULT_PORTS = {
  temporal: 7233,
  temporalUi: 8233,
  nats: 4222,
  natsMonitor: 8222,
  natsRoute: 6222,
} as const;

/** Replicas of every stream and bucket on a dev cluster, as REFIT_NATS_REPLICAS=3 in docker-compose.yml. */
export const CLUSTER_REPLICAS = 3;
/** Cluster sizes `refit dev up --nats-cluster` takes: an odd number, so that a majority survives a node. */
export const CLUSTER_SIZES = [3, 5] as const;

const TEMPORAL_START_TIMEOUT_MS = 90_000;
const NATS_START_TIMEOUT_MS = 30_000;
const STOP_SIGNALS = [['SIGTERM', 15_000] as const, ['SIGKILL', 5_000] as const];

/** A server's log: `temporal`, `nats` (the single server) or a cluster node's name (`nats-2`). */
export const logFile = (home: string, name: string) => path.join(home, 'logs', `${name}.log`);

/** The controller's NATS identity in a `refit dev` home. */
export function controllerIdentity(home: string, url: string, tls = readStackFile(home)?.tls?.nats): NatsIdentity {
  return { url, credsFile: credsFile(home, 'controller'), identity: 'controller', tls };
}

/** The client side of a `--tls` stack: one client pair for every local identity. */
function clientTls(certs: DevCertificates): { nats: NatsTls; temporal: TemporalTls } {
  const pair = { certFile: certs.clientCert, keyFile: certs.clientKey };
  return {
    nats: { caFile: certs.caFile, ...pair },
    temporal: { caFile: certs.caFile, ...pair, serverName: 'localhost' },
  };
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
        `the stack in ${home} runs (pids ${[existing.temporal, ...natsNodes(existing)].map((p) => p.pid).join(', ')}) but does not answer; see ${path.join(home, 'logs')} or restart it with \`refit dev down\``,
      );
    }
    await stopStack(home); // a server died: clear away the others and start afresh
  }
  const ports = {
    temporal: opts.temporalPort ?? DEFAULT_PORTS.temporal,
    temporalUi: opts.temporalUiPort ?? DEFAULT_PORTS.temporalUi,
  };
  const certs = opts.tls === true ? ensureDevCertificates(path.resolve(opts.home)) : undefined;
  const tls = certs && clientTls(certs);
  const nodes = natsNodePlan(opts, certs !== undefined);
  await assertPortsFree([
    [ports.temporal, PORT_FLAGS.temporal],
    [ports.temporalUi, PORT_FLAGS.temporalUi],
    ...nodes.flatMap(({ ports: p }) => [
      [p.nats, PORT_FLAGS.nats] as const,
      [p.monitor, PORT_FLAGS.natsMonitor] as const,
      ...(p.route === undefined ? [] : [[p.route, PORT_FLAGS.natsRoute] as const]),
    ]),
  ]);
  for (const dir of ['temporal', 'logs', 'nats']) mkdirSync(path.join(home, dir), { recursive: true, mode: 0o700 });
  await withIdentityLock(home, async () => {
    ensureCoreIdentities(home);
    writeUsersConfig(home);
  });
  const clustered = nodes.length > 1;
  const routes = nodes.flatMap((n) => (n.ports.route === undefined ? [] : [n.ports.route]));
  const serverTls = certs && { serverCert: certs.serverCert, serverKey: certs.serverKey, caFile: certs.caFile };
  nodes.forEach((n, i) => writeNatsConfig(home, n.ports, clustered ? { node: i + 1, routes } : undefined, serverTls));

  const temporalAddress = `127.0.0.1:${ports.temporal}`;
  const natsUrl = nodes.map((n) => n.url).join(',');
  const replicas = clustered ? CLUSTER_REPLICAS : 1;
  const tools = { temporal: findTool('temporal'), nats: findTool('nats-server') };
  const children: ChildProcess[] = [];
  try {
    // With TLS the dev server listens on a loopback port of its own, behind the TLS front.
    const serverPort = certs ? await freePort() : ports.temporal;
    const temporal = launch(
      tools.temporal,
      temporalArgs(home, { ...ports, temporal: serverPort }, opts.temporalServer),
      logFile(home, 'temporal'),
    );
    children.push(temporal);
    const front =
      certs &&
      launch(
        process.execPath,
        [
          tlsFrontScript(),
          ...tlsFrontArgs({
            listen: { host: '127.0.0.1', port: ports.temporal },
            to: { host: '127.0.0.1', port: serverPort },
            certFile: certs.serverCert,
            keyFile: certs.serverKey,
            caFile: certs.caFile,
            verifyClients: true,
          }),
        ],
        logFile(home, 'temporal'),
      );
    if (front) children.push(front);
    const servers = nodes.map((n, i) => {
      const child = launch(tools.nats, ['-c', natsConfigFile(home, clustered ? i + 1 : undefined)], n.log);
      children.push(child);
      return child;
    });
    const allNodesHealthy = () =>
      Promise.all(
        nodes.map((n, i) =>
          waitUntilAnswering(`nats-server ${n.name}`, servers[i] as ChildProcess, n.log, NATS_START_TIMEOUT_MS, () =>
            natsHealthy(n.monitorUrl).then((ok) => ok || undefined),
          ),
        ),
      );
    // Asked again once the streams exist: a node says it is unhealthy while its new replicas catch up,
    // and `refit dev up` returns a stack that `refit dev status` calls healthy.
    const natsReady = clustered
      ? allNodesHealthy()
          .then(() => prepareClusterMessaging(home, natsUrl, replicas, tls?.nats))
          .then(allNodesHealthy)
      : waitUntilAnswering('nats-server', servers[0] as ChildProcess, nodes[0]?.log ?? '', NATS_START_TIMEOUT_MS, () =>
          connectNats(controllerIdentity(home, natsUrl, tls?.nats)).catch(() => undefined),
        ).then(prepareMessaging(home, replicas));
    await Promise.all([
      waitUntilAnswering('Temporal', front || temporal, logFile(home, 'temporal'), TEMPORAL_START_TIMEOUT_MS, () =>
        temporalAnswers(temporalAddress, 5_000, tls?.temporal),
      ),
      natsReady,
    ]);
    const recorded: NatsNode[] = nodes.map((n, i) => ({
      name: n.name,
      url: n.url,
      monitorUrl: n.monitorUrl,
      pid: pidOf(servers[i] as ChildProcess),
    }));
    const first = recorded[0] as NatsNode;
    const stack: StackFile = {
      temporal: {
        address: temporalAddress,
        uiAddress: `http://127.0.0.1:${ports.temporalUi}`,
        ...(front ? { pid: pidOf(front), serverPid: pidOf(temporal) } : { pid: pidOf(temporal) }),
      },
      nats: { url: natsUrl, monitorUrl: first.monitorUrl, pid: first.pid, nodes: recorded, replicas },
      ...(tls ? { tls } : {}),
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

interface PlannedNode {
  name: string;
  ports: NatsNodePorts;
  url: string;
  monitorUrl: string;
  log: string;
}

/** The nats-servers to start: one, or a cluster's nodes with their ports. */
function natsNodePlan(opts: StackOptions, tls: boolean): PlannedNode[] {
  const size = opts.natsCluster ?? 1;
  const home = path.resolve(opts.home);
  if (size === 1) {
    const ports = {
      nats: opts.natsPort ?? DEFAULT_PORTS.nats,
      monitor: opts.natsMonitorPort ?? DEFAULT_PORTS.natsMonitor,
    };
    return [planned('nats', ports, home, tls)];
  }
  if (!(CLUSTER_SIZES as readonly number[]).includes(size))
    throw new StackError(`a NATS cluster has ${CLUSTER_SIZES.join(' or ')} nodes, not ${size}`);
  const given = opts.natsNodePorts;
  if (given !== undefined && given.length !== size)
    throw new StackError(`${size} cluster nodes need ${size} sets of ports, not ${given.length}`);
  return Array.from({ length: size }, (_, i) => {
    const ports = given?.[i] ?? {
      nats: (opts.natsPort ?? DEFAULT_PORTS.nats) + i,
      monitor: (opts.natsMonitorPort ?? DEFAULT_PORTS.natsMonitor) + i,
      route: (opts.natsRoutePort ?? DEFAULT_PORTS.natsRoute) + i,
    };
    return planned(clusterNodeName(i + 1), ports, home, tls);
  });
}

function planned(name: string, ports: NatsNodePorts, home: string, tls: boolean): PlannedNode {
  return {
    name,
    ports,
    url: `${tls ? 'tls' : 'nats'}://127.0.0.1:${ports.nats}`,
    monitorUrl: `http://127.0.0.1:${ports.monitor}`,
    log: logFile(home, name),
  };
}

export type StackServer = 'temporal' | 'nats';

/**
 * Start one server of a running stack again after it died (a crash, or a test that killed it), on
 * the same ports and data directory, and wait until it answers; the stack file gets its new pid.
 * Its messaging is not set up again: the streams and buckets are in its data directory.
 */
export async function restartStackServer(home: string, server: StackServer): Promise<number> {
  home = path.resolve(home);
  const stack = readStackFile(home);
  if (stack === undefined) throw new StackError(`no stack was started in ${home}`);
  const oldPid = stack[server].pid;
  if (isStackProcess(oldPid, home)) throw new StackError(`${server} of ${home} still runs (pid ${oldPid})`);
  const log = logFile(home, server);
  let child: ChildProcess;
  if (server === 'temporal') {
    const ports = { temporal: portOf(stack.temporal.address), temporalUi: portOf(stack.temporal.uiAddress) };
    child = launch(findTool('temporal'), temporalArgs(home, ports), log);
    await waitUntilAnswering('Temporal', child, log, TEMPORAL_START_TIMEOUT_MS, () =>
      temporalAnswers(stack.temporal.address, 5_000),
    );
  } else {
    if (natsNodes(stack).length > 1) throw new StackError(`${home} runs a NATS cluster; restart its nodes one by one`);
    child = launch(findTool('nats-server'), ['-c', natsConfigFile(home)], log);
    const nc = await waitUntilAnswering('nats-server', child, log, NATS_START_TIMEOUT_MS, () =>
      connectNats(controllerIdentity(home, stack.nats.url)).catch(() => undefined),
    );
    await nc.close();
  }
  const pid = pidOf(child);
  const current = readStackFile(home) ?? stack;
  writeStackFile(
    home,
    server === 'temporal'
      ? { ...current, temporal: { ...current.temporal, pid } }
      : {
          ...current,
          nats: {
            ...current.nats,
            pid,
            ...(current.nats.nodes ? { nodes: current.nats.nodes.map((n) => ({ ...n, pid })) } : {}),
          },
        },
  );
  return pid;
}

function portOf(address: string): number {
  const port = Number(/:(\d+)\/?$/.exec(address)?.[1]);
  if (!Number.isInteger(port)) throw new StackError(`no port in the stack's address ${address}`);
  return port;
}

/**
 * The dev server's SQLite file in write-ahead-log mode, synced at checkpoints rather than at every
 * commit: child workflows start about twice as fast (decision 0033). A killed server loses nothing
 * it committed; a power cut can lose its last commits, never the file.
 */
export const DEV_SQLITE_PRAGMAS: Readonly<Record<string, string>> = { journal_mode: 'wal', synchronous: 'normal' };

function temporalArgs(
  home: string,
  ports: { temporal: number; temporalUi: number },
  server: TemporalServerOptions = {},
): string[] {
  const flags: Record<string, string> = {
    '--ip': '127.0.0.1',
    '--port': String(ports.temporal),
    '--ui-port': String(ports.temporalUi),
    ...(server.inMemory === true ? {} : { '--db-filename': path.join(home, 'temporal', 'temporal.db') }),
    '--log-level': 'warn',
    ...(server.metricsPort !== undefined ? { '--metrics-port': String(server.metricsPort) } : {}),
  };
  const repeated = [
    ...Object.entries(server.dynamicConfig ?? {}).map(([k, v]) => ['--dynamic-config-value', `${k}=${v}`]),
    ...Object.entries(
      server.inMemory === true ? (server.sqlitePragmas ?? {}) : { ...DEV_SQLITE_PRAGMAS, ...server.sqlitePragmas },
    ).map(([k, v]) => ['--sqlite-pragma', `${k}=${v}`]),
  ];
  const attributes = Object.entries(SEARCH_ATTRIBUTE_TYPES).map(([name, type]) => [
    '--search-attribute',
    `${name}=${type}`,
  ]);
  return ['server', 'start-dev', ...Object.entries(flags).flat(), ...repeated.flat(), ...attributes.flat()];
}

function prepareMessaging(home: string, replicas: number) {
  return async (nc: NatsConnection) => {
    try {
      await ensureMessaging(nc, replicas);
      await ensureHostConsumers(nc, enrolledHostIds(home));
    } finally {
      await nc.close();
    }
  };
}

/**
 * A cluster answers health checks before its JetStream meta group has a leader that knows every
 * peer; until then creating a replicated stream fails. Retried until it succeeds or the start times out.
 */
async function prepareClusterMessaging(
  home: string,
  url: string,
  replicas: number,
  tls: NatsTls | undefined,
): Promise<void> {
  const deadline = Date.now() + NATS_START_TIMEOUT_MS;
  for (;;) {
    try {
      const nc = await connectNats(controllerIdentity(home, url, tls));
      await prepareMessaging(home, replicas)(nc);
      return;
    } catch (cause) {
      if (Date.now() > deadline)
        throw new StackError(`the NATS cluster did not take its streams within ${NATS_START_TIMEOUT_MS / 1000} s`, {
          cause,
        });
      await sleep(500);
    }
  }
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
  const temporal = [stack.temporal.pid, ...(stack.temporal.serverPid !== undefined ? [stack.temporal.serverPid] : [])];
  await Promise.all([...temporal, ...natsNodes(stack).map((n) => n.pid)].map((pid) => stopProcess(pid, home)));
  rmSync(stackFilePath(home), { force: true });
}

export async function stackStatus(home: string): Promise<StackStatus> {
  home = path.resolve(home);
  const stack = readStackFile(home);
  if (stack === undefined) return { home, started: false, healthy: false };
  const temporalAlive = isStackProcess(stack.temporal.pid, home);
  const [temporalAnswering, nodes] = await Promise.all([
    temporalAlive && temporalAnswers(stack.temporal.address, 3_000, stack.tls?.temporal).then((ok) => ok === true),
    Promise.all(
      natsNodes(stack).map(async (n): Promise<NatsNodeStatus> => {
        const alive = isStackProcess(n.pid, home);
        const answering = alive && (await natsHealthy(n.monitorUrl));
        return { name: n.name, pid: n.pid, alive, answering, address: n.url, monitorUrl: n.monitorUrl };
      }),
    ),
  ]);
  const natsAlive = nodes.every((n) => n.alive);
  const natsAnswering = nodes.every((n) => n.answering);
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
      nodes,
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
  natsRoute: '--nats-route-port',
} as const;

async function assertPortsFree(ports: readonly (readonly [number, string])[]): Promise<void> {
  const seen = new Map<number, string>();
  for (const [port, flag] of ports) {
    const other = seen.get(port);
    if (other !== undefined) throw new StackError(`port ${port} is given both to ${other} and ${flag}`);
    seen.set(port, flag);
    try {
      const server = await listen(port);
      await new Promise((resolve) => server.close(resolve));
    } catch (cause) {
      throw new StackError(
        `port ${port} on 127.0.0.1 is already in use by another program; pick another with ${flag}`,
        {
          cause,
        },
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

async function temporalAnswers(address: string, timeoutMs: number, tls?: TemporalTls): Promise<true | undefined> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: timeoutMs, ...temporalTlsOptions(tls) });
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

/**
 * The compiled TLS front: its sibling when this module runs from dist/, else dist/ of the checkout
 * (tests run the sources). Node runs JavaScript only.
 */
function tlsFrontScript(): string {
  const here = fileURLToPath(import.meta.url);
  const script = here.endsWith('.js')
    ? path.join(path.dirname(here), 'tls-front.js')
    : path.resolve(path.dirname(here), '..', '..', 'dist', 'workers', 'dev', 'tls-front.js');
  if (!existsSync(script)) throw new StackError(`${script} is missing: run \`npm run build\` first`);
  return script;
}
