import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { readTrail } from '../activities/audit/read.js';
import { until } from '../activities/poll.js';
import { allowAuditDirectGet } from '../activities/audit/store.js';
import { verifyTrail } from '../activities/audit/verify.js';
import { createRecordAudit } from '../activities/controller/audit.js';
import { startRollout } from '../workers/control/rollouts.js';
import { AUDIT_CHAINS, type AuditRecordInput, type AuditRecorded } from '../schemas/audit.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { restartNats, trailEvents } from './audit-helpers.js';
import { plan, quietLog, tempDir, campaignStepsYaml, CAMPAIGN_STEPS } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';

const hosts = simHostIds(3, `ar${randomBytes(2).toString('hex')}`);
const spares = simHostIds(2, `ars${randomBytes(2).toString('hex')}`);
const stateDir = tempDir('audit-restart');
let nc: NatsConnection;
const suite = useSimFleet({
  before: async (stack) => {
    nc = await stack.controllerConnection();
    await allowAuditDirectGet(nc);
  },
  // Two spare hosts outside the campaign take the drained VMs (the controller never sends VMs
  // to a host of the same wave).
  hosts: [...hosts, ...spares],
  stateDir,
  speed: 1,
  rebootPauseMs: 1_500,
  // A step long enough to be under way across the whole stop of nats-server (see below).
  stepMs: { 'sriov-enable': 3_000 },
});
const { stack, config } = suite;

const planYaml = `
apiVersion: refit/v1
kind: Campaign
name: audit-restart
targets:
  hosts: [${hosts.join(', ')}]
waves:
  canary: 0
  batchSize: 3
  maxInFlight: 3
${campaignStepsYaml('2m')}
`;

/** What Temporal does with a failing activity: the same activity (same id) again, until it succeeds. */
async function withRetries(activityId: string, run: () => Promise<AuditRecorded>): Promise<AuditRecorded> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      if (attempt > 100) throw new Error(`activity ${activityId} kept failing`, { cause: err });
      await sleep(250);
    }
  }
}

describe('NATS restarted in the middle of a rollout', () => {
  it('loses no audit event and forks no chain, on the hosts or on the controller', async () => {
    const rolloutId = `restart-${randomBytes(3).toString('hex')}`;
    await startRollout(suite.controller.client, config.taskQueue, plan(planYaml), rolloutId);

    // The controller writes rollout events throughout, retried like activities are.
    const recordAudit = createRecordAudit({ nc: suite.controller.worker.nc, log: quietLog });
    const logger = new DefaultLogger('ERROR', () => undefined);
    const controllerWrites = (async () => {
      const done: AuditRecorded[] = [];
      for (let i = 0; i < 12; i++) {
        const activityId = String(i);
        const env = () =>
          new MockActivityEnvironment(
            { workflowExecution: { workflowId: rolloutId, runId: 'r1' }, activityId },
            { logger },
          );
        done.push(
          await withRetries(activityId, () =>
            env().run<[AuditRecordInput], AuditRecorded, typeof recordAudit>(recordAudit, {
              type: 'host.started',
              actor: 'controller',
              rolloutId,
              data: { i },
            }),
          ),
        );
        await sleep(400);
      }
      return done;
    })();

    // Restart while a host is in the middle of its long sriov-enable, so that a step finishes
    // while the server is down, however long the server takes to stop on a loaded machine.
    await until(
      async () =>
        (await trailEvents(nc)).some(
          (e) => e.event.rolloutId === rolloutId && e.event.type === 'step.started' && e.event.step === 'sriov-enable',
        ),
      { what: 'a host to start sriov-enable', timeoutMs: 60_000, intervalMs: 100 },
    );
    const outage = await restartNats(stack.home, 4_000);

    const result = await rolloutEnd(suite.controller.client.workflow.getHandle(rolloutId));
    expect(result.state, JSON.stringify(result.hosts)).toBe('completed');
    const written = await controllerWrites;

    const records = await readTrail(nc);
    const events = (await trailEvents(nc)).map((e) => e.event);
    const ours = (chain: string) => verifyTrail(records, { select: (c) => c === chain });
    for (const hostId of hosts) {
      const report = ours(AUDIT_CHAINS.host(hostId));
      expect(report.ok, JSON.stringify(report.problems)).toBe(true);
      const chain = events.filter((e) => e.chain === AUDIT_CHAINS.host(hostId));
      expect(chain.filter((e) => e.type === 'step.succeeded').map((e) => e.step)).toEqual(CAMPAIGN_STEPS);
      // Every start of every command has its request, its start and its result.
      const starts = new Set(chain.map((e) => e.eventId.replace(/\/[^/]+$/, '')));
      for (const start of starts) {
        const kinds = chain.filter((e) => e.eventId.startsWith(`${start}/`)).map((e) => e.type);
        expect(kinds.slice(0, 2), start).toEqual(['step.requested', 'step.started']);
        expect(kinds.at(-1), start).toMatch(/^step\.(succeeded|failed|cancelled|reverted)$/);
      }
      expect(await readdir(path.join(stateDir, hostId, 'audit', 'spool'))).toEqual([]);
    }

    // Steps finished while the server was down: their events were spooled on the hosts, then stored.
    const duringOutage = events.filter(
      (e) =>
        e.rolloutId === rolloutId &&
        e.actor.startsWith('host:') &&
        Date.parse(e.at) > outage.stoppedAt &&
        Date.parse(e.at) < outage.answeringAt,
    );
    expect(duringOutage.length).toBeGreaterThan(0);

    const rolloutChain = AUDIT_CHAINS.rollout(rolloutId);
    expect(ours(rolloutChain).ok, JSON.stringify(ours(rolloutChain).problems)).toBe(true);
    const stored = events.filter((e) => e.chain === rolloutChain);
    // The chain holds this test's twelve events, in order, between the workflows' own transitions,
    // at positions 1..n with no gap and no duplicate.
    expect(stored.filter((e) => e.data.i !== undefined).map((e) => e.data.i)).toEqual(
      Array.from({ length: 12 }, (_, i) => i),
    );
    expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: stored.length }, (_, i) => i + 1));
    expect(written.map((w) => w.seq)).toEqual([...written.map((w) => w.seq)].sort((a, b) => a - b));
    expect(stored.map((e) => e.type)).toEqual(expect.arrayContaining(['rollout.started', 'rollout.completed']));
    // No event of this rollout or of its hosts is stored twice (the whole trail is shared with other
    // test files, some of which append tampered copies on purpose).
    const mine = events.filter(
      (e) => e.rolloutId === rolloutId || hosts.some((hostId) => e.chain === AUDIT_CHAINS.host(hostId)),
    );
    expect(new Set(mine.map((e) => e.eventId)).size).toBe(mine.length);
  }, 180_000);
});
