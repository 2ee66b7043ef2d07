import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createUser } from '@nats-io/nkeys';
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

export type IdentityKind = 'controller' | 'cli' | 'host';

export interface IdentityRecord {
  publicKey: string;
  kind: IdentityKind;
  hostId?: string;
}

/** identity ("controller", "cli", "host_<hostId>") -> its nkey public key. */
export type IdentityRegistry = Record<string, IdentityRecord>;

export const natsDir = (home: string) => path.join(home, 'nats');
const registryFile = (home: string) => path.join(natsDir(home), 'identities.json');
export const natsConfigFile = (home: string) => path.join(natsDir(home), 'nats.conf');
const usersConfigFile = (home: string) => path.join(natsDir(home), 'users.conf');

export function readIdentities(home: string): IdentityRegistry {
  const file = registryFile(home);
  if (!existsSync(file)) return {};
  return JSON.parse(readFileSync(file, 'utf8')) as IdentityRegistry;
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
    if (registry[identity] === undefined) added.push(hostId);
    registry[identity] = { publicKey: ensureSeed(credsFile(home, { host: hostId })), kind: 'host', hostId };
  }
  saveIfChanged(home, registry, before);
  return added;
}

function ensureSeed(file: string): string {
  if (existsSync(file)) return publicKeyOfSeed(readFileSync(file, 'utf8').trim());
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const seed = new TextDecoder().decode(createUser().getSeed());
  writeFileSync(file, seed + '\n', { mode: 0o600, flag: 'wx' });
  return publicKeyOfSeed(seed);
}

const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const USER_PUBLIC_PREFIX = 20 << 3; // nkeys prefix byte of user public keys ("U...")
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * The public key ("U...") of an nkey user seed ("SU..."). nkeys derives it with pure-JS tweetnacl,
 * about 5 ms a key; node:crypto takes microseconds, which matters when enrolling thousands of hosts.
 */
export function publicKeyOfSeed(seed: string): string {
  const decoded = base32Decode(seed);
  if (!seed.startsWith('SU') || decoded.length !== 36) throw new Error('not an nkey user seed');
  const privateKey = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, decoded.subarray(2, 34)]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const body = Buffer.concat([Buffer.from([USER_PUBLIC_PREFIX]), spki.subarray(-32)]);
  const check = Buffer.alloc(2);
  check.writeUInt16LE(crc16(body));
  return base32Encode(Buffer.concat([body, check]));
}

function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    for (; bits >= 5; bits -= 5) out += BASE32[(value >>> (bits - 5)) & 31];
  }
  return bits > 0 ? out + BASE32[(value << (5 - bits)) & 31] : out;
}

function base32Decode(text: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const char of text) {
    const digit = BASE32.indexOf(char);
    if (digit < 0) throw new Error('not base32');
    value = ((value << 5) | digit) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** CRC-16/XMODEM, the checksum nkeys appends. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function saveIfChanged(home: string, registry: IdentityRegistry, before: string): boolean {
  if (JSON.stringify(registry) === before) return false;
  writePrivate(registryFile(home), JSON.stringify(registry, null, 2) + '\n');
  return true;
}

/** nats-server main config; the users live in users.conf so enrollment rewrites only that. */
export function writeNatsConfig(home: string, ports: { nats: number; monitor: number }): void {
  const lines = [
    '# Generated by `refit dev`; edits are lost.',
    'server_name: "refit-dev"',
    `listen: ${JSON.stringify(`127.0.0.1:${ports.nats}`)}`,
    `http: ${JSON.stringify(`127.0.0.1:${ports.monitor}`)}`,
    `jetstream { store_dir: ${JSON.stringify(path.join(natsDir(home), 'jetstream'))} }`,
    'include "users.conf"',
  ];
  writePrivate(natsConfigFile(home), lines.join('\n') + '\n');
}

/** Render users.conf from the registry: one nkey user per identity with its permissions. */
export function writeUsersConfig(home: string): void {
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
