import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { HostId } from '../../schemas/common.js';
import { IDENTITIES } from '../../schemas/names.js';
import {
  cliPermissions,
  controllerPermissions,
  hostPermissions,
  type NatsPermissions,
} from '../../schemas/permissions.js';
import { credsFile } from '../config.js';
import { identityOfHost } from '../nats.js';
import { writeFileAtomicSync } from '../../activities/files.js';
import { ensureSeed } from '../nkey.js';

export type IdentityKind = 'controller' | 'cli' | 'host';

export interface IdentityRecord {
  publicKey: string;
  kind: IdentityKind;
  hostId?: string;
  /** The host made this key itself (`refit enroll`): no seed for it exists here. */
  ownKey?: boolean;
}

/** identity ("controller", "cli", "host_<hostId>") -> its nkey public key. */
export type IdentityRegistry = Record<string, IdentityRecord>;

/** The registry file as read by others (`refit audit verify --keys`): checked, other kinds of identity kept. */
export const IdentityRegistryFile = z.record(
  z.string(),
  z.looseObject({ publicKey: z.string(), kind: z.string(), hostId: z.string().optional() }),
);
export type IdentityRegistryFile = z.infer<typeof IdentityRegistryFile>;

export const natsDir = (home: string) => path.join(home, 'nats');
/** The enrolment registry: every identity's public key. */
export const registryFile = (home: string) => path.join(natsDir(home), 'identities.json');
const usersConfigFile = (home: string) => path.join(natsDir(home), 'users.conf');

export function readIdentities(home: string): IdentityRegistry {
  const file = registryFile(home);
  if (!existsSync(file)) return {};
  return JSON.parse(readFileSync(file, 'utf8')) as IdentityRegistry;
}

/** Each enrolled host's nkey public key, by host id: what its signed audit events verify against. */
export function hostKeysOf(registry: IdentityRegistryFile): Record<string, string> {
  return Object.fromEntries(
    Object.values(registry).flatMap((r) =>
      r.kind === 'host' && r.hostId !== undefined ? [[r.hostId, r.publicKey]] : [],
    ),
  );
}

/** Host ids that have credentials, in enrollment order. */
export function enrolledHostIds(home: string): string[] {
  return Object.values(readIdentities(home)).flatMap((r) =>
    r.kind === 'host' && r.hostId !== undefined ? [r.hostId] : [],
  );
}

/** Credentials for the controller and the CLI; returns true when something was created. */
export function ensureCoreIdentities(home: string): boolean {
  const registry = readIdentities(home);
  const before = JSON.stringify(registry);
  for (const identity of [IDENTITIES.controller, IDENTITIES.cli] as const) {
    registry[identity] = { publicKey: ensureSeed(credsFile(home, identity)), kind: identity };
  }
  return saveIfChanged(home, registry, before);
}

/** Credentials for hosts that have none; returns the host ids that were new. */
export function ensureHostIdentities(home: string, hostIds: readonly string[]): string[] {
  for (const hostId of hostIds) {
    const parsed = HostId.safeParse(hostId);
    if (!parsed.success) throw new Error(`host id "${hostId}" ${parsed.error.issues[0]?.message ?? 'is invalid'}`);
  }
  const registry = readIdentities(home);
  const before = JSON.stringify(registry);
  const added: string[] = [];
  for (const hostId of new Set(hostIds)) {
    const identity = identityOfHost(hostId);
    if (registry[identity]?.ownKey === true)
      throw new Error(
        `host ${hostId} was admitted by the public key it made itself (refit enroll); a central seed would lock it out`,
      );
    if (registry[identity] === undefined) added.push(hostId);
    registry[identity] = { publicKey: ensureSeed(credsFile(home, { host: hostId })), kind: 'host', hostId };
  }
  saveIfChanged(home, registry, before);
  return added;
}

function saveIfChanged(home: string, registry: IdentityRegistry, before: string): boolean {
  if (JSON.stringify(registry) === before) return false;
  saveIdentities(home, registry);
  return true;
}

/** Writes the registry; the caller holds {@link withIdentityLock}. */
export function saveIdentities(home: string, registry: IdentityRegistry): void {
  writePrivate(registryFile(home), JSON.stringify(registry, null, 2) + '\n');
}

/** One nats-server of the dev stack: its ports, and in a cluster its route port. */
export interface NatsNodePorts {
  nats: number;
  monitor: number;
  route?: number | undefined;
}

/** The name of node `n` (1-based) of a dev cluster; also its config, log and store names. */
export const clusterNodeName = (n: number) => `nats-${n}`;

/** A node's main config: `nats.conf` for the single server, `nats-<n>.conf` for cluster node n. */
export const natsConfigFile = (home: string, node?: number) =>
  path.join(natsDir(home), node === undefined ? 'nats.conf' : `${clusterNodeName(node)}.conf`);

/**
 * What each node of a cluster is given, as deploy/nats/cluster.conf gives the compose cluster's
 * nodes (test/nats-cluster.test.ts holds the two together): payload and store limits, lame duck.
 */
export const CLUSTER_SETTINGS = {
  name: 'refit',
  maxPayload: '1MB',
  lameDuckDuration: '30s',
  lameDuckGracePeriod: '10s',
  maxFileStore: '20GB',
  maxMemoryStore: '256MB',
} as const;

/**
 * nats-server main config; the users live in users.conf so enrollment rewrites only that, and every
 * node of a cluster includes the same one. `cluster` makes node `cluster.node` of a cluster whose
 * route ports are `cluster.routes` (every node lists every node; a server ignores the route to itself).
 */
export function writeNatsConfig(
  home: string,
  ports: NatsNodePorts,
  cluster?: { node: number; routes: readonly number[] },
  tls?: { serverCert: string; serverKey: string; caFile: string },
): void {
  const name = cluster === undefined ? 'refit-dev' : `refit-dev-${cluster.node}`;
  const store = path.join(natsDir(home), cluster === undefined ? 'jetstream' : `jetstream-${cluster.node}`);
  const lines = [
    '# Generated by `refit dev`; edits are lost.',
    `server_name: ${JSON.stringify(name)}`,
    `listen: ${JSON.stringify(`127.0.0.1:${ports.nats}`)}`,
    `http: ${JSON.stringify(`127.0.0.1:${ports.monitor}`)}`,
  ];
  if (cluster === undefined) lines.push(`jetstream { store_dir: ${JSON.stringify(store)} }`);
  else {
    if (ports.route === undefined) throw new Error(`cluster node ${cluster.node} needs a route port`);
    const s = CLUSTER_SETTINGS;
    lines.push(
      `max_payload: ${s.maxPayload}`,
      `lame_duck_duration: ${JSON.stringify(s.lameDuckDuration)}`,
      `lame_duck_grace_period: ${JSON.stringify(s.lameDuckGracePeriod)}`,
      `jetstream { store_dir: ${JSON.stringify(store)}, max_file_store: ${s.maxFileStore}, max_memory_store: ${s.maxMemoryStore} }`,
      'cluster {',
      `  name: ${JSON.stringify(s.name)}`,
      `  listen: ${JSON.stringify(`127.0.0.1:${ports.route}`)}`,
      `  routes: [${cluster.routes.map((p) => JSON.stringify(`nats-route://127.0.0.1:${p}`)).join(', ')}]`,
      '  no_advertise: true',
      '}',
    );
  }
  lines.push('include "users.conf"');
  // With `refit dev up --tls`: clients must show a certificate of the dev CA as well as their nkey.
  if (tls !== undefined)
    lines.push(
      'tls {',
      `  cert_file: ${JSON.stringify(tls.serverCert)}`,
      `  key_file: ${JSON.stringify(tls.serverKey)}`,
      `  ca_file: ${JSON.stringify(tls.caFile)}`,
      '  verify: true',
      '  timeout: 5',
      '}',
    );
  writePrivate(natsConfigFile(home, cluster?.node), lines.join('\n') + '\n');
}

/** Render users.conf from the registry: one nkey user per identity with its permissions. */
export function writeUsersConfig(home: string): string {
  const users = Object.entries(readIdentities(home)).map(([identity, record]) =>
    JSON.stringify({ nkey: record.publicKey, permissions: permissionsOf(identity, record) }),
  );
  const text = [
    '# Generated by `refit dev` from identities.json; edits are lost.',
    'authorization {',
    '  users = [',
    `    ${users.join(',\n    ')}`,
    '  ]',
    '}',
  ];
  writePrivate(usersConfigFile(home), text.join('\n') + '\n');
  return usersConfigFile(home);
}

function permissionsOf(identity: string, record: IdentityRecord): NatsPermissions {
  switch (record.kind) {
    case 'controller':
      return controllerPermissions();
    case 'cli':
      return cliPermissions(identity);
    case 'host':
      if (record.hostId === undefined) throw new Error(`identity ${identity} is a host without a host id`);
      return hostPermissions(record.hostId, identity);
  }
}

function writePrivate(file: string, text: string): void {
  writeFileAtomicSync(file, text, { mode: 0o600 });
}

const LOCK_TIMEOUT_MS = 120_000;

/** Serialise changes to identities and users.conf across processes sharing one home. */
export async function withIdentityLock<T>(home: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(natsDir(home), 'enroll.lock');
  mkdirSync(natsDir(home), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
      break;
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code !== 'EEXIST') throw cause;
      if (lockHolderGone(lock)) rmSync(lock, { force: true });
      else if (Date.now() > deadline) throw new Error(`${lock} is held by process ${readFileSync(lock, 'utf8')}`);
      else await sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

function lockHolderGone(lock: string): boolean {
  try {
    const pid = Number(readFileSync(lock, 'utf8'));
    if (!Number.isInteger(pid) || pid <= 0) return Date.now() - statSync(lock).mtimeMs > 10_000;
    process.kill(pid, 0);
    return false;
  } catch (cause) {
    return (cause as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
