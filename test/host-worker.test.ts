import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { pino } from 'pino';
import { z } from 'zod';
import { readStateFile } from '../activities/files.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SimDriver, type SimDriverOptions } from '../activities/host/sim/driver.js';
import { StepFailedError, WorkerStoppingError, type HostDriver, type StepContext } from '../activities/host/driver.js';
import { controllerConfirmation } from '../activities/host/linux/confirm.js';
import { BucketFollower } from '../activities/controller/bucket-follower.js';
import { createDispatchStep } from '../activities/controller/dispatch.js';
import { createDispatchRun } from '../activities/controller/dispatch-run.js';
import { createRecordAudit } from '../activities/controller/audit.js';
import { loadSimState } from '../activities/host/sim/state.js';
import { readTrail } from '../activities/audit/read.js';
import { enrollHosts } from '../workers/dev/enroll.js';
import {
  COMMAND_CONTRACT_VERSION,
  CommandStatus,
  SUPPORTED_CONTRACT_VERSIONS,
  resultKey,
  type ReceivedCommand,
  type StepCommand,
} from '../schemas/command.js';
import { HostPresence } from '../schemas/host.js';
import {
  OvsConvertParams,
  VerifyParams,
  VxlanTunnelParams,
  type StepCall,
  type StepOutcome,
} from '../schemas/steps.js';
import type { DispatchRequest, DispatchRunRequest, DispatchRunResult } from '../schemas/activities.js';
import { ensureHostConsumer } from '../workers/messaging.js';
import { BUCKETS, STREAMS, SUBJECTS, commandConsumer } from '../schemas/names.js';
import { credsFile } from '../workers/config.js';
import {
  AGENT_VERSION,
  startHostWorker,
  type HostWorkerHandle,
  type HostWorkerOptions,
} from '../workers/host/worker.js';
import { readInventory } from '../workers/control/inventory.js';
import { startHost } from '../workers/host/host-process.js';
import { stackStatus } from '../workers/dev/stack.js';
import { testStack, uniqueHostId } from './helpers/stack.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stack = testStack();
let tmp: string;
let controller: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let results: KV;
let hostsBucket: KV;
const workers: HostWorkerHandle[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'refit-host-worker-'));
  controller = await stack.controllerConnection();
  js = jetstream(controller);
  jsm = await jetstreamManager(controller);
  results = await new Kvm(controller).open(BUCKETS.results);
  hostsBucket = await new Kvm(controller).open(BUCKETS.hosts);
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});
afterAll(async () => {
  await stack.closeAll();
  await rm(tmp, { recursive: true, force: true });
});

type LogLine = { level: number; msg: string; reason?: string; [key: string]: unknown };

/** A pino logger whose lines the test can read. */
function capturedLog() {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** The sim, with ovs-convert awaiting the controller's word after its switch, as the real step does. */
class ConfirmingDriver implements HostDriver {
  readonly kind = 'sim' as const;
  constructor(
    private readonly sim: SimDriver,
    /** Leave the first start unfinished right after its confirmation, as a worker that dies then would. */
    private readonly leaveOnce = false,
  ) {}
  facts() {
    return this.sim.facts();
  }
  async runStep(step: StepCommand, ctx: StepContext) {
    if (step.kind === 'ovs-convert' && step.mode === 'apply') {
      ctx.progress(60, 'waiting for the controller to confirm the host is reachable', { awaitingConfirmation: true });
      const deadline = Date.now() + step.params.confirmWithin;
      if (!(await controllerConfirmation({ confirmed: ctx.confirmed, deadline, signal: ctx.signal })))
        throw new StepFailedError('the controller did not confirm in time; switched back');
      if (this.leaveOnce && !ctx.recovering) throw new WorkerStoppingError();
    }
    return this.sim.runStep(step, ctx);
  }
}

async function startWorker(
  hostId: string,
  sim: Partial<SimDriverOptions> = {},
  confirming: 'no' | 'yes' | 'leaving once' = 'no',
  options: Pick<HostWorkerOptions, 'commandAttempts' | 'commandRetryDelayMs'> & {
    wrap?: (driver: HostDriver) => HostDriver;
  } = {},
) {
  const nc = await stack.connectAsHost(hostId);
  const stateDir = path.join(tmp, hostId);
  const { log, lines } = capturedLog();
  const driver = await SimDriver.open({ hostId, stateDir, speed: 5, rebootPauseMs: 100, ...sim });
  const worker = await startHostWorker({
    hostId,
    nc,
    driver: (options.wrap ?? ((d) => d))(
      confirming === 'no' ? driver : new ConfirmingDriver(driver, confirming === 'leaving once'),
    ),
    labels: { role: 'test' },
    stateDir,
    log,
    presenceIntervalMs: 300,
    ...(options.commandAttempts !== undefined ? { commandAttempts: options.commandAttempts } : {}),
    ...(options.commandRetryDelayMs !== undefined ? { commandRetryDelayMs: options.commandRetryDelayMs } : {}),
  });
  workers.push(worker);
  return { driver, lines };
}

let serial = 0;
function command(
  hostId: string,
  kind: ReceivedCommand['kind'],
  params: Record<string, unknown> = {},
  commandId?: string,
): ReceivedCommand {
  return {
    commandId: commandId ?? `refit-host-${hostId}/run-1/${++serial}`,
    hostId,
    kind,
    mode: 'apply',
    params,
    rolloutId: 'test-rollout',
    workflowId: `refit-host-${hostId}`,
    issuedAt: new Date().toISOString(),
  };
}

/** Publish as the controller does; each call gets its own JetStream message id unless told. */
async function send(hostId: string, body: unknown, msgID = `m-${++serial}`): Promise<number> {
  const data = body instanceof Uint8Array ? body : JSON.stringify(body);
  return (await js.publish(SUBJECTS.command(hostId), data, { msgID })).seq;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function statusOf(hostId: string, commandId: string): Promise<CommandStatus | undefined> {
  const entry = await results.get(resultKey(hostId, commandId));
  return entry && entry.operation === 'PUT' ? CommandStatus.parse(entry.json()) : undefined;
}

function statusIs(
  hostId: string,
  commandId: string,
  state: CommandStatus['state'],
  timeoutMs?: number,
): Promise<CommandStatus> {
  return until(
    `${commandId} to be ${state}`,
    async () => {
      const s = await statusOf(hostId, commandId);
      return s?.state === state ? s : undefined;
    },
    timeoutMs,
  );
}

/** The host has taken and acknowledged everything up to the given stream sequence. */
function queueDrained(hostId: string, seq: number, timeoutMs?: number): Promise<true> {
  return until(
    `the queue of ${hostId} to be done with #${seq}`,
    async () => {
      const info = await jsm.consumers.info(STREAMS.commands, commandConsumer(hostId));
      return info.delivered.stream_seq >= seq && info.num_pending === 0 && info.num_ack_pending === 0
        ? true
        : undefined;
    },
    timeoutMs,
  );
}

describe('the host worker', () => {
  it('runs a command once, however often its id arrives, and answers repeats with the same status', async () => {
    const hostId = uniqueHostId('dup');
    const { driver, lines } = await startWorker(hostId);
    const cmd = command(hostId, 'drain', { destinations: { [`${hostId}-vm1`]: 'elsewhere-1' } });

    await send(hostId, cmd, `${cmd.commandId}#1`);
    const second = await send(hostId, cmd, `${cmd.commandId}#2`);
    const first = await statusIs(hostId, cmd.commandId, 'succeeded');
    await queueDrained(hostId, second);
    const third = await send(hostId, cmd, `${cmd.commandId}#3`);
    await queueDrained(hostId, third);

    expect(await statusOf(hostId, cmd.commandId)).toEqual(first);
    expect(first).toMatchObject({ starts: 1, outcome: { changed: true, summary: expect.stringMatching(/^sim: /) } });
    expect(driver.snapshot().effects).toEqual({ drain: 1 });
    expect(lines.filter((l) => l.msg === 'command already finished; answering from the journal')).toHaveLength(2);
  });

  it('rejects malformed and hostile commands with a logged reason, then still runs a valid one', async () => {
    const hostId = uniqueHostId('bad');
    const { driver, lines } = await startWorker(hostId);
    await send(hostId, Uint8Array.from([0xff, 0xfe, 0x00, 0x7b]));
    await send(hostId, { hello: 'world' });
    await send(hostId, command('someone-else', 'drain'));
    const hostile = command(hostId, 'ovs-convert', { uplink: 'eth0; rm -rf /' });
    await send(hostId, hostile);
    const valid = command(hostId, 'ovs-convert');
    await send(hostId, valid);

    expect(await statusIs(hostId, valid.commandId, 'succeeded')).toMatchObject({ outcome: { changed: true } });
    const refused = await statusIs(hostId, hostile.commandId, 'failed');
    expect(refused.error).toMatchObject({ type: 'InvalidStepParamsError' });
    expect(refused.error?.message).toMatch(/uplink: must be a Linux interface name/);

    const rejected = lines.filter((l) => l.msg === 'rejected a command message').map((l) => l.reason);
    expect(rejected).toEqual([
      expect.stringMatching(/^not JSON/),
      expect.stringMatching(/^not a step command: .*commandId/),
      `addressed to host someone-else, not to this host (${hostId})`,
    ]);
    expect(lines.some((l) => l.msg === 'step failed' && /must be a Linux interface name/.test(String(l.reason)))).toBe(
      true,
    );
    expect(driver.snapshot().effects).toEqual({ 'ovs-convert': 1 });
  });

  it('stops a running step when the operator cancels it, and never starts a queued one cancelled before', async () => {
    const hostId = uniqueHostId('cancel');
    const { driver, lines } = await startWorker(hostId, { speed: 1, stepMs: { drain: 20_000 } });
    const cmd = command(hostId, 'drain');
    const queued = command(hostId, 'ovs-convert');
    await send(hostId, cmd);
    await send(hostId, queued);
    await statusIs(hostId, cmd.commandId, 'running');
    const presence = await until('presence to show the running command', async () => {
      const entry = await hostsBucket.get(hostId);
      const p = entry ? HostPresence.parse(entry.json()) : undefined;
      return p?.busyWith ? p : undefined;
    });
    expect(presence).toMatchObject({
      simulated: true,
      driver: 'sim',
      busyWith: { commandId: cmd.commandId, kind: 'drain' },
    });

    controller.publish(SUBJECTS.cancel(hostId), JSON.stringify({ commandId: queued.commandId }));
    controller.publish(SUBJECTS.cancel(hostId), 'garbage');
    controller.publish(
      SUBJECTS.cancel(hostId),
      JSON.stringify({ commandId: cmd.commandId, reason: 'operator said stop' }),
    );

    const cancelled = await statusIs(hostId, cmd.commandId, 'cancelled', 5_000);
    expect(cancelled.error).toMatchObject({
      type: 'StepCancelledError',
      message: 'operator said stop',
    });
    expect((await statusIs(hostId, queued.commandId, 'cancelled')).error).toMatchObject({ type: 'StepCancelledError' });
    expect((await driver.facts()).vms).toHaveLength(3);
    expect((await driver.facts()).bridge.type).toBe('linux');
    expect(driver.snapshot().effects).toEqual({});
    expect(lines.some((l) => l.msg === 'rejected a cancel request')).toBe(true);
  });
});

describe('a command the host cannot process', () => {
  /** Where the host worker journals a command (workers/host/journal.ts: the sha256 of its id). */
  const journalFile = (hostId: string, commandId: string) =>
    path.join(tmp, hostId, 'journal', `${createHash('sha256').update(commandId).digest('hex')}.json`);
  /** The error of the command's step.failed event on the audit chain. */
  const auditedError = (commandId: string) =>
    until(`the audit event of ${commandId}`, async () => {
      const events = (await readTrail(controller, { since: new Date(Date.now() - 60_000) })).map(
        (r) => r.event as { type?: string; commandId?: string; data?: { error?: unknown } } | undefined,
      );
      return events.find((e) => e?.type === 'step.failed' && e.commandId === commandId)?.data?.error;
    });
  const quarantined = async (file: string) =>
    (await readdir(path.dirname(file))).filter((n) => n.startsWith(`${path.basename(file)}.corrupt-`));

  it('fails a command whose journal entry is corrupt, naming the file and where it went, and runs the next one', async () => {
    const hostId = uniqueHostId('badjournal');
    const { driver, lines } = await startWorker(hostId);
    const cmd = command(hostId, 'drain');
    const file = journalFile(hostId, cmd.commandId);
    await writeFile(file, '{"commandId": "refit-host-');
    await send(hostId, cmd);
    const next = command(hostId, 'ovs-convert');
    const seq = await send(hostId, next);

    const failed = await statusIs(hostId, cmd.commandId, 'failed');
    const [aside] = await quarantined(file);
    expect(aside).toBeDefined();
    expect(failed.error).toMatchObject({
      type: 'CorruptStateFileError',
      message: `${file} is corrupt (not JSON); moved aside to ${path.join(path.dirname(file), aside ?? '')}`,
    });
    expect(await readFile(path.join(path.dirname(file), aside ?? ''), 'utf8')).toBe('{"commandId": "refit-host-');
    expect(await auditedError(cmd.commandId)).toEqual(failed.error);
    expect(await statusIs(hostId, next.commandId, 'succeeded')).toMatchObject({ outcome: { changed: true } });
    await queueDrained(hostId, seq);
    expect(driver.snapshot().effects).toEqual({ 'ovs-convert': 1 });
    expect(lines.filter((l) => l.msg === 'cannot run the command; it will be redelivered')).toHaveLength(0);
  });

  it("fails a step whose own state file is corrupt with the file named, and the file's content kept aside", async () => {
    const hostId = uniqueHostId('badstate');
    const stateFile = path.join(tmp, hostId, 'traffic-baselines.json');
    const readsState = (inner: HostDriver): HostDriver => ({
      kind: inner.kind,
      facts: () => inner.facts(),
      async runStep(step, ctx) {
        if (step.kind === 'verify') await readStateFile(stateFile, z.record(z.string(), z.unknown()));
        return inner.runStep(step, ctx);
      },
    });
    await startWorker(hostId, {}, 'no', { wrap: readsState });
    await writeFile(stateFile, '[1, 2');
    const cmd = command(hostId, 'verify', { targets: [{ address: '10.0.0.1' }] });
    await send(hostId, cmd);
    const next = command(hostId, 'drain');
    await send(hostId, next);

    const failed = await statusIs(hostId, cmd.commandId, 'failed');
    const [aside] = await quarantined(stateFile);
    expect(failed.error).toMatchObject({
      type: 'CorruptStateFileError',
      message: `${stateFile} is corrupt (not JSON); moved aside to ${path.join(tmp, hostId, aside ?? '')}`,
    });
    expect(await readFile(path.join(tmp, hostId, aside ?? ''), 'utf8')).toBe('[1, 2');
    expect(await auditedError(cmd.commandId)).toEqual(failed.error);
    await statusIs(hostId, next.commandId, 'succeeded');
  });

  it('retries a command whose processing fails every time up to the bound, then answers it failed and runs the next one', async () => {
    const hostId = uniqueHostId('poison');
    const { driver, lines } = await startWorker(hostId, {}, 'no', { commandAttempts: 3, commandRetryDelayMs: 100 });
    const cmd = command(hostId, 'drain');
    // The journal cannot read or write this command's entry: a directory stands where its file goes.
    await mkdir(journalFile(hostId, cmd.commandId), { recursive: true });
    await send(hostId, cmd);
    const next = command(hostId, 'ovs-convert');
    const seq = await send(hostId, next);

    const failed = await statusIs(hostId, cmd.commandId, 'failed');
    expect(failed.error).toMatchObject({
      type: 'CommandNotProcessedError',
      message: expect.stringMatching(/^the host could not process the command \(attempt 3 of 3\): cannot read /),
    });
    expect(await statusIs(hostId, next.commandId, 'succeeded')).toMatchObject({ outcome: { changed: true } });
    await queueDrained(hostId, seq);
    expect(lines.filter((l) => l.msg === 'cannot run the command; it will be redelivered')).toHaveLength(2);
    expect(await auditedError(cmd.commandId)).toEqual(failed.error);
    expect(driver.snapshot().effects).toEqual({ 'ovs-convert': 1 });
  });

  it('answers failed a message that names a command of this host but is no valid command, and drops it', async () => {
    const hostId = uniqueHostId('invalid');
    const { lines } = await startWorker(hostId);
    const { rolloutId: _, ...incomplete } = command(hostId, 'drain');
    await send(hostId, incomplete);
    const next = command(hostId, 'drain');
    const seq = await send(hostId, next);

    const failed = await statusIs(hostId, incomplete.commandId, 'failed');
    expect(failed.error).toMatchObject({
      type: 'InvalidCommandError',
      message: expect.stringMatching(/^rejected by the host: not a step command: .*rolloutId/),
    });
    await statusIs(hostId, next.commandId, 'succeeded');
    await queueDrained(hostId, seq);
    expect(lines.filter((l) => l.msg === 'rejected a command message')).toHaveLength(1);
  });

  it('answers failed at once a command of a kind it does not know, or in a mode that does not exist', async () => {
    const hostId = uniqueHostId('unknown');
    await startWorker(hostId);
    const unknownKind = { ...command(hostId, 'drain'), kind: 'firmware-flash', commandId: `${hostId}/kind/1` };
    const badMode = { ...command(hostId, 'drain'), mode: 'sideways', commandId: `${hostId}/mode/1` };
    await send(hostId, unknownKind);
    await send(hostId, badMode);
    const next = command(hostId, 'drain');
    const seq = await send(hostId, next);

    expect(await statusIs(hostId, unknownKind.commandId, 'failed')).toMatchObject({
      kind: 'firmware-flash',
      error: {
        type: 'InvalidCommandError',
        message: expect.stringMatching(/^rejected by the host: not a step command: kind: Invalid option/),
      },
    });
    expect(await statusIs(hostId, badMode.commandId, 'failed')).toMatchObject({
      kind: 'drain',
      mode: 'apply',
      error: { type: 'InvalidCommandError', message: expect.stringMatching(/mode: Invalid option/) },
    });
    await statusIs(hostId, next.commandId, 'succeeded');
    await queueDrained(hostId, seq);
  });
});

describe('versions and a second agent with the same host id', () => {
  it('answers failed at once a command written for a contract version it does not take, saying why', async () => {
    const hostId = uniqueHostId('contract');
    await startWorker(hostId);
    const newer = { ...command(hostId, 'drain'), contractVersion: COMMAND_CONTRACT_VERSION + 1, newField: true };
    const current = { ...command(hostId, 'drain'), contractVersion: COMMAND_CONTRACT_VERSION };
    const sent = Date.now();
    await send(hostId, newer);
    const seq = await send(hostId, current);
    const failed = await statusIs(hostId, newer.commandId, 'failed', 5_000);
    expect(Date.now() - sent).toBeLessThan(5_000);
    expect(failed.error).toEqual({
      type: 'UnsupportedContractError',
      message: `rejected by the host: the command was written for command contract version ${COMMAND_CONTRACT_VERSION + 1}; this agent (refit-host ${AGENT_VERSION}) takes ${SUPPORTED_CONTRACT_VERSIONS.join(' and ')}: upgrade the agent, or run a controller at most one contract version newer`,
    });
    await statusIs(hostId, current.commandId, 'succeeded');
    await queueDrained(hostId, seq);
  });

  it('reports its version and contract version in presence, and is marked duplicate while a second agent writes its presence', async () => {
    const hostId = uniqueHostId('twice');
    await startWorker(hostId);
    const mine = await until('its presence', async () => {
      const entry = await hostsBucket.get(hostId);
      return entry?.operation === 'PUT' ? HostPresence.parse(entry.json()) : undefined;
    });
    expect(mine).toMatchObject({ agentVersion: AGENT_VERSION, contractVersion: COMMAND_CONTRACT_VERSION });
    expect(mine.instanceId).toMatch(/^[0-9a-f-]{36}$/);
    expect(mine).not.toHaveProperty('duplicateSeenAt');

    // A second agent elsewhere with the same id: its own connection and state dir.
    const elsewhere = path.join(tmp, `${hostId}-elsewhere`);
    const second = await startHostWorker({
      hostId,
      nc: await stack.connectAsHost(hostId),
      driver: await SimDriver.open({ hostId, stateDir: elsewhere, speed: 5 }),
      labels: { role: 'test' },
      stateDir: elsewhere,
      log: pino({ level: 'silent' }),
      presenceIntervalMs: 300,
    });
    try {
      await until('the host to be marked duplicate', async () => {
        const { hosts } = await readInventory(controller);
        return hosts.find((h) => h.hostId === hostId && h.duplicate);
      });
      const cli = spawnSync(process.execPath, [path.join(root, 'dist/cli/main.js'), 'hosts', '--json'], {
        env: { ...process.env, REFIT_HOME: stack.home, REFIT_NATS_URL: stack.natsUrl },
        encoding: 'utf8',
      });
      const listed = (JSON.parse(cli.stdout) as { hostId: string; duplicate: boolean }[]).find(
        (h) => h.hostId === hostId,
      );
      expect(listed).toMatchObject({
        duplicate: true,
        agentVersion: AGENT_VERSION,
        contractVersion: COMMAND_CONTRACT_VERSION,
      });
      expect(cli.stderr).toContain(`two agents run with the same host id`);
    } finally {
      await second.stop();
    }
    // Alone again: three intervals later the mark is gone.
    await until('the duplicate mark to clear', async () => {
      const { hosts } = await readInventory(controller);
      return hosts.find((h) => h.hostId === hostId && !h.duplicate);
    });
  });
});

/** The results and presence buckets as the controller follows them, for the dispatch activity, in a describe. */
function followedByController() {
  const quiet = pino({ level: 'silent' });
  const followed = {} as {
    results: BucketFollower<typeof CommandStatus>;
    presence: BucketFollower<typeof HostPresence>;
    quiet: typeof quiet;
  };
  followed.quiet = quiet;
  beforeAll(async () => {
    const kvm = new Kvm(controller);
    followed.results = await BucketFollower.start(await kvm.open(BUCKETS.results), CommandStatus, {
      keepAll: false,
      log: quiet,
    });
    followed.presence = await BucketFollower.start(await kvm.open(BUCKETS.hosts), HostPresence, {
      keepAll: true,
      log: quiet,
    });
  });
  afterAll(() => {
    followed.results.stop();
    followed.presence.stop();
  });
  return followed;
}

describe("the controller's confirmation of a network switch", () => {
  const followed = followedByController();

  /** The real dispatch activity sends an ovs-convert to the host and waits for its outcome. */
  function dispatchOvsConvert(hostId: string, confirmWithin: string): Promise<StepOutcome> {
    const dispatchStep = createDispatchStep({
      nc: controller,
      results: followed.results,
      presence: followed.presence,
      ensureHostConsumer: (id) => ensureHostConsumer(controller, id),
      log: followed.quiet,
    });
    const request: DispatchRequest = {
      rolloutId: 'test-rollout',
      hostId,
      kind: 'ovs-convert',
      mode: 'apply',
      params: OvsConvertParams.parse({ confirmWithin }),
    };
    return new MockActivityEnvironment(
      { workflowExecution: { workflowId: `refit-host-${hostId}`, runId: 'run-1' }, activityId: '1' },
      { logger: new DefaultLogger('ERROR', () => undefined) },
    ).run<[DispatchRequest], StepOutcome, typeof dispatchStep>(dispatchStep, request);
  }
  const confirmations = (lines: LogLine[]) =>
    lines.filter((l) => l.msg === 'controller confirmed it reaches this host').length;

  it('reaches the step that awaits it: the dispatch activity answers the flag in its progress, the host worker hands the answer over', async () => {
    const hostId = uniqueHostId('confirm');
    const { lines } = await startWorker(hostId, {}, 'yes');
    const started = Date.now();
    const outcome = await dispatchOvsConvert(hostId, '30s');
    expect(outcome).toMatchObject({ changed: true, summary: expect.stringMatching(/converted to Open vSwitch/) });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(confirmations(lines)).toBe(1);
  });

  it('reaches a step started again after the host worker left it, which awaits it again', async () => {
    const hostId = uniqueHostId('reconfirm');
    const { lines } = await startWorker(hostId, {}, 'leaving once');
    const outcome = await dispatchOvsConvert(hostId, '5s');
    expect(outcome).toMatchObject({ changed: true, recovered: true });
    expect(confirmations(lines)).toBe(2);
  });

  it('reaches no other command; without it the step gives up at its deadline', async () => {
    const hostId = uniqueHostId('noconfirm');
    const { lines } = await startWorker(hostId, {}, 'yes');
    const cmd = command(hostId, 'ovs-convert', { confirmWithin: 2_000 });
    await send(hostId, cmd);
    const waiting = await until('the step to await confirmation', async () => {
      const s = await statusOf(hostId, cmd.commandId);
      return s?.state === 'running' && s.progress?.awaitingConfirmation === true ? s : undefined;
    });
    expect(waiting.progress).toMatchObject({ pct: 60, awaitingConfirmation: true });
    controller.publish(SUBJECTS.confirm(hostId), JSON.stringify({ commandId: `${cmd.commandId}-other` }));
    controller.publish(SUBJECTS.confirm(hostId), 'garbage');
    const failed = await statusIs(hostId, cmd.commandId, 'failed');
    expect(failed.error).toMatchObject({ type: 'StepFailedError', message: expect.stringMatching(/did not confirm/) });
    expect(failed.progress).not.toHaveProperty('awaitingConfirmation');
    expect(lines.some((l) => l.msg === 'confirmation for a command that is not running; ignored')).toBe(true);
    expect(lines.some((l) => l.msg === 'rejected a confirmation')).toBe(true);
  });
});

describe('commands the controller writes for the agent it finds (verify health, vxlan ends, runs of steps)', () => {
  const followed = followedByController();

  /** A sim host whose driver keeps every command it is given. */
  async function recordingHost(name: string, sim: Partial<SimDriverOptions> = {}) {
    const hostId = uniqueHostId(name);
    const received: StepCommand[] = [];
    const recording = (inner: HostDriver): HostDriver => ({
      kind: inner.kind,
      facts: () => inner.facts(),
      runStep(step, ctx) {
        received.push(step);
        return inner.runStep(step, ctx);
      },
    });
    await startWorker(hostId, sim, 'no', { wrap: recording });
    return { hostId, received };
  }

  let sent = 0;
  /**
   * The controller's deps; `seen: false` is a controller that has not seen the host's presence (it
   * takes it for contract N-1), a number one that sees it report that contract.
   */
  function deps(seen: boolean | number, sends?: string[]) {
    const presence =
      seen === true
        ? followed.presence
        : ({
            get: () => (seen === false ? undefined : { contractVersion: seen }),
            values: () => [],
          } as unknown as BucketFollower<typeof HostPresence>);
    return {
      nc: controller,
      results: followed.results,
      presence,
      // Called just before each command is published.
      ensureHostConsumer: (id: string) => {
        sends?.push('send');
        return ensureHostConsumer(controller, id);
      },
      log: followed.quiet,
      recordAudit: createRecordAudit({ nc: controller, log: followed.quiet }),
    };
  }

  /** The real dispatch activity. */
  function dispatch(hostId: string, call: StepCall, seen: boolean | number): Promise<StepOutcome> {
    const dispatchStep = createDispatchStep(deps(seen));
    const request = { rolloutId: 'test-rollout', hostId, mode: 'apply', ...call } as DispatchRequest;
    return new MockActivityEnvironment(
      { workflowExecution: { workflowId: `refit-host-${hostId}`, runId: 'run-1' }, activityId: `${++sent}` },
      { logger: new DefaultLogger('ERROR', () => undefined) },
    ).run<[DispatchRequest], StepOutcome, typeof dispatchStep>(dispatchStep, request);
  }

  const verify: StepCall = {
    kind: 'verify',
    params: VerifyParams.parse({ targets: [{ address: '10.0.0.1' }], health: { max: { rxDropped: 0 } } }),
  };

  // A contract-3 agent's verify without health is schemas/command.test.ts's: this agent takes 4 and 5 only.
  it("sends a verify's health to an agent of contract 4, to a host of unseen presence (N-1: 4), and to one of contract 5", async () => {
    const { hostId, received } = await recordingHost('health');
    for (const [seen, version] of [
      [4, 4],
      [false, 4],
    ] as const) {
      const outcome = await dispatch(hostId, verify, seen);
      expect(received.at(-1)).toMatchObject({
        kind: 'verify',
        contractVersion: version,
        params: { health: { max: { rxDropped: 0 } } },
      });
      expect(outcome.summary).not.toMatch(/NOT checked/);
    }

    await until('its presence', async () => followed.presence.get(hostId));
    const seen = await dispatch(hostId, { ...verify, params: { ...verify.params, count: 5 } }, true);
    expect(received.at(-1)).toMatchObject({
      kind: 'verify',
      contractVersion: COMMAND_CONTRACT_VERSION,
      params: { health: { max: { rxDropped: 0 } } },
    });
    expect(seen.summary).toMatch(/net health: counters not modelled, nothing measured$/);
    expect(seen.summary).not.toMatch(/NOT checked/);
  });

  it('sends each host of a vxlan-tunnel with both ends its own end alone; a host without one gets nothing and the step fails', async () => {
    const { hostId, received } = await recordingHost('vxends');
    const ends: StepCall = {
      kind: 'vxlan-tunnel',
      params: VxlanTunnelParams.parse({
        name: 'vx100',
        vni: 100,
        hosts: {
          [hostId]: { type: 'linux', local: '10.0.0.1', remote: '10.0.0.2', underlay: 'eth0' },
          'other-host': { type: 'linux', local: '10.0.0.2', remote: '10.0.0.1', underlay: 'eth0' },
        },
      }),
    };
    await dispatch(hostId, ends, false);
    expect(received.at(-1)).toMatchObject({ kind: 'vxlan-tunnel', contractVersion: COMMAND_CONTRACT_VERSION - 1 });
    expect(received.at(-1)?.params).toEqual({
      type: 'linux',
      name: 'vx100',
      vni: 100,
      local: '10.0.0.1',
      remote: '10.0.0.2',
      dstPort: 4789,
      underlay: 'eth0',
    });
    const { [hostId]: _mine, ...others } = ends.params.hosts ?? {};
    const count = received.length;
    await expect(dispatch(hostId, { ...ends, params: { ...ends.params, hosts: others } }, true)).rejects.toThrow(
      `vxlan-tunnel on ${hostId}: the step's hosts have no entry for ${hostId} (other-host only)`,
    );
    expect(received).toHaveLength(count);
  });

  /** The real run activity: `kinds` as one run, plan indexes from 0; `opts.attempt` tries one again. */
  function dispatchRun(
    hostId: string,
    calls: StepCall[],
    seen: boolean | number,
    opts: { hostAudit?: DispatchRunRequest['hostAudit']; log?: string[]; attempt?: number } = {},
  ): Promise<DispatchRunResult> {
    const { recordAudit, ...rest } = deps(seen, opts.log);
    const run = createDispatchRun({
      ...rest,
      recordAudit: async (input) => {
        const stored = await recordAudit(input);
        opts.log?.push(`${input.type}${stored.duplicate ? ' (duplicate)' : ''}`);
        return stored;
      },
    });
    const request: DispatchRunRequest = {
      rolloutId: 'test-rollout',
      hostId,
      steps: calls.map((call, index) => ({ ...call, index })),
      ...(opts.hostAudit ? { hostAudit: opts.hostAudit } : {}),
    };
    return new MockActivityEnvironment(
      {
        workflowExecution: { workflowId: `refit-host-${hostId}`, runId: 'run-1' },
        activityId: `${opts.attempt === undefined ? ++sent : sent}`,
      },
      { logger: new DefaultLogger('ERROR', () => undefined) },
    ).run<[DispatchRunRequest], DispatchRunResult, typeof run>(run, request);
  }

  const check: StepCall = { kind: 'verify', params: VerifyParams.parse({ targets: [{ address: '10.0.0.1' }] }) };
  const convert: StepCall = { kind: 'ovs-convert', params: OvsConvertParams.parse({}) };
  const summaries = (r: DispatchRunResult) => r.steps.map((s) => `${s.index} ${s.state}`);

  it('sends an agent of contract 5 a whole run at once, each command after the one before; the step after a failed one is never run, and answered so', async () => {
    const { hostId, received } = await recordingHost('run5', { fail: { 'ovs-convert': 'always' } });
    await until('its presence', async () => followed.presence.get(hostId));
    const ended = await dispatchRun(hostId, [check, convert, check], true);
    expect(summaries(ended)).toEqual(['0 succeeded', '1 failed']);
    expect(ended.steps[1]).toMatchObject({
      errorType: 'StepFailed',
      error: `ovs-convert failed on ${hostId}: sim: injected failure of ovs-convert (always)`,
    });
    // The driver ran two steps; each command named the one before it.
    expect(received.map((c) => c.kind)).toEqual(['verify', 'ovs-convert']);
    expect(received[0]).not.toHaveProperty('after');
    expect(received[1]?.after).toBe(received[0]?.commandId);
    expect(received[1]?.contractVersion).toBe(COMMAND_CONTRACT_VERSION);
    // The third was sent with the others (the controller stopped at the failure): the host answered it.
    const third = await statusIs(hostId, `refit-host-${hostId}/run-1/${sent}#2`, 'failed');
    expect(third.error).toEqual({
      type: 'StepNotRunError',
      message: 'not run: the step before it in its run (ovs-convert) failed',
    });
  });

  it("stores the host workflow's start before it sends a command and its end once every step succeeded, each once however often it is tried (decision 0040)", async () => {
    const { hostId, received } = await recordingHost('runaudit');
    await until('its presence', async () => followed.presence.get(hostId));
    const log: string[] = [];
    const hostAudit = {
      started: { steps: ['verify', 'verify'] },
      succeeded: { steps: ['verify:succeeded', 'verify:succeeded'] },
    };
    const ended = await dispatchRun(hostId, [check, check], true, { hostAudit, log });
    expect(ended).toMatchObject({ ended: true });
    expect(summaries(ended)).toEqual(['0 succeeded', '1 succeeded']);
    expect(log).toEqual(['host.started', 'send', 'send', 'host.succeeded']);
    // Its attempt again (a controller restarted before the activity completed): nothing sent, nothing stored twice.
    const again = await dispatchRun(hostId, [check, check], true, { hostAudit, log, attempt: 2 });
    expect(again).toMatchObject({ ended: true });
    expect(log.slice(4)).toEqual(['host.started (duplicate)', 'host.succeeded (duplicate)']);
    expect(received).toHaveLength(2);
    const events = (await readTrail(controller, { since: new Date(Date.now() - 60_000) })).map(
      (r) => r.event as { type?: string; hostId?: string; eventId?: string; data?: unknown },
    );
    const mine = events.filter((e) => e.hostId === hostId && e.type?.startsWith('host.'));
    expect(mine.map((e) => [e.type, e.eventId, e.data])).toEqual([
      ['host.started', `refit-host-${hostId}/run-1/host.started`, hostAudit.started],
      ['host.succeeded', `refit-host-${hostId}/run-1/host.end`, hostAudit.succeeded],
    ]);
    // A run that fails stores the start but not the end: the workflow records how the host ended.
    const failing = await recordingHost('runaudit-fails', { fail: { verify: 'always' } });
    await until('its presence', async () => followed.presence.get(failing.hostId));
    const failedLog: string[] = [];
    const failed = await dispatchRun(failing.hostId, [check, check], true, { hostAudit, log: failedLog });
    expect(failed.ended).toBeUndefined();
    expect(failedLog).toEqual(['host.started', 'send', 'send']);
  });

  it('sends an agent of contract 4 a run one step at a time, each once the one before succeeded, nothing after a failure', async () => {
    const { hostId, received } = await recordingHost('run4', { fail: { 'ovs-convert': 'always' } });
    const ok = await dispatchRun(hostId, [check, check], 4);
    expect(summaries(ok)).toEqual(['0 succeeded', '1 succeeded']);
    expect(received.map((c) => [c.kind, c.contractVersion, c.after])).toEqual([
      ['verify', 4, undefined],
      ['verify', 4, undefined],
    ]);
    const failed = await dispatchRun(hostId, [convert, check], 4);
    expect(summaries(failed)).toEqual(['0 failed']);
    await sleep(500);
    expect(await statusOf(hostId, `refit-host-${hostId}/run-1/${sent}#1`)).toBeUndefined();
    expect(received.map((c) => c.kind)).toEqual(['verify', 'verify', 'ovs-convert']);
  });
});

describe('a host started with startHost', () => {
  /** The names of the connections the NATS server has open now. */
  async function connections(): Promise<string[]> {
    const monitor = (await stackStatus(stack.home)).nats?.monitorUrl;
    const body = (await (await fetch(`${monitor}/connz?limit=100000`)).json()) as { connections?: { name?: string }[] };
    return (body.connections ?? []).map((c) => c.name ?? '');
  }

  it('runs on a connection of its own, under its labels, takes its commands, and stop() ends worker and connection', async () => {
    const hostId = uniqueHostId('start');
    await enrollHosts(stack.home, [hostId]);
    const stateDir = path.join(tmp, hostId);
    const driver = await SimDriver.open({ hostId, stateDir, speed: 5 });
    const host = await startHost({
      hostId,
      natsUrl: stack.natsUrl,
      credsFile: credsFile(stack.home, { host: hostId }),
      connectionName: `test-${hostId}`,
      driver,
      labels: { role: 'test', rack: 'r9' },
      stateDir,
      log: pino({ level: 'silent' }),
      presenceIntervalMs: 300,
    });
    try {
      expect(await connections()).toContain(`test-${hostId}`);
      const presence = await until('its presence', async () => {
        const entry = await hostsBucket.get(hostId);
        return entry?.operation === 'PUT' ? HostPresence.parse(entry.json()) : undefined;
      });
      expect(presence).toMatchObject({ driver: 'sim', simulated: true, labels: { role: 'test', rack: 'r9' } });
      const cmd = command(hostId, 'drain');
      await send(hostId, cmd);
      expect(await statusIs(hostId, cmd.commandId, 'succeeded')).toMatchObject({ outcome: { changed: true } });
    } finally {
      await host.stop();
    }
    expect(await connections()).not.toContain(`test-${hostId}`);
  });

  it('closes its connection when its worker cannot start', async () => {
    const hostId = uniqueHostId('nostart');
    await enrollHosts(stack.home, [hostId]);
    const driver = await SimDriver.open({ hostId, stateDir: path.join(tmp, hostId) });
    // The lock takes the state dir; the worker then cannot open its journal.
    const notADir = path.join(tmp, `${hostId}-state`);
    await mkdir(notADir, { recursive: true });
    await writeFile(path.join(notADir, 'journal'), 'not a directory\n');
    const starting = startHost({
      hostId,
      natsUrl: stack.natsUrl,
      credsFile: credsFile(stack.home, { host: hostId }),
      connectionName: `test-${hostId}`,
      driver,
      labels: {},
      stateDir: notADir,
      log: pino({ level: 'silent' }),
    });
    await expect(starting).rejects.toThrow(/EEXIST|ENOTDIR|not a directory/);
    expect(await connections()).not.toContain(`test-${hostId}`);
  });
});

describe('a host worker killed mid-step', () => {
  const entry = path.join(root, 'dist/workers/sim/run-host.js');
  const children: ChildProcess[] = [];
  beforeAll(() => buildIfStale(entry), 180_000);
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  function runHost(hostId: string, stateDir: string): ChildProcess {
    const args = ['--id', hostId, '--url', stack.natsUrl, '--creds', credsFile(stack.home, { host: hostId })];
    // 6 s for ovs-convert: a step's progress is written only after its first 3 s (PROGRESS_HOLD_MS).
    args.push('--state-dir', stateDir, '--speed', '0.05', '--presence-interval', '500');
    const child = spawn(process.execPath, [entry, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, REFIT_LOG_LEVEL: 'info' },
    });
    child.stderr?.resume();
    children.push(child);
    return child;
  }

  it('finishes the step once after a restart, and knows it recovered', async () => {
    const hostId = uniqueHostId('crash');
    await enrollHosts(stack.home, [hostId]);
    const stateDir = path.join(tmp, hostId);
    const first = runHost(hostId, stateDir);
    const cmd = command(hostId, 'ovs-convert');
    const seq = await send(hostId, cmd);
    await until('the step to make progress', async () => {
      const s = await statusOf(hostId, cmd.commandId);
      return s?.state === 'running' && (s.progress?.pct ?? 0) > 0 ? s : undefined;
    });
    first.kill('SIGKILL');
    await new Promise((resolve) => first.once('exit', resolve));

    const second = runHost(hostId, stateDir);
    const done = await statusIs(hostId, cmd.commandId, 'succeeded');
    expect(done).toMatchObject({ starts: 2, outcome: { recovered: true, changed: true } });
    // The killed worker never acknowledged the message: once the ack wait runs out it comes back, and the journal answers it.
    await queueDrained(hostId, seq, 45_000);
    expect(await statusOf(hostId, cmd.commandId)).toEqual(done);
    expect((await loadSimState(stateDir))?.effects).toEqual({ 'ovs-convert': 1 });

    second.kill('SIGTERM');
    const code = await new Promise((resolve) => second.once('exit', (c) => resolve(c)));
    expect(code).toBe(0);
  }, 90_000);

  it('finishes the step of a run it was killed in once after a restart, then runs the step that follows it (contract 5)', async () => {
    const hostId = uniqueHostId('runcrash');
    await enrollHosts(stack.home, [hostId]);
    const stateDir = path.join(tmp, hostId);
    const first = runHost(hostId, stateDir);
    const convert = { ...command(hostId, 'ovs-convert'), contractVersion: COMMAND_CONTRACT_VERSION };
    const next = { ...command(hostId, 'undrain'), contractVersion: COMMAND_CONTRACT_VERSION, after: convert.commandId };
    // The whole run is queued at once, as the controller sends it to an agent of contract 5.
    await send(hostId, convert);
    const seq = await send(hostId, next);
    await until('the first step to make progress', async () => {
      const s = await statusOf(hostId, convert.commandId);
      return s?.state === 'running' && (s.progress?.pct ?? 0) > 0 ? s : undefined;
    });
    expect(await statusOf(hostId, next.commandId)).toBeUndefined();
    first.kill('SIGKILL');
    await new Promise((resolve) => first.once('exit', resolve));

    const second = runHost(hostId, stateDir);
    expect(await statusIs(hostId, convert.commandId, 'succeeded')).toMatchObject({
      starts: 2,
      outcome: { recovered: true },
    });
    expect(await statusIs(hostId, next.commandId, 'succeeded', 60_000)).toMatchObject({ starts: 1 });
    await queueDrained(hostId, seq, 60_000);
    expect((await loadSimState(stateDir))?.effects).toMatchObject({ 'ovs-convert': 1 });

    second.kill('SIGTERM');
    await new Promise((resolve) => second.once('exit', resolve));
  }, 120_000);
});

/** The child runs compiled JavaScript: build it when any source is newer than the entry. */
async function buildIfStale(entry: string): Promise<void> {
  // The sim host process is built from these folders (the layering rule keeps it out of the others).
  const newest = async (dir: string): Promise<number> => {
    const names = (await readdir(path.join(root, dir), { recursive: true })).filter(
      (n) => n.endsWith('.ts') && !n.endsWith('.test.ts'),
    );
    return Math.max(0, ...names.map((n) => statSync(path.join(root, dir, n)).mtimeMs));
  };
  const sources = await Promise.all(['schemas', 'activities', 'workers'].map(newest));
  if (existsSync(entry) && statSync(entry).mtimeMs >= Math.max(...sources)) return;
  spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: 'ignore',
  });
  if (!existsSync(entry)) throw new Error(`${entry} is missing after building; run npm run build`);
}
