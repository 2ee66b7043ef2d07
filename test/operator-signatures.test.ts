import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { Client } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, Worker } from '@temporalio/worker';
import { beforeAll, describe, expect, it } from 'vitest';
import { signAction } from '../activities/operator-signature.js';
import { BUCKETS } from '../schemas/names.js';
import type { OperatorAction, RolloutStatus } from '../schemas/rollout.js';
import { operatorSignals, operatorUpdates, rolloutStatusQuery } from '../workflows/messages.js';
import { addOperator, generateOperatorKey, operatorSeed } from '../workers/control/operators.js';
import { startRollout } from '../workers/control/rollouts.js';
import { WORKFLOWS_PATH } from '../workers/controller.js';
import { findTool } from '../workers/dev/tools.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { drainUndrainPlan, rolloutReaches, runCli, tempDir } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';

const hosts = simHostIds(4, `osig${randomBytes(2).toString('hex')}`);
const h = (i: number) => hosts[i] as string;
const suite = useSimFleet({ hosts, speed: 4, presenceIntervalMs: 500 });
const { stack, config } = suite;
let client: Client;
let workflowBundle: { code: string };

const keys = tempDir('operator-keys');
const alice = `alice-${randomBytes(2).toString('hex')}`;
const bob = `bob-${randomBytes(2).toString('hex')}`;
const keyFile = (name: string) => path.join(keys, `${name}.nk`);
const seedOf = (name: string) => operatorSeed(keyFile(name)) as string;

const campaign = (targets: string[], extra: string) => drainUndrainPlan('signed-actions', targets, extra);
const APPROVAL = 'waves: { canary: 1, batchSize: 1 }';

/** Start a rollout, signed by `starter` when given. */
async function start(targets: string[], extra: string, starter?: string): Promise<string> {
  const id = `sig-${randomBytes(4).toString('hex')}`;
  const p = campaign(targets, extra);
  await startRollout(
    client,
    config.taskQueue,
    p,
    id,
    starter === undefined
      ? {}
      : {
          startedBy: starter,
          signedStart: signAction(seedOf(starter), starter, { rolloutId: id, action: 'start', args: { plan: p } }),
        },
  );
  return id;
}
const until = (id: string, what: string, ok: (s: RolloutStatus) => boolean) => rolloutReaches(client, id, what, ok);
const result = async (id: string) => await rolloutEnd(client.workflow.getHandle(id));
const signedBy = (name: string, id: string, action: string, args: Record<string, unknown> = {}): OperatorAction => ({
  by: name,
  ...args,
  signature: signAction(seedOf(name), name, { rolloutId: id, action, args }),
});
const cliAs = (name: string, args: string[]) =>
  runCli(config, args, { REFIT_OPERATOR: name, REFIT_OPERATOR_KEY: keyFile(name) });

interface TrailEvent {
  type: string;
  actor: string;
  data: Record<string, unknown>;
}
async function trail(id: string): Promise<TrailEvent[]> {
  const out = await runCli(config, ['audit', 'log', '--rollout', id, '--json']);
  expect(out.code, out.stderr).toBe(0);
  return JSON.parse(out.stdout) as TrailEvent[];
}

/** The rollout's history replays against the workflows; with REFIT_RECORD_HISTORIES=<dir> it is also saved as a fixture. */
async function expectReplays(id: string, fixture: string): Promise<void> {
  const history = await client.workflow.getHandle(id).fetchHistory();
  await Worker.runReplayHistory({ workflowBundle }, history, id);
  const dir = process.env.REFIT_RECORD_HISTORIES;
  if (dir === undefined) return;
  const { stdout } = await promisify(execFile)(
    findTool('temporal'),
    ['workflow', 'show', '--workflow-id', id, '--output', 'json', '--address', config.temporalAddress],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  writeFileSync(path.join(dir, `${fixture}.json`), stdout);
}

beforeAll(async () => {
  client = suite.controller.client;
  workflowBundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') });
  const nc = await stack.controllerConnection();
  for (const name of [alice, bob]) await addOperator(nc, name, generateOperatorKey(keyFile(name)));
});

describe('operator identities', () => {
  it('are enrolled only with the controller credentials: the CLI identity cannot add one', async () => {
    const cli = await stack.connectAsCli();
    await expect(jetstream(cli).publish(`$KV.${BUCKETS.operators}.mallory`, '{}', { timeout: 2_000 })).rejects.toThrow(
      /permission|timeout|no responders/i,
    );
    await expect(new Kvm(cli).open(BUCKETS.operators).then((kv) => kv.get(alice))).rejects.toThrow();
    const out = await runCli(config, [
      'operator',
      'add',
      'mallory',
      '--pubkey',
      'UABC',
      '--creds',
      path.join(config.home, 'creds', 'cli.nk'),
    ]);
    expect(out.code).not.toBe(0);
    const listed = await runCli(config, ['operator', 'list', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    const names = (JSON.parse(listed.stdout) as { name: string }[]).map((o) => o.name);
    expect(names).toEqual(expect.arrayContaining([alice, bob]));
    expect(names).not.toContain('mallory');
  });
});

describe('signed control actions', () => {
  it('a signed approval through refit is verified, and the audit trail records the verified operator', async () => {
    const id = await start(
      [h(0), h(1)],
      `${APPROVAL}\napprovals: { afterCanary: true }\nsignatures: { require: [approve] }`,
    );
    await until(id, 'waiting for approval', (s) => s.pendingApproval !== null);
    const out = await cliAs(bob, ['rollout', 'approve', id, '--reason', 'canary fine']);
    expect(out.code, out.stderr).toBe(0);
    const end = await result(id);
    expect(end.state).toBe('completed');
    expect(end.approvals).toEqual([expect.objectContaining({ by: bob })]);
    const approved = (await trail(id)).filter((e) => e.type === 'rollout.approved');
    expect(approved).toEqual([
      expect.objectContaining({
        actor: `user:${bob}`,
        data: expect.objectContaining({ signature: expect.objectContaining({ operator: bob }) }),
      }),
    ]);
    await expectReplays(id, 'signed-approval');
  });

  it('refuses a missing, forged, unknown or replayed signature with its reason, applies none and audits each as refused', async () => {
    const id = await start(
      [h(2)],
      `waves: { canary: 0 }\nwindows: [{ every: 30d, open: 1h, offset: 29d }]\nsignatures: { require: [pause] }`,
    );
    await until(id, 'waiting for its window', (s) => s.nextWindowAt !== null);
    const handle = client.workflow.getHandle(id);
    const pause = (a: OperatorAction) => handle.executeUpdate(operatorUpdates.pause, { args: [a] });

    await expect(pause({ by: alice })).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/requires pause to be signed/) },
    });
    const forged = { ...signedBy(bob, id, 'pause'), by: alice };
    forged.signature = { ...forged.signature!, operator: alice };
    await expect(pause(forged)).rejects.toMatchObject({ cause: { message: expect.stringMatching(/does not verify/) } });
    const tampered = { ...signedBy(bob, id, 'pause', { reason: 'routine' }), reason: 'something else' };
    await expect(pause(tampered)).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/does not verify/) },
    });
    const other = `carol-${randomBytes(2).toString('hex')}`;
    generateOperatorKey(keyFile(other));
    await expect(pause(signedBy(other, id, 'pause'))).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/not an enrolled operator/) },
    });
    expect((await handle.query(rolloutStatusQuery)).paused).toBeNull();

    const once = signedBy(alice, id, 'pause');
    await pause(once);
    expect((await handle.query(rolloutStatusQuery)).paused).toMatchObject({ by: alice });
    await handle.executeUpdate(operatorUpdates.resume, { args: [{ by: 'someone' }] });
    await expect(pause(once)).rejects.toMatchObject({ cause: { message: expect.stringMatching(/used already/) } });
    expect((await handle.query(rolloutStatusQuery)).paused).toBeNull();

    // The temporal CLI's way, a raw signal without a signature, still works where the plan allows it, recorded as unsigned.
    await handle.signal(operatorSignals.cancel, { by: 'ops-on-call' });
    expect((await result(id)).state).toBe('cancelled');
    const events = await trail(id);
    const refused = events.filter((e) => e.type === 'rollout.action-refused').map((e) => e.data.reason as string);
    expect(refused).toEqual([
      expect.stringMatching(/requires pause to be signed/),
      expect.stringMatching(/does not verify/),
      expect.stringMatching(/does not verify/),
      expect.stringMatching(/not an enrolled operator/),
      expect.stringMatching(/used already/),
    ]);
    expect(events.filter((e) => e.type === 'rollout.paused')).toEqual([
      expect.objectContaining({
        actor: `user:${alice}`,
        data: expect.objectContaining({ signature: expect.objectContaining({ operator: alice }) }),
      }),
    ]);
    expect(events.find((e) => e.type === 'rollout.cancelled' && e.actor === 'user:ops-on-call')?.data.signature).toBe(
      'unsigned',
    );
    await expectReplays(id, 'signed-refusals');
  });
});

describe('four eyes', () => {
  it("refuses the starter's own approval and takes another operator's", async () => {
    const id = await start([h(0), h(3)], `${APPROVAL}\napprovals: { afterCanary: true, distinctFrom: starter }`, alice);
    await until(id, 'waiting for approval', (s) => s.pendingApproval !== null);
    expect((await client.workflow.getHandle(id).query(rolloutStatusQuery)).starter).toMatchObject({ operator: alice });

    const own = await cliAs(alice, ['rollout', 'approve', id]);
    expect(own.code).toBe(1);
    expect(own.stderr).toContain(`four eyes: ${alice} started this rollout and may not approve it`);
    const unsigned = await runCli(config, ['rollout', 'approve', id], { REFIT_OPERATOR: bob });
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toMatch(/requires approve to be signed/);

    const other = await cliAs(bob, ['rollout', 'approve', id]);
    expect(other.code, other.stderr).toBe(0);
    const end = await result(id);
    expect(end).toMatchObject({
      state: 'completed',
      startedBy: alice,
      approvals: [expect.objectContaining({ by: bob })],
    });
    const events = await trail(id);
    expect(events.find((e) => e.type === 'rollout.started')).toMatchObject({
      data: expect.objectContaining({ signature: expect.objectContaining({ operator: alice }) }),
    });
    await expectReplays(id, 'four-eyes');
  });

  it('is refused by refit rollout start without an operator key', async () => {
    const file = path.join(tempDir('four-eyes-plan'), 'plan.yaml');
    writeFileSync(
      file,
      `apiVersion: refit/v1\nkind: Campaign\nname: four-eyes\ntargets: { hosts: [${h(0)}] }\napprovals: { afterCanary: true, distinctFrom: starter }\nsteps:\n  - kind: drain\n  - kind: undrain\n`,
    );
    const out = await runCli(config, ['rollout', 'start', file], { REFIT_OPERATOR_KEY: '' });
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('requires four eyes');
  });
});
