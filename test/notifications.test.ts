import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../activities/poll.js';
import { verifyWebhook } from '../activities/controller/webhook-signature.js';
import type { NotificationBody } from '../schemas/notify.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { startRollout } from '../workers/control/rollouts.js';
import { plan, rolloutReaches, runCli, tempDir } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { recordHistory } from './helpers/history.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';

const tag = `ntf${randomBytes(2).toString('hex')}`;
const [first, second, failing] = simHostIds(3, tag) as [string, string, string];
const suite = useSimFleet({ hosts: [first, second, failing], speed: 4, fail: { [failing]: { verify: 'always' } } });
const { config } = suite;

/** The controller runs in this process: it reads `{ env: … }` secrets from this environment. */
const ENV_SECRET = randomBytes(24).toString('hex');
const FILE_SECRET = randomBytes(24).toString('hex');
process.env.REFIT_TEST_WEBHOOK_SECRET = ENV_SECRET;
delete process.env.REFIT_TEST_MISSING_SECRET;
const secretFile = path.join(tempDir('webhook'), 'secret');
writeFileSync(secretFile, `${FILE_SECRET}\n`, { mode: 0o600 });

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  body: NotificationBody;
  at: number;
}
const received: Received[] = [];
let server: Server;
let base: string;
beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      received.push({
        path: req.url ?? '',
        headers: req.headers,
        raw,
        body: JSON.parse(raw) as NotificationBody,
        at: Date.now(),
      });
      res.writeHead(req.url?.startsWith('/down') ? 500 : 204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const to = (p: string, rolloutId: string) => received.filter((r) => r.path === p && r.body.rolloutId === rolloutId);
const signedBy = (secret: string) => (r: Received) =>
  verifyWebhook(secret, r.raw, r.headers['x-refit-signature'] as string | undefined, Math.floor(r.at / 1000));

async function auditOf(
  id: string,
): Promise<{ text: string; events: { type: string; data: Record<string, unknown> }[] }> {
  const out = await runCli(config, ['audit', 'log', '--rollout', id, '--json']);
  expect(out.code).toBe(0);
  return { text: out.stdout, events: JSON.parse(out.stdout) as { type: string; data: Record<string, unknown> }[] };
}

describe('notifications to webhooks', () => {
  it('tell a signed approval-needed and completed; a webhook answering 500 is retried, then given up and audited', async () => {
    const id = `notify-${tag}`;
    const { client } = suite.controller;
    await startRollout(
      client,
      config.taskQueue,
      plan(`apiVersion: refit/v1
kind: Campaign
name: notify
targets: { hosts: [${first}, ${second}] }
waves: { canary: 1, batchSize: 1, maxInFlight: 1 }
approvals: { afterCanary: true }
notify:
  attempts: 3
  backoff: 200ms
  webhooks:
    - name: ops
      url: ${base}/hook/ops?token=abc
      secret: { env: REFIT_TEST_WEBHOOK_SECRET }
    - name: broken
      url: ${base}/down
      secret: { file: ${secretFile} }
      events: [completed]
steps:
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 5 }
`),
      id,
    );
    const asked = await until(() => to('/hook/ops?token=abc', id).find((r) => r.body.event === 'approval-needed'), {
      what: 'the approval-needed notification',
      timeoutMs: 60_000,
      intervalMs: 100,
    });
    expect(signedBy(ENV_SECRET)(asked)).toBe(true);
    expect(signedBy(FILE_SECRET)(asked)).toBe(false);
    expect(asked.headers['x-refit-event']).toBe('approval-needed');
    expect(asked.headers['x-refit-delivery']).toBe(asked.body.deliveryId);
    expect(asked.body).toMatchObject({ rolloutId: id, plan: 'notify', state: 'waiting', detail: 'after-canary' });
    // A body changed after signing, or an old signature, does not verify.
    expect(
      verifyWebhook(
        ENV_SECRET,
        asked.raw.replace('notify', 'notifz'),
        asked.headers['x-refit-signature'] as string,
        Math.floor(asked.at / 1000),
      ),
    ).toBe(false);
    expect(
      verifyWebhook(
        ENV_SECRET,
        asked.raw,
        asked.headers['x-refit-signature'] as string,
        Math.floor(asked.at / 1000) + 3600,
      ),
    ).toBe(false);

    expect((await runCli(config, ['rollout', 'approve', id])).code).toBe(0);
    // The workflow ends once its notifications are out (the status says completed a moment before).
    const end = await rolloutEnd(client.workflow.getHandle(id));
    expect(end.state).toBe('completed');
    expect(end.counts.succeeded).toBe(2);
    await recordHistory(config, id, 'notifications');

    const ops = to('/hook/ops?token=abc', id);
    expect(ops.map((r) => r.body.event)).toEqual(['approval-needed', 'completed']);
    expect(ops.every(signedBy(ENV_SECRET))).toBe(true);
    const down = to('/down', id);
    expect(down.map((r) => r.body.event)).toEqual(['completed', 'completed', 'completed']);
    expect(new Set(down.map((r) => r.body.deliveryId)).size).toBe(1);
    expect(down.every(signedBy(FILE_SECRET))).toBe(true);
    expect(down[2]!.at - down[0]!.at).toBeGreaterThanOrEqual(500); // 200 ms, then 400 ms

    const audit = await until(
      async () => {
        const a = await auditOf(id);
        return a.events.some((e) => e.type === 'notify.failed') ? a : undefined;
      },
      { what: 'the failed notification in the audit trail', timeoutMs: 20_000, intervalMs: 500 },
    );
    const notes = audit.events.filter((e) => e.type.startsWith('notify.'));
    expect(notes.map((e) => [e.type, e.data.event, e.data.webhook])).toEqual(
      expect.arrayContaining([
        ['notify.delivered', 'approval-needed', 'ops'],
        ['notify.delivered', 'completed', 'ops'],
        ['notify.failed', 'completed', 'broken'],
      ]),
    );
    expect(notes.find((e) => e.type === 'notify.failed')?.data).toMatchObject({
      attempts: 3,
      error: 'answered HTTP 500',
      origin: base,
    });
    expect(audit.text).not.toContain(ENV_SECRET);
    expect(audit.text).not.toContain(FILE_SECRET);
    expect(audit.text).not.toContain('token=abc');
  });

  it('tell a host that failed and was rolled back and how the rollout ended; a secret that is not there is audited', async () => {
    const { id, result } = await suite.controller.runRollout(`apiVersion: refit/v1
kind: Campaign
name: notify-fail
targets: { hosts: [${failing}] }
waves: { canary: 0 }
notify:
  attempts: 2
  backoff: 100ms
  webhooks:
    - url: ${base}/hook/fail
      secret: { env: REFIT_TEST_WEBHOOK_SECRET }
    - name: unset
      url: ${base}/hook/unset
      secret: { env: REFIT_TEST_MISSING_SECRET }
steps:
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 5 }
`);
    const hostState = result.hosts[0]!.state;
    expect(['rolled-back', 'failed']).toContain(hostState);
    const told = to('/hook/fail', id);
    expect(told.every(signedBy(ENV_SECRET))).toBe(true);
    const hostEvent = told.find((r) => r.body.hostId === failing);
    expect(hostEvent?.body.event).toBe(hostState === 'rolled-back' ? 'host-rolled-back' : 'host-failed');
    expect(hostEvent?.body.detail).toMatch(/verify/);
    expect(told.at(-1)?.body.event).toBe(result.state === 'completed' ? 'completed' : result.state);
    expect(to('/hook/unset', id)).toEqual([]);
    const audit = await until(
      async () => {
        const a = await auditOf(id);
        return a.events.filter((e) => e.type === 'notify.failed').length >= 2 ? a : undefined;
      },
      { what: 'the unsent notifications in the audit trail', timeoutMs: 20_000, intervalMs: 500 },
    );
    const unsent = audit.events.filter((e) => e.type === 'notify.failed');
    expect(unsent.every((e) => e.data.webhook === 'unset')).toBe(true);
    expect(unsent[0]?.data.error).toMatch(/REFIT_TEST_MISSING_SECRET is not set in the controller's environment/);
    expect(audit.events.filter((e) => e.type === 'notify.delivered').every((e) => e.data.webhook === '#1')).toBe(true);
  });
  it('tell an operator pause with its reason, and a cancel', async () => {
    const id = `notify-pause-${tag}`;
    const { client } = suite.controller;
    await startRollout(
      client,
      config.taskQueue,
      plan(`apiVersion: refit/v1
kind: Campaign
name: notify-pause
targets: { hosts: [${first}, ${second}] }
waves: { canary: 1, batchSize: 1, maxInFlight: 1 }
approvals: { afterCanary: true }
notify:
  webhooks:
    - url: ${base}/hook/pause
      secret: { env: REFIT_TEST_WEBHOOK_SECRET }
      events: [paused, cancelled]
steps:
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 5 }
`),
      id,
    );
    await rolloutReaches(client, id, 'the approval after the canary', (s) => s.pendingApproval !== null);
    expect((await runCli(config, ['rollout', 'pause', id, '--reason', 'change freeze'])).code).toBe(0);
    const paused = await until(() => to('/hook/pause', id).find((r) => r.body.event === 'paused'), {
      what: 'the paused notification',
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    expect(paused.body.detail).toMatch(/^change freeze \(by .+\)$/);
    expect((await runCli(config, ['rollout', 'cancel', id])).code).toBe(0);
    const end = await rolloutEnd(client.workflow.getHandle(id));
    expect(end.state).toBe('cancelled');
    const told = to('/hook/pause', id);
    expect(told.map((r) => r.body.event)).toEqual(['paused', 'cancelled']);
    expect(told.every(signedBy(ENV_SECRET))).toBe(true);
    expect(told[1]?.body.state).toBe('cancelled');
  });
});
