import { beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import { ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Worker } from '@temporalio/worker';
import { createRecordAudit } from '../activities/controller/audit.js';
import type { ControllerActivities } from '../schemas/activities.js';
import type { AuditRecordInput } from '../schemas/audit.js';
import { hostWorkflowId } from '../schemas/names.js';
import type { OperatorAction, RolloutStatus } from '../schemas/rollout.js';
import { operatorSignals, operatorUpdates, rolloutStatusQuery } from '../workflows/messages.js';
import { startRollout } from '../workers/control/rollouts.js';
import { WORKFLOWS_PATH } from '../workers/controller.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { drainUndrainPlan, quietLog, rolloutReaches, runCli, tempDir } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';

const hosts = simHostIds(4, `op${randomBytes(2).toString('hex')}`);
const h = (i: number) => hosts[i] as string;
const suite = useSimFleet({ hosts, stateDir: tempDir('operator-sim'), speed: 4, presenceIntervalMs: 500 });
const { stack, config } = suite;
let client: Client;
/** The workflows as they are in the source tree (the controller above runs the bundle in dist/). */
let workflowBundle: { code: string };

const campaign = drainUndrainPlan;
/** The patch that puts an operator action's audit event before its change (workflows/rollout.ts). */
const AUDIT_FIRST = 'operator-actions-audited-first';
/** A canary, then a wave of one host behind an approval. */
const APPROVAL_AFTER_CANARY = 'waves: { canary: 1, batchSize: 1 }\napprovals: { afterCanary: true }';
/** A window weeks away: the rollout waits, and every action meets a running rollout that starts no host. */
const WINDOW_WEEKS_AWAY = 'waves: { canary: 0 }\nwindows: [{ every: 30d, open: 1h, offset: 29d }]';

async function start(targets: string[], extra: string, taskQueue = config.taskQueue): Promise<string> {
  const id = `op-${randomBytes(4).toString('hex')}`;
  await startRollout(client, taskQueue, campaign('operator-actions', targets, extra), id);
  return id;
}
const status = (id: string) => client.workflow.getHandle(id).query(rolloutStatusQuery);
const result = async (id: string) => await rolloutEnd(client.workflow.getHandle(id));

const until = (id: string, what: string, ok: (s: RolloutStatus) => boolean) => rolloutReaches(client, id, what, ok);

/** The built `refit` against the test stack, as the operator named `operator` (REFIT_OPERATOR). */
const refitAs = (operator: string, args: string[]) => runCli(config, args, { REFIT_OPERATOR: operator });

interface TrailEvent {
  seq: number;
  type: string;
  actor: string;
  hostId?: string;
}
/** The rollout's audit trail, as `refit audit log` prints it. */
async function trail(id: string): Promise<TrailEvent[]> {
  const out = await refitAs('test', ['audit', 'log', '--rollout', id, '--json']);
  expect(out.code, out.stderr).toBe(0);
  return JSON.parse(out.stdout) as TrailEvent[];
}

/**
 * Where, in the rollout's Temporal history, its audit event of `type` was stored, a host's workflow
 * was started, and the audit-first patch marker was recorded (-1: nowhere).
 */
async function historyOrder(
  id: string,
  type: string,
  hostId: string,
): Promise<{ marked: number; audited: number; started: number }> {
  const events = (await client.workflow.getHandle(id).fetchHistory()).events ?? [];
  const scheduled = events.find((e) => {
    const a = e.activityTaskScheduledEventAttributes;
    const payload = a?.input?.payloads?.[0];
    if (a?.activityType?.name !== 'recordAudit' || !payload) return false;
    return defaultPayloadConverter.fromPayload<AuditRecordInput>(payload).type === type;
  });
  const marked = events.findIndex((e) =>
    Object.values(e.markerRecordedEventAttributes?.details ?? {}).some((d) =>
      (d.payloads ?? []).some((p) => JSON.stringify(defaultPayloadConverter.fromPayload(p)).includes(AUDIT_FIRST)),
    ),
  );
  const audited = events.findIndex(
    (e) =>
      scheduled?.eventId != null &&
      String(e.activityTaskCompletedEventAttributes?.scheduledEventId) === String(scheduled.eventId),
  );
  const started = events.findIndex(
    (e) => e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId === hostWorkflowId(hostId),
  );
  return { marked, audited, started };
}

/** The rollout's history, audit-first actions and their patch marker included, replays against the workflows. */
async function expectReplays(id: string): Promise<void> {
  const history = await client.workflow.getHandle(id).fetchHistory();
  await Worker.runReplayHistory({ workflowBundle }, history, id);
}

beforeAll(async () => {
  client = suite.controller.client;
  workflowBundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') });
});

describe('an approval without a valid operator name', () => {
  it('is refused by update, by signal and by the CLI: the rollout stays at its gate and records no approval', async () => {
    const id = await start([h(0), h(1)], APPROVAL_AFTER_CANARY);
    await until(id, 'waiting for approval', (s) => s.pendingApproval !== null);
    const handle = client.workflow.getHandle(id);

    const invalid: unknown[] = [
      '',
      '   ',
      ' alice',
      'alice\nbob',
      'alice\u001b[2J',
      'alice\u202egro',
      'x'.repeat(201),
      7,
    ];
    for (const by of [...invalid, undefined]) {
      const action = (by === undefined ? {} : { by }) as OperatorAction;
      await expect(
        handle.executeUpdate(operatorUpdates.approve, { args: [action] }),
        `by: ${JSON.stringify(by)}`,
      ).rejects.toMatchObject({ cause: { message: expect.stringMatching(/operator name/) } });
    }

    await handle.signal(operatorSignals.approve, { by: '' });
    const ignored = await until(id, 'the signal ignored', (s) => s.message?.startsWith('ignored a signal') ?? false);
    expect(ignored.message).toBe('ignored a signal: approve refused: the operator name (by) is empty');

    const cli = await refitAs('', ['rollout', 'approve', id]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toContain('approve not sent: REFIT_OPERATOR is empty');

    await sleep(1_500);
    const after = await status(id);
    expect(after).toMatchObject({
      state: 'waiting',
      approvals: [],
      pendingApproval: { gate: 'after-canary', wave: 1 },
    });
    expect(after.counts).toMatchObject({ succeeded: 1, pending: 1, running: 0 });
    expect((await trail(id)).map((e) => e.type)).not.toContain('rollout.approved');

    await handle.executeUpdate(operatorUpdates.cancel, { args: [{ by: 'test' }] });
    expect((await result(id)).state).toBe('cancelled');
    await expectReplays(id);
  });
});

describe('a valid approval', () => {
  it('is stored in the audit trail before the next wave starts', async () => {
    const id = await start([h(2), h(3)], APPROVAL_AFTER_CANARY);
    await until(id, 'waiting for approval', (s) => s.pendingApproval !== null);
    const cli = await refitAs('alice@ops-laptop', ['rollout', 'approve', id, '--reason', 'canary looks fine']);
    expect(cli.code, cli.stderr).toBe(0);
    const end = await result(id);
    expect(end.state).toBe('completed');
    expect(end.approvals).toEqual([expect.objectContaining({ gate: 'after-canary', by: 'alice@ops-laptop' })]);

    // The rollout's own history: the approval's audit activity completed before the next wave's host was started.
    const order = await historyOrder(id, 'rollout.approved', h(3));
    expect(order.marked).toBeGreaterThan(0);
    expect(order.audited).toBeGreaterThan(order.marked);
    expect(order.started).toBeGreaterThan(order.audited);

    const events = await trail(id);
    const approved = events.filter((e) => e.type === 'rollout.approved');
    expect(approved).toEqual([expect.objectContaining({ actor: 'user:alice@ops-laptop' })]);
    const nextWave = events.find((e) => e.type === 'host.started' && e.hostId === h(3));
    expect(nextWave?.seq).toBeGreaterThan(approved[0]?.seq ?? Infinity);
    await expectReplays(id);
  });
});

describe('an action whose audit event cannot be stored', () => {
  /** A controller whose audit store refuses `rollout.paused` for good, and one host in its inventory. */
  async function controllerRefusingPauses(taskQueue: string): Promise<{ stop(): Promise<void> }> {
    const nc = await stack.controllerConnection();
    const recordAudit = createRecordAudit({ nc, log: quietLog });
    const activities: Pick<ControllerActivities, 'recordAudit' | 'resolveTargets'> = {
      recordAudit: async (input) => {
        if (input.type === 'rollout.paused')
          throw ApplicationFailure.nonRetryable('the audit store refused the event', 'InvalidAuditEvent');
        return recordAudit(input);
      },
      resolveTargets: async () => ({ hostIds: [h(0)], missing: [], excluded: [], labels: {} }),
    };
    const connection = await NativeConnection.connect({ address: config.temporalAddress });
    const worker = await Worker.create({ connection, taskQueue, workflowBundle, activities });
    const running = worker.run();
    return {
      async stop() {
        worker.shutdown();
        await running;
        await connection.close();
      },
    };
  }

  it('is not applied: the update fails saying so, a signal is noted as not applied, and the CLI says not applied', async () => {
    const taskQueue = `${config.taskQueue}-refusing`;
    const refusing = await controllerRefusingPauses(taskQueue);
    try {
      const id = await start([h(0)], WINDOW_WEEKS_AWAY, taskQueue);
      await until(id, 'waiting for its window', (s) => s.nextWindowAt !== null);
      const handle = client.workflow.getHandle(id);

      await expect(
        handle.executeUpdate(operatorUpdates.pause, { args: [{ by: 'alice', reason: 'change freeze' }] }),
      ).rejects.toMatchObject({
        cause: {
          type: 'ActionNotAudited',
          message: 'its audit event could not be stored: the audit store refused the event',
        },
      });
      expect((await status(id)).paused).toBeNull();

      await handle.signal(operatorSignals.pause, { by: 'alice' });
      const noted = await until(id, 'the signal noted', (s) => s.message?.startsWith('ignored a signal') ?? false);
      expect(noted.message).toBe(
        'ignored a signal: pause not applied: its audit event could not be stored: the audit store refused the event',
      );
      expect(noted.paused).toBeNull();

      const cli = await refitAs('alice', ['rollout', 'pause', id]);
      expect(cli.code).toBe(1);
      expect(cli.stderr).toContain(
        'pause not applied: its audit event could not be stored: the audit store refused the event',
      );
      expect((await status(id)).paused).toBeNull();

      await handle.executeUpdate(operatorUpdates.cancel, { args: [{ by: 'alice' }] });
      const end = await result(id);
      expect(end).toMatchObject({ state: 'cancelled', cancelled: { by: 'alice' } });
      expect((await trail(id)).map((e) => e.type)).toEqual([
        'rollout.started',
        'rollout.cancelled',
        'rollout.cancelled',
      ]);
    } finally {
      await refusing.stop();
    }
  });
});
