import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { readTrail } from '../activities/audit/read.js';
import { until } from '../activities/poll.js';
import { natsConfigFile } from '../workers/dev/credentials.js';
import { isStackProcess, logFile } from '../workers/dev/stack.js';
import { findTool } from '../workers/dev/tools.js';
import { StoredAuditEvent, type AuditRecord } from '../schemas/audit.js';
import { readStackFile, type StackFile } from '../workers/config.js';

/** Every audit event of the stream (as the controller reads it), with its record. */
export async function trailEvents(nc: NatsConnection): Promise<{ record: AuditRecord; event: StoredAuditEvent }[]> {
  return (await readTrail(nc)).flatMap((record) => {
    const parsed = StoredAuditEvent.safeParse(record.event);
    return parsed.success ? [{ record, event: parsed.data }] : [];
  });
}

/**
 * Stop the test stack's nats-server (SIGTERM: JetStream flushes its store), keep it down for
 * `downMs`, then start it again on the same config and store. stack.json gets the new pid, so the
 * run's teardown stops the new server.
 */
export async function restartNats(home: string, downMs: number): Promise<{ stoppedAt: number; answeringAt: number }> {
  const stack = readStackFile(home) as StackFile;
  process.kill(stack.nats.pid, 'SIGTERM');
  await until(() => !isStackProcess(stack.nats.pid, home), {
    what: 'nats-server to stop',
    timeoutMs: 20_000,
    intervalMs: 100,
  });
  const stoppedAt = Date.now();
  await sleep(downMs);
  const log = openSync(logFile(home, 'nats'), 'a', 0o600);
  let pid: number | undefined;
  try {
    const child = spawn(findTool('nats-server'), ['-c', natsConfigFile(home)], {
      detached: true,
      stdio: ['ignore', log, log],
    });
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(log);
  }
  if (pid === undefined) throw new Error('nats-server did not start again');
  const file = path.join(home, 'stack.json');
  const current = JSON.parse(readFileSync(file, 'utf8')) as StackFile;
  writeFileSync(file, `${JSON.stringify({ ...current, nats: { ...current.nats, pid } }, null, 2)}\n`, { mode: 0o600 });
  await until(
    async () => {
      try {
        return (
          await fetch(`${stack.nats.monitorUrl}/healthz?js-enabled-only=true`, { signal: AbortSignal.timeout(1_000) })
        ).ok;
      } catch {
        return false;
      }
    },
    { what: 'nats-server to answer', timeoutMs: 30_000, intervalMs: 100 },
  );
  return { stoppedAt, answeringAt: Date.now() };
}
