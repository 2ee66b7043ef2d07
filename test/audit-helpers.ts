import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { readTrail } from '../activities/audit/read.js';
import { until } from '../activities/poll.js';
import { isStackProcess, restartStackServer } from '../workers/dev/stack.js';
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
  // The stack's own restart: same config and store, and the new pid recorded everywhere stack.json
  // keeps one (the server and its node), so enrolment reloads and the run's teardown reach it.
  await restartStackServer(home, 'nats');
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
