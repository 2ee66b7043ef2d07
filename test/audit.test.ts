import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson, eventHash } from '../activities/audit/hash.js';
import { allowAuditDirectGet, hostChainStore } from '../activities/audit/store.js';
import type { VerifyReport } from '../activities/audit/verify.js';
import { appendToChain } from '../activities/audit/writer.js';
import { createRecordAudit } from '../activities/controller/audit.js';
import { changesOf } from '../activities/audit/diff.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kvm } from '@nats-io/kv';
import { CommandFailedError, type CommandRunner } from '../activities/host/linux/command.js';
import { withAudit } from '../activities/host/linux/host-env.js';
import type { HostDriver, StepContext } from '../activities/host/driver.js';
import { SimDriver } from '../activities/host/sim/driver.js';
import { enrollHosts } from '../workers/dev/enroll.js';
import { resultKey, type StepCommand } from '../schemas/command.js';
import { startHostWorker } from '../workers/host/worker.js';
import {
  AUDIT_CHAINS,
  AuditRecord,
  type AuditDraft,
  type AuditRecordInput,
  type AuditRecorded,
  type StoredAuditEvent,
} from '../schemas/audit.js';
import { BUCKETS, STREAMS, SUBJECTS, hostWorkflowId } from '../schemas/names.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { trailEvents } from './audit-helpers.js';
import { quietLog, runCli, tempDir, campaignStepsYaml, CAMPAIGN_STEPS } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { uniqueHostId } from './helpers/stack.js';

const hosts = simHostIds(3, `au${randomBytes(2).toString('hex')}`);
const spares = simHostIds(2, `aus${randomBytes(2).toString('hex')}`);
const [hostA, hostB, failing] = hosts as [string, string, string];
let nc: NatsConnection;
let jsm: JetStreamManager;
const suite = useSimFleet({
  before: async (stack) => {
    nc = await stack.controllerConnection();
    jsm = await jetstreamManager(nc);
    await allowAuditDirectGet(nc);
  },
  // Two spare hosts outside the campaign take the drained VMs (the controller never sends VMs
  // to a host of the same wave).
  hosts: [...hosts, ...spares],
  speed: 4,
  rebootPauseMs: 400,
  fail: { [failing]: { verify: 'always' } },
});
const { stack, config } = suite;

const planYaml = (targets: string[], extra = '') => `
apiVersion: refit/v1
kind: Campaign
name: audit-rollout
targets:
  hosts: [${targets.join(', ')}]
waves:
  canary: 0
  batchSize: 3
  maxInFlight: 3
${extra}
${campaignStepsYaml()}
`;

const runRollout = (targets: string[], extra = '') => suite.controller.runRollout(planYaml(targets, extra));

/** The host's own chain, in order. */
async function hostChain(hostId: string): Promise<StoredAuditEvent[]> {
  return (await trailEvents(nc)).filter((e) => e.record.subject === AUDIT_CHAINS.host(hostId)).map((e) => e.event);
}

const commandDraft = (hostId: string, n: number): AuditDraft => ({
  eventId: `test-${hostId}/1/command-${n}`,
  at: new Date().toISOString(),
  actor: `host:${hostId}`,
  type: 'step.command',
  hostId,
  step: 'ovs-convert',
  data: { argv: ['ovs-vsctl', 'add-port', 'vmbr0', `port${n}`], exitCode: 0, durationMs: n },
});

/** A chain of `n` events written by the host itself, under its own credentials. */
async function writeHostChain(hostId: string, n: number): Promise<void> {
  await enrollHosts(stack.home, [hostId]);
  const store = hostChainStore(await stack.connectAsHost(hostId));
  let tail = null as Awaited<ReturnType<typeof appendToChain>>['tail'] | null;
  for (let i = 1; i <= n; i++)
    tail = (await appendToChain(store, AUDIT_CHAINS.host(hostId), commandDraft(hostId, i), { tail })).tail ?? null;
}

/**
 * Append these events to a host's chain as someone with the controller's rights can. Appending is
 * all such a writer has: REFIT_AUDIT refuses purges and message deletes (workers/messaging.ts).
 */
async function appendToHostSubject(hostId: string, events: unknown[]): Promise<void> {
  for (const e of events) await jetstream(nc).publish(AUDIT_CHAINS.host(hostId), canonicalJson(e));
}

async function verifyJson(args: string[]): Promise<{ code: number | null; report: VerifyReport; stdout: string }> {
  const out = await runCli(config, ['audit', 'verify', ...args, '--json']);
  return { code: out.code, report: JSON.parse(out.stdout) as VerifyReport, stdout: out.stdout };
}

describe('the audit trail of a simulated rollout', () => {
  let rolloutId: string;

  it('holds every step of every host, written by the host itself, with the workflow ids', async () => {
    const { id, result } = await runRollout([hostA, hostB]);
    rolloutId = id;
    expect(result.state).toBe('completed');
    for (const hostId of [hostA, hostB]) {
      const chain = (await hostChain(hostId)).filter((e) => e.rolloutId === id);
      expect(chain.every((e) => e.actor === `host:${hostId}` && e.hostId === hostId)).toBe(true);
      expect(new Set(chain.map((e) => e.workflowId))).toEqual(new Set([hostWorkflowId(hostId)]));
      expect(chain.filter((e) => e.type === 'step.succeeded').map((e) => e.step)).toEqual(CAMPAIGN_STEPS);
      for (const result of chain.filter((e) => e.type === 'step.succeeded')) {
        const before = chain.filter((e) => e.commandId === result.commandId).map((e) => e.type);
        expect(before).toEqual(['step.requested', 'step.started', 'step.succeeded']);
      }
    }
  });

  it('shows what each step changed: the bridge, the kernel command line, the VF count', async () => {
    const results = (await hostChain(hostA)).filter((e) => e.rolloutId === rolloutId && e.type === 'step.succeeded');
    const changes = (step: string) => changesOf(results.find((e) => e.step === step) as StoredAuditEvent);
    expect(changes('ovs-convert')).toContainEqual({ path: 'bridge.type', before: 'linux', after: 'ovs' });
    expect(changes('sriov-enable')).toEqual(
      expect.arrayContaining([
        { path: 'sriov.bootConfig.iommu', before: null, after: 'intel' },
        { path: 'sriov.bootConfig.numVfs', before: 0, after: 7 },
      ]),
    );
    expect(changes('drain')).toContainEqual(expect.objectContaining({ path: 'cordoned', before: false, after: true }));
  });

  it('answers `refit audit log` and `refit audit show` with the actor and the diff', async () => {
    const log = await runCli(config, [
      'audit',
      'log',
      '--host',
      hostA,
      '--rollout',
      rolloutId,
      '--step',
      'ovs-convert',
    ]);
    expect(log.code, log.stderr).toBe(0);
    const line = log.stdout.split('\n').find((l) => l.includes('step.succeeded'));
    expect(line).toContain(`host:${hostA}`);
    const ref = line?.split(' ')[0] as string;
    const show = await runCli(config, ['audit', 'show', ref]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`actor     host:${hostA}`);
    expect(show.stdout).toContain(`workflow  ${hostWorkflowId(hostA)}`);
    expect(show.stdout).toContain('bridge.type: linux → ovs');

    const json = await runCli(config, ['audit', 'log', '--rollout', rolloutId, '--json']);
    const events = JSON.parse(json.stdout) as StoredAuditEvent[];
    expect(new Set(events.filter((e) => e.hostId !== undefined).map((e) => e.hostId))).toEqual(new Set([hostA, hostB]));
  });

  it('records the rollout and host transitions the workflows make, with their actors', async () => {
    const json = await runCli(config, ['audit', 'log', '--rollout', rolloutId, '--json']);
    const events = JSON.parse(json.stdout) as StoredAuditEvent[];
    const controllerEvents = events.filter((e) => e.chain === `refit.audit.rollout.${rolloutId}`);
    expect(controllerEvents[0]).toMatchObject({
      type: 'rollout.started',
      actor: expect.stringMatching(/^user:.+@/) as unknown,
    });
    expect(controllerEvents.at(-1)).toMatchObject({ type: 'rollout.completed', actor: 'controller' });
    for (const hostId of [hostA, hostB]) {
      const mine = controllerEvents.filter((e) => e.hostId === hostId).map((e) => e.type);
      expect(mine, hostId).toEqual(['host.started', 'host.succeeded']);
    }
    // Each host transition links the end of the host's own chain at that moment.
    const done = controllerEvents.find((e) => e.hostId === hostA && e.type === 'host.succeeded');
    expect(done?.links?.[0]).toMatchObject({ chain: `refit.audit.host.${hostA}` });
  });

  it('records a failed step and the reverts of a rolled-back host', async () => {
    const { id, result } = await runRollout([failing], 'onHostFailure: rollback\nfailureBudget: { maxFailedHosts: 0 }');
    expect(result.hosts[0]?.state).toBe('rolled-back');
    const chain = (await hostChain(failing)).filter((e) => e.rolloutId === id);
    const failed = chain.find((e) => e.type === 'step.failed');
    expect(failed).toMatchObject({ step: 'verify', data: { error: { type: 'StepFailedError' } } });
    const reverted = chain.filter((e) => e.type === 'step.reverted');
    expect(reverted.map((e) => e.step)).toEqual(expect.arrayContaining(['ovs-convert', 'sriov-enable', 'drain']));
    const ovs = reverted.find((e) => e.step === 'ovs-convert') as StoredAuditEvent;
    expect(changesOf(ovs)).toContainEqual({ path: 'bridge.type', before: 'ovs', after: 'linux' });
  });

  it('verifies intact', async () => {
    for (const hostId of hosts) {
      const out = await runCli(config, ['audit', 'verify', '--host', hostId]);
      expect(out.code, out.stdout + out.stderr).toBe(0);
      expect(out.stdout).toMatch(/intact/);
    }
  });
});

const silent = new DefaultLogger('ERROR', () => undefined);

describe('recordAudit, the controller activity', () => {
  const rolloutId = `rec-${randomBytes(3).toString('hex')}`;
  const recordAudit = () => createRecordAudit({ nc, log: quietLog });
  const inActivity = (activityId: string, input: AuditRecordInput) =>
    new MockActivityEnvironment(
      { workflowExecution: { workflowId: rolloutId, runId: 'run-1' }, activityId },
      { logger: silent },
    ).run<[AuditRecordInput], AuditRecorded, ReturnType<typeof recordAudit>>(recordAudit(), input);

  it('chains rollout events with the operator as actor, once per activity however often it is retried', async () => {
    const input: AuditRecordInput = {
      type: 'rollout.approved',
      actor: 'user:alice@laptop',
      rolloutId,
      data: { wave: 1, reason: 'canary looks fine' },
    };
    const first = await inActivity('1', input);
    expect(first).toMatchObject({
      chain: AUDIT_CHAINS.rollout(rolloutId),
      seq: 1,
      duplicate: false,
      eventId: `${rolloutId}/run-1/1`,
    });
    expect(await inActivity('1', input)).toMatchObject({ seq: 1, hash: first.hash, duplicate: true });
    const stored = (await trailEvents(nc)).filter((e) => e.record.subject === AUDIT_CHAINS.rollout(rolloutId));
    expect(stored.map((e) => [e.event.type, e.event.actor, e.event.workflowId])).toEqual([
      ['rollout.approved', 'user:alice@laptop', rolloutId],
    ]);
  });

  it("links the head of the host's own chain to a host transition", async () => {
    const head = (await hostChain(hostA)).at(-1) as StoredAuditEvent;
    const done = await inActivity('2', { type: 'host.succeeded', actor: 'controller', rolloutId, hostId: hostA });
    const event = (await trailEvents(nc)).find((e) => e.event.eventId === done.eventId)?.event;
    expect(event?.links).toEqual([{ chain: AUDIT_CHAINS.host(hostA), seq: head.seq, hash: head.hash }]);
  });

  it('never forks a chain when many write at once', async () => {
    const many = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        inActivity(`w${i}`, { type: 'host.started', actor: 'controller', rolloutId, hostId: hostB }),
      ),
    );
    expect(new Set(many.map((r) => r.seq)).size).toBe(20);
    const { code, report } = await verifyJson(['--rollout', rolloutId]);
    expect(code, JSON.stringify(report.problems)).toBe(0);
    expect(report.chains).toEqual([
      expect.objectContaining({ events: 22, head: expect.objectContaining({ seq: 22 }) }),
    ]);
  });

  it('refuses an event that does not fit the schema, for good', async () => {
    const bad = { type: 'rollout.exploded', actor: 'someone' } as unknown as AuditRecordInput;
    await expect(inActivity('x', bad)).rejects.toMatchObject({ type: 'InvalidAuditEvent', nonRetryable: true });
  });
});

/** The sim, reporting the programs a real driver would run, through the linux and lab drivers' withAudit. */
class ReportingDriver implements HostDriver {
  readonly kind = 'sim' as const;
  constructor(private readonly sim: SimDriver) {}
  facts() {
    return this.sim.facts();
  }
  async runStep(step: StepCommand, ctx: StepContext) {
    const ok: CommandRunner = async (argv) => ({
      argv,
      stdout: 'Bridge vmbr0\n    Port ens6\n',
      stderr: '',
      exitCode: 0,
    });
    await withAudit({ run: ok }, ctx).run(['ovs-vsctl', 'show']);
    const failing: CommandRunner = async (argv) => {
      throw new CommandFailedError({ argv, stdout: '', stderr: 'no such bridge', exitCode: 1 });
    };
    await withAudit({ run: failing }, ctx)
      .run(['ovs-vsctl', 'br-exists', 'vmbr9'])
      .catch(() => undefined);
    ctx.audit?.({ type: 'ovs.confirmed', data: { within: 60_000 } });
    return this.sim.runStep(step, ctx);
  }
}

describe('a host worker', () => {
  it('stores the commands a step ran and its own events before it reports the step done', async () => {
    const hostId = uniqueHostId('aud-cmd');
    await enrollHosts(stack.home, [hostId]);
    const stateDir = tempDir('audit-cmd');
    const sim = await SimDriver.open({ hostId, stateDir, speed: 5 });
    const worker = await startHostWorker({
      hostId,
      nc: await stack.connectAsHost(hostId),
      driver: new ReportingDriver(sim),
      labels: {},
      stateDir,
      log: quietLog,
    });
    try {
      const commandId = `refit-host-${hostId}/run-1/7`;
      await jetstream(nc).publish(
        SUBJECTS.command(hostId),
        JSON.stringify({
          commandId,
          hostId,
          kind: 'ovs-convert',
          params: {},
          rolloutId: 'r-cmd',
          workflowId: `refit-host-${hostId}`,
          issuedAt: new Date().toISOString(),
        }),
      );
      const results = await new Kvm(nc).open(BUCKETS.results);
      for (
        let s = await results.get(resultKey(hostId, commandId));
        s?.json<{ state: string }>().state !== 'succeeded';
      ) {
        await sleep(20);
        s = await results.get(resultKey(hostId, commandId));
      }
      // Read right after the status said done: every event is already there.
      const chain = await hostChain(hostId);
      expect(chain.map((e) => e.type)).toEqual([
        'step.requested',
        'step.started',
        'step.command',
        'step.command',
        'ovs.confirmed',
        'step.succeeded',
      ]);
      expect(chain[2]?.data).toMatchObject({ argv: ['ovs-vsctl', 'show'], exitCode: 0 });
      expect(chain[3]?.data).toMatchObject({
        argv: ['ovs-vsctl', 'br-exists', 'vmbr9'],
        exitCode: 1,
        stderr: 'no such bridge',
      });
      expect(chain.every((e) => e.commandId === commandId && e.rolloutId === 'r-cmd')).toBe(true);
    } finally {
      await worker.stop();
    }
  });
});

describe("a host's credentials", () => {
  const own = uniqueHostId('aud-own');
  const other = uniqueHostId('aud-other');
  let asHost: NatsConnection;

  beforeAll(async () => {
    await writeHostChain(other, 1);
    await writeHostChain(own, 2);
    asHost = await stack.connectAsHost(own);
  });

  async function refused(attempt: Promise<unknown>): Promise<void> {
    const error = await attempt.then(
      () => undefined,
      (e: unknown) => e,
    );
    for (let e = error; e instanceof Error; e = e.cause) if (e instanceof PermissionViolationError) return;
    throw new Error(`expected a permission violation, got ${String(error)}`);
  }

  it("cannot write another host's audit events", async () => {
    const forged = { ...commandDraft(other, 9), actor: `host:${other}` };
    await refused(jetstream(asHost).publish(AUDIT_CHAINS.host(other), JSON.stringify(forged)));
    expect((await hostChain(other)).map((e) => e.seq)).toEqual([1]);
  });

  it("read the end of their own chain only, never another host's", async () => {
    const store = hostChainStore(asHost);
    expect((await store.last(AUDIT_CHAINS.host(own)))?.event).toMatchObject({ seq: 2, hostId: own });
    await refused(store.last(AUDIT_CHAINS.host(other)));
    await refused(
      asHost.request(`$JS.API.DIRECT.GET.${STREAMS.audit}`, JSON.stringify({ last_by_subj: AUDIT_CHAINS.host(other) })),
    );
    await refused(
      asHost.request(
        `$JS.API.STREAM.MSG.GET.${STREAMS.audit}`,
        JSON.stringify({ last_by_subj: AUDIT_CHAINS.host(other) }),
      ),
    );
    await refused(
      asHost.request(
        `$JS.API.CONSUMER.CREATE.${STREAMS.audit}`,
        JSON.stringify({ stream_name: STREAMS.audit, config: {} }),
      ),
    );
  });
});

describe('tampering with the stream', () => {
  const edited = uniqueHostId('aud-edit');
  const deleted = uniqueHostId('aud-del');
  const reordered = uniqueHostId('aud-order');
  const forged = uniqueHostId('aud-forge');
  let exportFile: string;

  beforeAll(async () => {
    for (const h of [edited, deleted, reordered, forged]) await writeHostChain(h, 5);
  });

  it('is found where an event was edited', async () => {
    // Stored again, changed, behind the original, which can no longer be removed.
    const third = (await hostChain(edited)).find((e) => e.seq === 3) as StoredAuditEvent;
    await appendToHostSubject(edited, [{ ...third, data: { ...third.data, argv: ['true'] } }]);
    const { code, report } = await verifyJson(['--host', edited]);
    expect(code).toBe(3);
    expect(report.chains[0]?.firstProblem).toMatchObject({ kind: 'edited', seq: 3, hostId: edited });

    const text = await runCli(config, ['audit', 'verify', '--host', edited]);
    expect(text.code).toBe(3);
    expect(text.stdout).toContain(`BROKEN ${AUDIT_CHAINS.host(edited)} (host ${edited}): first broken link at seq 3`);
  });

  it("cannot be made by deleting or purging, even with the controller's rights", async () => {
    const seqs = (await trailEvents(nc)).filter((e) => e.record.subject === AUDIT_CHAINS.host(deleted));
    const victim = seqs.find((e) => e.event.seq === 2)?.record.streamSeq as number;
    await expect(jsm.streams.deleteMessage(STREAMS.audit, victim)).rejects.toThrow(/not permitted/);
    await expect(jsm.streams.purge(STREAMS.audit, { filter: AUDIT_CHAINS.host(deleted) })).rejects.toThrow(
      /not permitted/,
    );
    const { config: stream } = await jsm.streams.info(STREAMS.audit);
    expect({ deny_delete: stream.deny_delete, deny_purge: stream.deny_purge }).toEqual({
      deny_delete: true,
      deny_purge: true,
    });
    const { code, report } = await verifyJson(['--host', deleted]);
    expect(code, JSON.stringify(report.problems)).toBe(0);
  });

  it('is found where events were stored again in another order', async () => {
    const chain = await hostChain(reordered);
    await appendToHostSubject(reordered, [chain[2]]);
    const { code, report } = await verifyJson(['--host', reordered]);
    expect(code).toBe(3);
    expect(report.chains[0]?.firstProblem).toMatchObject({ kind: 'reordered', seq: 3 });
  });

  it('is found where a well-linked event was appended by someone else', async () => {
    const last = (await hostChain(forged)).at(-1) as StoredAuditEvent;
    const unsealed = {
      ...commandDraft(forged, 6),
      actor: 'controller',
      chain: AUDIT_CHAINS.host(forged),
      seq: 6,
      prevHash: last.hash,
    };
    await jetstream(nc).publish(AUDIT_CHAINS.host(forged), canonicalJson({ ...unsealed, hash: eventHash(unsealed) }));
    const { code, report } = await verifyJson(['--host', forged]);
    expect(code).toBe(3);
    expect(report.chains[0]?.firstProblem).toMatchObject({ kind: 'foreign-writer', seq: 6 });
  });

  it('exports a trail that verifies offline to the same answer', async () => {
    const out = await runCli(config, ['audit', 'export', '--format', 'jsonl']);
    expect(out.code, out.stderr).toBe(0);
    const lines = out.stdout.trim().split('\n');
    expect(lines.every((l) => AuditRecord.safeParse(JSON.parse(l)).success)).toBe(true);
    exportFile = path.join(tempDir('audit-export'), 'export.jsonl');
    await writeFile(exportFile, out.stdout);

    const intact = await verifyJson(['--file', exportFile, '--host', hostA]);
    expect(intact.code, JSON.stringify(intact.report.problems)).toBe(0);
    expect(intact.report.events).toBe((await hostChain(hostA)).length);
    for (const [host, kind, seq] of [
      [edited, 'edited', 3],
      [reordered, 'reordered', 3],
    ] as const) {
      const offline = await verifyJson(['--file', exportFile, '--host', host]);
      expect(offline.code).toBe(3);
      expect(offline.report.chains[0]?.firstProblem).toMatchObject({ kind, seq });
    }
  });

  it('finds an event taken out of the export file, in its chain and in the stream sequence', async () => {
    const lines = (await readFile(exportFile, 'utf8')).trim().split('\n');
    const target = lines.findIndex((l) => {
      const r = AuditRecord.parse(JSON.parse(l));
      return r.subject === AUDIT_CHAINS.host(deleted) && (r.event as { seq?: number }).seq === 2;
    });
    const removed = AuditRecord.parse(JSON.parse(lines[target] as string));
    const file = path.join(tempDir('audit-cut'), 'cut.jsonl');
    await writeFile(file, `${lines.filter((_, i) => i !== target).join('\n')}\n`);
    const chain = await verifyJson(['--file', file, '--host', deleted]);
    expect(chain.code).toBe(3);
    expect(chain.report.chains[0]?.firstProblem).toMatchObject({ kind: 'missing', seq: 3 });
    const whole = await verifyJson(['--file', file]);
    expect(whole.report.problems).toContainEqual(
      expect.objectContaining({ kind: 'deleted', message: expect.stringContaining(String(removed.streamSeq)) }),
    );
  });

  it('finds an edit made to the export file itself', async () => {
    const lines = (await readFile(exportFile, 'utf8')).trim().split('\n');
    const target = lines.findIndex((l) => {
      const r = AuditRecord.parse(JSON.parse(l));
      return r.subject === AUDIT_CHAINS.host(hostA) && (r.event as { type?: string }).type === 'step.succeeded';
    });
    const record = AuditRecord.parse(JSON.parse(lines[target] as string));
    const event = record.event as StoredAuditEvent;
    lines[target] = JSON.stringify({
      ...record,
      event: { ...event, data: { ...event.data, summary: 'nothing happened' } },
    });
    await writeFile(exportFile, `${lines.join('\n')}\n`);
    const { code, report } = await verifyJson(['--file', exportFile, '--host', hostA]);
    expect(code).toBe(3);
    expect(report.chains[0]?.firstProblem).toMatchObject({ kind: 'edited', seq: event.seq });
  });

  it('refuses a file that is not an export', async () => {
    const file = path.join(tempDir('audit-bad'), 'bad.jsonl');
    await writeFile(file, '{"subject": "x"}\nnot json\n');
    const out = await runCli(config, ['audit', 'verify', '--file', file]);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('line 2: not JSON');
  });
});
