import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { inboxPrefix } from '../../schemas/names.js';
import { credsFile, natsNodes, readStackFile, type NatsNode } from '../config.js';
import { authenticatorFromFile, connectNats, identityOfHost } from '../nats.js';
import { ensureHostIdentities, withIdentityLock, writeUsersConfig } from './credentials.js';
import { StackError, controllerIdentity, ensureHostConsumers, isStackProcess, logFile, logTail } from './stack.js';

export interface EnrollResult {
  /** Hosts that got credentials in this call. */
  added: string[];
  /** False when no stack runs: the hosts can connect after `refit dev up`, which creates their consumers. */
  live: boolean;
}

const RELOAD_TIMEOUT_MS = 10_000;

/**
 * Give hosts their NATS credentials and command consumers. Idempotent; any number of hosts costs
 * one nats-server reload.
 */
export async function enrollHosts(home: string, hostIds: string[]): Promise<EnrollResult> {
  home = path.resolve(home);
  return withIdentityLock(home, async () => {
    const added = ensureHostIdentities(home, hostIds);
    if (added.length > 0) writeUsersConfig(home);
    const stack = readStackFile(home);
    // Every node of a cluster includes the same users.conf; each one that runs is reloaded.
    const running = stack === undefined ? [] : natsNodes(stack).filter((n) => isStackProcess(n.pid, home));
    if (stack === undefined || running.length === 0) return { added, live: false };
    const probe = added[0] ?? hostIds[0];
    const refused = async () =>
      probe !== undefined && (await Promise.all(running.map((n) => hostCanConnect(home, n, probe)))).includes(false);
    if (probe !== undefined && (added.length > 0 || (await refused()))) {
      if (added.length === 0) writeUsersConfig(home);
      for (const node of running) process.kill(node.pid, 'SIGHUP');
      await Promise.all(running.map((node) => waitUntilHostCanConnect(home, node, probe)));
    }
    const nc = await connectNats(controllerIdentity(home, stack.nats.url));
    try {
      await ensureHostConsumers(nc, hostIds);
    } finally {
      await nc.close();
    }
    return { added, live: true };
  });
}

async function waitUntilHostCanConnect(home: string, node: NatsNode, hostId: string): Promise<void> {
  const deadline = Date.now() + RELOAD_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await hostCanConnect(home, node, hostId)) return;
    await sleep(100);
  }
  const log = logFile(home, node.name);
  throw new StackError(
    `host ${hostId} still cannot connect to ${node.url} ${RELOAD_TIMEOUT_MS / 1000} s after reloading nats-server (pid ${node.pid}); the end of ${log}:\n${logTail(log)}`,
  );
}

/** One short attempt: a connection caught mid-reload can otherwise hang for the full 20 s connect timeout. */
async function hostCanConnect(home: string, node: NatsNode, hostId: string): Promise<boolean> {
  const tls = readStackFile(home)?.tls?.nats;
  try {
    const nc = await connect({
      servers: node.url,
      authenticator: authenticatorFromFile(credsFile(home, { host: hostId })),
      inboxPrefix: inboxPrefix(identityOfHost(hostId)),
      timeout: 2_000,
      reconnect: false,
      ...(tls !== undefined ? { tls: { ...tls } } : {}),
    });
    await nc.close();
    return true;
  } catch {
    return false;
  }
}
