import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { findTool } from '../workers/dev/tools.js';
import type { Client } from '@temporalio/client';
import { hostWorkflowId } from '../schemas/names.js';
import type { RolloutStatus } from '../schemas/rollout.js';
import { startRollout } from '../workers/control/rollouts.js';
import { operatorUpdates, hostUpdates, rolloutStatusQuery } from '../workflows/messages.js';
import { startSimFleet, simHostIds, type SimFleetOptions } from '../workers/sim/fleet.js';
import { useSimFleet } from './helpers/fleet.js';
import { plan, quietLog, rolloutReaches, runCli, tempDir, waitForOnline } from './helpers/controller.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';

const hosts = simHostIds(16, `rc${randomBytes(2).toString('hex')}`);
const h = (i: number) => hosts[i] as string;
const suite = useSimFleet({
  hosts,
  stateDir: tempDir('control-sim'),
  speed: 4,
  presenceIntervalMs: 500,
  fail: { [h(0)]: { verify: 'always' }, [h(1)]: { verify: 'always' }, [h(4)]: { verify: 'once' } },
});
const { stack, config } = suite;
let client: Client;
beforeAll(() => {
  client = suite.controller.client;
});

const STEPS = `
steps:
  - kind: drain
  - kind: ovs-convert
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 5 }
  - kind: undrain
`;
const campaign = (targets: string[], extra: string) =>
  plan(
    `apiVersion: refit/v1\nkind: Campaign\nname: control\ntargets: { hosts: [${targets.join(', ')}] }\n${extra}\n${STEPS}`,
  );

async function start(targets: string[], extra: string, opts: { historyLimit?: number } = {}): Promise<string> {
  const id = `ctl-${randomBytes(4).toString('hex')}`;
  await startRollout(client, config.taskQueue, campaign(targets, extra), id, opts);
  return id;
}
const status = (id: string) => client.workflow.getHandle(id).query(rolloutStatusQuery);
const result = async (id: string) => await rolloutEnd(client.workflow.getHandle(id));

const until = (id: string, what: string, ok: (s: RolloutStatus) => boolean) => rolloutReaches(client, id, what, ok);

/** When each host workflow of these hosts ran, from Temporal's own records. */
async function spans(hostIds: string[]): Promise<{ hostId: string; start: number; end: number }[]> {
  const out: { hostId: string; start: number; end: number }[] = [];
  for (const hostId of hostIds) {
    for await (const wf of client.workflow.list({ query: `WorkflowId = '${hostWorkflowId(hostId)}'` })) {
      out.push({ hostId, start: wf.startTime.getTime(), end: wf.closeTime?.getTime() ?? Infinity });
    }
  }
  return out;
}
/** The runs Temporal recorded for a workflow id (one more per continue-as-new), once it lists `expected` or after 10 s. */
async function recordedRuns(id: string, expected: number): Promise<number> {
  let runs = 0;
  for (let i = 0; i < 100 && runs !== expected; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    runs = 0;
    for await (const _ of client.workflow.list({ query: `WorkflowId = '${id}'` })) runs += 1;
  }
  return runs;
}
const mostAtOnce = (s: { start: number; end: number }[]) =>
  Math.max(0, ...s.map((a) => s.filter((b) => b.start <= a.start && b.end > a.start).length));

/**
 * Simulated hosts of a test's own, paced as it needs (the suite's run at speed 4), online before it
 * goes on and stopped when the test ends.
 */
async function ownFleet(prefix: string, count: number, pace: Pick<SimFleetOptions, 'speed' | 'stepMs'>) {
  const hostIds = simHostIds(count, `${prefix}${randomBytes(2).toString('hex')}`);
  const fleet = await startSimFleet({
    home: stack.home,
    natsUrl: stack.natsUrl,
    hosts: hostIds,
    stateDir: tempDir(`${prefix}-sim`),
    ...pace,
    presenceIntervalMs: 500,
    log: quietLog,
  });
  onTestFinished(() => fleet.stop());
  await waitForOnline(config, hostIds);
  return { hostIds, fleet };
}

describe('the failure budget', () => {
  it('pauses the rollout when spent, without aborting hosts in flight; resume continues; cancel ends it cleanly', async () => {
    const id = await start(
      [h(0), h(2), h(1), h(3)],
      'waves: { canary: 0, batchSize: 4, maxInFlight: 1 }\nfailureBudget: { maxFailedHosts: 0 }',
    );
    const paused = await until(id, 'paused by the budget', (s) => s.state === 'paused');
    expect(paused.paused?.reason).toMatch(/failure budget spent: 1 hosts failed, 0 allowed/);
    expect(paused.hosts.map((x) => x.state)).toEqual(['rolled-back', 'pending', 'pending', 'pending']);
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await status(id)).counts.pending).toBe(3); // nothing starts while paused

    await client.workflow.getHandle(id).executeUpdate(operatorUpdates.resume, { args: [{ by: 'alice' }] });
    const again = await until(
      id,
      'paused again at the next failure',
      (s) => s.state === 'paused' && s.failureBudget.failed === 2,
    );
    expect(again.hosts.find((x) => x.hostId === h(2))?.state).toBe('succeeded');

    const cancel = await runCli(config, ['rollout', 'cancel', id, '--reason', 'enough']);
    expect(cancel.code, cancel.stderr).toBe(0);
    const end = await result(id);
    expect(end.state).toBe('cancelled');
    expect(end.cancelled?.reason).toBe('enough');
    expect(end.hosts.find((x) => x.hostId === h(3))).toMatchObject({ state: 'skipped', error: 'rollout cancelled' });
  });

  it('refuses operator actions that do not apply, with the reason', async () => {
    // A window weeks away keeps the rollout waiting, so every action below meets a running rollout.
    const id = await start([h(5)], 'waves: { canary: 0 }\nwindows: [{ every: 30d, open: 1h, offset: 29d }]');
    await until(id, 'waiting for its window', (s) => s.nextWindowAt !== null);
    await expect(
      client.workflow.getHandle(id).executeUpdate(operatorUpdates.resume, { args: [{ by: 'bob' }] }),
    ).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/not paused/) },
    });
    const out = await runCli(config, ['rollout', 'approve', id]);
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('no approval is pending');
    const skip = await runCli(config, ['rollout', 'skip-host', id, 'not-in-it']);
    expect(skip.stderr).toContain('host not-in-it is not in this rollout');
    expect((await runCli(config, ['rollout', 'cancel', id])).code).toBe(0);
    expect((await result(id)).state).toBe('cancelled');
    const late = await runCli(config, ['rollout', 'pause', id]);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/no running rollout|has ended/);
  });
});

describe('hold, retry and approval', () => {
  it('holds a failed canary drained for a person; a retry by the operator succeeds', async () => {
    const id = await start([h(4), h(6)], 'waves: { canary: 1, batchSize: 1 }\nonHostFailure: hold');
    const held = await until(id, 'canary held', (s) => s.state === 'paused');
    expect(held.hosts[0]).toMatchObject({ hostId: h(4), state: 'held' });
    expect(suite.fleet.hosts.get(h(4))?.snapshot()).toMatchObject({ cordoned: true, vms: [] });

    await client.workflow.getHandle(id).executeUpdate(hostUpdates.retryHost, { args: [{ by: 'carol', hostId: h(4) }] });
    await client.workflow.getHandle(id).executeUpdate(operatorUpdates.resume, { args: [{ by: 'carol' }] });
    const end = await result(id);
    expect(end.state).toBe('completed');
    expect(end.hosts.map((x) => [x.hostId, x.state, x.attempts])).toEqual([
      [h(4), 'succeeded', 2],
      [h(6), 'succeeded', 1],
    ]);
    expect(suite.fleet.hosts.get(h(4))?.snapshot().cordoned).toBe(false);
  });

  it('waits for approval after the canary and records who gave it', async () => {
    const id = await start([h(7), h(8)], 'waves: { canary: 1, batchSize: 1 }\napprovals: { afterCanary: true }');
    const waiting = await until(id, 'waiting for approval', (s) => s.pendingApproval !== null);
    expect(waiting.state).toBe('waiting');
    expect(waiting.counts).toMatchObject({ succeeded: 1, pending: 1 });
    const out = await runCli(config, ['rollout', 'approve', id]);
    expect(out.code, out.stderr).toBe(0);
    const end = await result(id);
    expect(end.state).toBe('completed');
    expect(end.approvals).toEqual([
      expect.objectContaining({ gate: 'after-canary', wave: 1, by: expect.stringContaining('@') }),
    ]);
    const audit = await runCli(config, ['audit', 'log', '--rollout', id, '--json']);
    const approved = (JSON.parse(audit.stdout) as { type: string; actor: string }[]).filter(
      (e) => e.type === 'rollout.approved',
    );
    expect(approved).toEqual([expect.objectContaining({ actor: `user:${end.approvals[0]?.by}` })]);
  });
});

describe('pauses between waves', () => {
  it('waits the given time after a wave before the next one starts', async () => {
    const id = await start([h(7), h(8)], 'waves: { canary: 1, batchSize: 1, pauseBetweenWaves: 3s }');
    const waiting = await until(id, 'pausing between waves', (s) => s.message?.startsWith('pausing 3s') ?? false);
    expect(waiting.state).toBe('waiting');
    expect((await result(id)).state).toBe('completed');
    const [canary, next] = (await spans([h(7), h(8)]))
      .filter((s) => s.start >= Date.parse(waiting.startedAt))
      .sort((a, b) => a.start - b.start);
    expect(next!.start - canary!.end).toBeGreaterThanOrEqual(3_000);
  });
});

describe('limits', () => {
  it('never has more hosts of one rack in flight than the plan allows', async () => {
    const targets = [h(9), h(10), h(11), h(12)]; // all in rack r1
    const id = await start(
      targets,
      'waves: { canary: 0, batchSize: 4, maxInFlight: 4 }\nlimits: { perLabel: { rack: 2 } }',
    );
    expect((await result(id)).state).toBe('completed');
    expect(mostAtOnce(await spans(targets))).toBe(2);
  });

  it('keeps two rollouts together under the fleet-wide limit, measured from what ran', async () => {
    const a = [h(9), h(10), h(11)];
    const b = [h(12), h(13), h(14)];
    const extra = 'waves: { canary: 0, batchSize: 3, maxInFlight: 3 }\nlimits: { fleetWide: 2 }';
    const [ra, rb] = await Promise.all([start(a, extra), start(b, extra)]);
    const [ea, eb] = await Promise.all([result(ra), result(rb)]);
    expect([ea.state, eb.state]).toEqual(['completed', 'completed']);
    const since = Math.min(Date.parse(ea.startedAt), Date.parse(eb.startedAt));
    const ran = (await spans([...a, ...b])).filter((s) => s.start >= since);
    expect(ran).toHaveLength(6);
    expect(mostAtOnce(ran)).toBeLessThanOrEqual(2);
  });

  it('never works on one host from two rollouts at the same time', async () => {
    const shared = h(15);
    const extra = 'waves: { canary: 0, batchSize: 2, maxInFlight: 2 }\nonBusyHost: wait';
    const [ra, rb] = await Promise.all([start([h(13), shared], extra), start([shared, h(14)], extra)]);
    const [ea, eb] = await Promise.all([result(ra), result(rb)]);
    expect([ea.state, eb.state]).toEqual(['completed', 'completed']);
    const runs = await spans([shared]);
    expect(runs.length).toBeGreaterThanOrEqual(2);
    expect(mostAtOnce(runs)).toBe(1);
  });
});

describe('maintenance windows', () => {
  it('starts hosts only inside a window with room for them', async () => {
    const targets = [h(2), h(3), h(5)];
    // Start where no host may start (3–6 s into a 10 s period), so the rollout must wait for the
    // next window; started in the first 2 s, fast hosts could all finish before anyone looked.
    while (Date.now() % 10_000 < 3_000 || Date.now() % 10_000 > 6_000) await new Promise((r) => setTimeout(r, 100));
    const id = await start(
      targets,
      'waves: { canary: 0, batchSize: 3, maxInFlight: 1 }\nwindows: [{ every: 10s, open: 5s }]\nhostDuration: 3s',
    );
    const waiting = await until(id, 'waiting for a window', (s) => s.nextWindowAt !== null);
    expect(Date.parse(waiting.nextWindowAt ?? '') % 10_000).toBe(0);
    expect((await result(id)).state).toBe('completed');
    const started = (await spans(targets)).filter((s) => s.start >= Date.parse(waiting.startedAt));
    expect(started).toHaveLength(3);
    // Allowed start times: the first 2 s of each 10 s period (5 s open, 3 s needed), plus 1.5 s of
    // slack between the workflow's decision and the child's recorded start on a loaded machine.
    for (const s of started) expect(s.start % 10_000, s.hostId).toBeLessThan(3_500);
  });
});

describe('continue-as-new', () => {
  it('carries a pause across a new run, and resumes exactly where it was', async () => {
    // Hosts of their own whose verify takes 2 s: the pause must land while a host is in flight. At the
    // suite's speed a host took ~0.4 s, and one that finished between the poll and the pause would
    // have let the rollout continue as new with nothing in flight before the pause came.
    const { hostIds: targets } = await ownFleet('can', 4, { stepMs: { verify: 2_000 } });
    // A tiny history limit: the rollout continues as new after each host it finishes.
    const id = await start(targets, 'waves: { canary: 0, batchSize: 4, maxInFlight: 1 }', { historyLimit: 16 });
    await until(id, 'a second run with a host in flight', (s) => s.runs >= 1 && s.counts.running === 1);
    const paused = await client.workflow
      .getHandle(id)
      .executeUpdate(operatorUpdates.pause, { args: [{ by: 'dave', reason: 'lunch' }] });
    expect(paused.counts.running, 'a host in flight when the pause came').toBe(1);
    // The host in flight finishes; the rollout then continues as new, still paused, and starts nothing.
    const after = await until(id, 'a new run while paused', (s) => s.runs > paused.runs);
    expect(await recordedRuns(id, after.runs + 1)).toBe(after.runs + 1);
    expect(after.state).toBe('paused');
    expect(after.paused).toMatchObject({ by: 'dave', reason: 'lunch' });
    expect(after.counts).toMatchObject({
      running: 0,
      succeeded: paused.counts.succeeded + paused.counts.running,
      pending: paused.counts.pending,
    });
    await client.workflow.getHandle(id).executeUpdate(operatorUpdates.resume, { args: [{ by: 'dave' }] });
    const end = await result(id);
    expect(end.state).toBe('completed');
    expect(end.runs).toBeGreaterThan(after.runs);
    expect(await recordedRuns(id, end.runs + 1)).toBe(end.runs + 1);
    expect(end.hosts.map((x) => [x.state, x.attempts])).toEqual(targets.map(() => ['succeeded', 1]));
  });
});

describe('cancel with onCancel: rollback', () => {
  it('stops the hosts in flight after their running step and undoes what they did', async () => {
    const { hostIds: slow, fleet: slowFleet } = await ownFleet('slow', 2, { speed: 0.2 });
    const id = await start(slow, 'waves: { canary: 0, batchSize: 2, maxInFlight: 2 }\nonCancel: rollback');
    // Wait until both hosts have drained (their VMs are away), then cancel mid-campaign.
    for (let i = 0; i < 300 && !slow.every((x) => slowFleet.hosts.get(x)?.snapshot().cordoned); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(slow.map((x) => slowFleet.hosts.get(x)?.snapshot().cordoned)).toEqual([true, true]);
    await client.workflow
      .getHandle(id)
      .executeUpdate(operatorUpdates.cancel, { args: [{ by: 'erin', reason: 'wrong plan' }] });
    const end = await result(id);
    expect(end.state).toBe('cancelled');
    for (const hostId of slow) {
      // The whole plan is one run (no reboot in it) of ~8 s here, and the cancel came ~2 s in, after the
      // drain: the host stopped there. The run's last step, undrain (due ~6 s in), never ran.
      expect(slowFleet.hosts.get(hostId)?.snapshot().effects, hostId).not.toHaveProperty('undrain');
      expect(end.hosts.find((x) => x.hostId === hostId)).toMatchObject({
        state: 'rolled-back',
        error: 'rollout cancelled by erin',
      });
      expect(slowFleet.hosts.get(hostId)?.snapshot()).toMatchObject({
        cordoned: false,
        away: {},
        bridge: { type: 'linux' },
      });
    }
  });
});

describe('the standard temporal CLI', () => {
  const temporalCli = (...args: string[]) =>
    promisify(execFile)(findTool('temporal'), [...args, '--address', stack.temporalAddress, '--output', 'json']).then(
      (r) => r.stdout,
    );

  it('pauses, inspects, resumes and cancels a rollout with its named updates, signals and query', async () => {
    const id = await start([h(5)], 'waves: { canary: 0 }\nwindows: [{ every: 30d, open: 1h, offset: 29d }]');
    await until(id, 'waiting for its window', (s) => s.nextWindowAt !== null);
    await temporalCli(
      'workflow',
      'update',
      'execute',
      '--workflow-id',
      id,
      '--name',
      'pause',
      '--input',
      '{"by":"ops@temporal-cli","reason":"change freeze"}',
    );
    const queried = JSON.parse(await temporalCli('workflow', 'query', '--workflow-id', id, '--name', 'status')) as {
      queryResult: RolloutStatus[];
    };
    expect(queried.queryResult[0]?.paused).toMatchObject({ by: 'ops@temporal-cli', reason: 'change freeze' });
    await temporalCli(
      'workflow',
      'signal',
      '--workflow-id',
      id,
      '--name',
      'resume',
      '--input',
      '{"by":"ops@temporal-cli"}',
    );
    await until(id, 'resumed', (s) => s.paused === null);
    await temporalCli(
      'workflow',
      'signal',
      '--workflow-id',
      id,
      '--name',
      'cancel',
      '--input',
      '{"by":"ops@temporal-cli"}',
    );
    expect((await result(id)).cancelled).toMatchObject({ by: 'ops@temporal-cli' });
  });
});
