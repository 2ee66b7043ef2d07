import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { publicKeyProblem } from '../../activities/nkey.js';
import { HostId } from '../../schemas/common.js';
import { UsageError } from '../../schemas/errors.js';
import { natsNodes, readStackFile, type NatsNode } from '../config.js';
import { connectNats, identityOfHost } from '../nats.js';
import { readIdentities, saveIdentities, withIdentityLock, writeUsersConfig } from './credentials.js';
import { StackError, controllerIdentity, ensureHostConsumers, isStackProcess } from './stack.js';

/** A host's request to be admitted: its id and the public key of the seed it made and keeps. */
export interface HostKey {
  hostId: string;
  publicKey: string;
}

/** What one host key's line says is wrong with it, if anything. */
function hostKeyProblem(hostId: string, publicKey: string): string | undefined {
  const id = HostId.safeParse(hostId);
  if (!id.success) return `host id "${hostId}" ${id.error.issues[0]?.message ?? 'is invalid'}`;
  const key = publicKeyProblem(publicKey);
  return key === undefined ? undefined : `"${publicKey}" is ${key}`;
}

/** One host key from the command line (`refit enroll --pubkey <key> --id <hostId>`). */
export function checkHostKey(hostId: string, publicKey: string): HostKey {
  const problem = hostKeyProblem(hostId, publicKey);
  if (problem !== undefined) throw new UsageError(problem);
  return { hostId, publicKey };
}

/**
 * The lines `refit-host enroll-request` prints, collected in a file: `<hostId> <publicKey>` a line,
 * `#` comments and blank lines allowed. Every bad line is reported with its number, and then none is
 * taken.
 */
export function parseHostKeys(text: string, file: string): HostKey[] {
  const hosts: HostKey[] = [];
  const problems: string[] = [];
  const seen = new Map<string, { line: number; key: string }>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const at = `${file}:${i + 1}`;
    const words = line.split(/\s+/);
    if (words.length !== 2) {
      problems.push(`${at}: expected "<hostId> <publicKey>", got ${words.length} word(s)`);
      return;
    }
    const [hostId, publicKey] = words as [string, string];
    const problem = hostKeyProblem(hostId, publicKey);
    if (problem !== undefined) return void problems.push(`${at}: ${problem}`);
    const earlier = seen.get(hostId);
    if (earlier !== undefined && earlier.key !== publicKey)
      return void problems.push(`${at}: host ${hostId} has another key on line ${earlier.line}`);
    seen.set(hostId, { line: i + 1, key: publicKey });
    hosts.push({ hostId, publicKey });
  });
  if (problems.length > 0)
    throw new UsageError(`${problems.join('\n')}\n${problems.length} bad line(s) in ${file}: no host admitted`);
  if (hosts.length === 0) throw new UsageError(`${file} names no host`);
  return hosts;
}

export interface AdmitResult {
  added: string[];
  /** Hosts that had another key (a reinstalled host): their old key no longer logs in. */
  rekeyed: string[];
  unchanged: string[];
  /** The running dev-stack nodes reloaded; empty when none runs (reload the servers yourself). */
  reloaded: string[];
  usersConfig: string;
}

const RELOAD_TIMEOUT_MS = 10_000;

/**
 * Admits hosts by the public keys they made themselves: each gets a NATS user with exactly the host
 * permissions (`hostPermissions`) in `<home>/nats/users.conf`; no seed is made or kept here. Running
 * dev-stack nodes are reloaded and the hosts' command consumers made; otherwise the caller reloads the
 * servers (every node of a cluster). All or nothing: a key that another identity already uses is refused.
 */
export async function admitHostKeys(home: string, hosts: readonly HostKey[]): Promise<AdmitResult> {
  home = path.resolve(home);
  return withIdentityLock(home, async () => {
    const registry = readIdentities(home);
    const owner = new Map(Object.entries(registry).map(([identity, r]) => [r.publicKey, identity]));
    const result: AdmitResult = { added: [], rekeyed: [], unchanged: [], reloaded: [], usersConfig: '' };
    const clashes: string[] = [];
    for (const { hostId, publicKey } of hosts) {
      const identity = identityOfHost(hostId);
      const holder = owner.get(publicKey);
      if (holder !== undefined && holder !== identity) clashes.push(`${publicKey} is already the key of ${holder}`);
    }
    if (clashes.length > 0) throw new UsageError(`${clashes.join('\n')}\nno host admitted`);
    for (const { hostId, publicKey } of hosts) {
      const identity = identityOfHost(hostId);
      const before = registry[identity];
      if (before?.publicKey === publicKey) result.unchanged.push(hostId);
      else (before === undefined ? result.added : result.rekeyed).push(hostId);
      registry[identity] = { publicKey, kind: 'host', hostId, ownKey: true };
    }
    saveIdentities(home, registry);
    result.usersConfig = writeUsersConfig(home);
    const stack = readStackFile(home);
    const running = stack === undefined ? [] : natsNodes(stack).filter((n) => isStackProcess(n.pid, home));
    if (stack === undefined || running.length === 0) return result;
    await Promise.all(running.map((node) => reload(node)));
    result.reloaded = running.map((n) => n.name);
    const nc = await connectNats(controllerIdentity(home, stack.nats.url));
    try {
      await ensureHostConsumers(
        nc,
        hosts.map((h) => h.hostId),
      );
    } finally {
      await nc.close();
    }
    return result;
  });
}

/** SIGHUP, then wait until the node says it loaded its configuration again (varz config_load_time). */
async function reload(node: NatsNode): Promise<void> {
  const before = await configLoadTime(node);
  process.kill(node.pid, 'SIGHUP');
  const deadline = Date.now() + RELOAD_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const now = await configLoadTime(node).catch(() => undefined);
    if (now !== undefined && now !== before) return;
    await sleep(50);
  }
  throw new StackError(`nats-server ${node.name} (pid ${node.pid}) did not reload its configuration within 10 s`);
}

async function configLoadTime(node: NatsNode): Promise<string> {
  const varz = (await (await fetch(`${node.monitorUrl}/varz`)).json()) as { config_load_time?: string };
  return varz.config_load_time ?? '';
}
