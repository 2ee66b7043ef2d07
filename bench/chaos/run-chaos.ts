import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { waitForHostsOnline } from '../../workers/control/inventory.js';
import { startRollout } from '../../workers/control/rollouts.js';
import { controllerIdentity } from '../../workers/dev/stack.js';
import { connectNats } from '../../workers/nats.js';
import { simHostIds } from '../../workers/sim/fleet.js';
import type { RolloutStatus } from '../../schemas/rollout.js';
import { hostWorkflowId } from '../../schemas/names.js';
import { hostProgressQuery, rolloutStatusQuery } from '../../workflows/messages.js';
import { startBenchStack, type Cleanup } from '../harness.js';
import { benchPlan, CAMPAIGN_STEPS } from '../plans.js';
import type { FleetSpec } from '../fleet-process.js';
import {
  commandCounts,
  countLogLines,
  hostEffects,
  openHostWorkflows,
  verifyAudit,
  type AuditCheck,
  type HostEffects,
} from './checks.js';
import {
  controllerChild,
  fleetChild,
  StackServer,
  SupervisedChild,
  type Killable,
  type UnexpectedExit,
} from './processes.js';
import { chaosSchedule, type ChaosTarget, type Kill } from './schedule.js';
import { rolloutEnd } from '../../workers/control/rollout-status.js';

export interface ChaosOptions {
  kills: number;
  seed: number;
  hosts: number;
  /** How long each simulated step takes; by default long enough that the rollout outlasts the kills. */
  stepMs?: number;
  /** Give up waiting for the rollout after this long. */
  timeoutMs?: number;
  keepHome?: boolean;
  say: (line: string) => void;
}

export interface KillRecord extends Kill {
  /** Seconds since the rollout started. */
  at: number;
  /** From the kill until the process answered again (its pause included), in seconds. */
  restartS: number;
  /** From the kill until the rollout next completed a step, in seconds; null when it did not within the bound. */
  recoverS: number | null;
}

export interface ChaosResult {
  seed: number;
  hosts: number;
  killsAsked: number;
  stepMs: number;
  rolloutId: string;
  durationS: number;
  /** The longest time the rollout completed no step. */
  longestStallS: number;
  kills: KillRecord[];
  rollout: { state: string; succeeded: number; total: number; message?: string | undefined };
  effects: HostEffects[];
  audit: AuditCheck;
  openHostWorkflows: string[];
  /** Commands the host answered from its journal (a repeat of a finished command id). */
  journalAnswers: number;
  /** Commands whose step a host resumed after its worker died in it. */
  resumedSteps: number;
  /** Commands the controller sent again whose duplicate JetStream dropped. */
  duplicatesDropped: number;
  commands: number;
  unexpectedExits: UnexpectedExit[];
  /** Why the run failed; empty when it passed. */
  failures: string[];
}

const RECOVERY_BOUND_MS = 180_000;

/**
 * The chaos run: its own stack in a temp home, the controller worker and a SIMULATED fleet as
 * separate processes, a rollout of the whole campaign, and a seeded schedule of SIGKILLs with
 * restarts. Everything it started is stopped by `cleanup` (the caller runs it, also on SIGINT).
 */
export async function runChaos(o: ChaosOptions, cleanup: Cleanup): Promise<ChaosResult> {
  const say = o.say;
  const schedule = chaosSchedule({ kills: o.kills, seed: o.seed });
  say(`seed ${o.seed}: ${o.kills} kills over ${o.hosts} SIMULATED hosts (sim driver, no real host is touched)`);

  const {
    home,
    stack,
    config,
    env,
    log: logOf,
  } = await startBenchStack(cleanup, say, {
    prefix: 'refit-chaos-',
    keepHome: o.keepHome === true,
  });

  const hostIds = simHostIds(o.hosts, 'chaos');
  const batchSize = Math.max(1, Math.floor(o.hosts / 4));
  const waves = 1 + Math.ceil((o.hosts - 1) / batchSize);
  // Each kill costs the rollout some seconds; the rollout must still run when the last one comes.
  const stepMs =
    o.stepMs ?? Math.max(2_000, Math.ceil((o.kills * 9_000) / (waves * CAMPAIGN_STEPS.length) / 100) * 100);
  const stateDir = path.join(home, 'sim');
  const spec: FleetSpec = {
    hosts: o.hosts,
    prefix: 'chaos',
    stateDir,
    stepMs: Object.fromEntries(CAMPAIGN_STEPS.map((k) => [k, stepMs])),
    rebootPauseMs: 2_000,
    presenceIntervalMs: 1_000,
  };
  const unexpected: UnexpectedExit[] = [];
  const controller = new SupervisedChild('controller', controllerChild(env, logOf('controller')), unexpected, say);
  const fleet = new SupervisedChild('fleet', fleetChild(env, spec, logOf('fleet')), unexpected, say);
  cleanup.defer('the controller', () => controller.stop());
  cleanup.defer('the fleet', () => fleet.stop());
  await controller.restart();
  await fleet.restart();
  const targets: Record<ChaosTarget, Killable> = {
    controller,
    fleet,
    nats: new StackServer('nats', home),
    temporal: new StackServer('temporal', home),
  };

  const connection = await Connection.connect({ address: stack.temporal.address });
  cleanup.defer('the Temporal client', () => connection.close());
  const client = new Client({ connection });
  const nc = await connectNats(controllerIdentity(home, stack.nats.url));
  cleanup.defer('the NATS connection', () => nc.close());
  await waitForHostsOnline(nc, hostIds, { timeoutMs: 120_000 });
  say(`${o.hosts} SIMULATED hosts online; every step takes ${stepMs / 1000} s`);

  const rolloutId = `chaos-${o.seed}`;
  const plan = benchPlan({
    name: 'chaos',
    hosts: hostIds,
    steps: CAMPAIGN_STEPS,
    canary: 1,
    batchSize,
    maxInFlight: batchSize,
  });
  await startRollout(client, config.taskQueue, plan, rolloutId);
  const started = Date.now();
  const progress = new RolloutProgress(client, rolloutId, hostIds);
  cleanup.defer('the progress watch', () => progress.stop());
  say(`rollout ${rolloutId} started: ${plan.steps.map((s) => s.kind).join(', ')}`);

  const killed: (Kill & { killedAt: number; readyAt: number })[] = [];
  for (const k of schedule) {
    await sleep(k.afterMs);
    if (progress.done) {
      say(`the rollout ended after ${killed.length} of ${o.kills} kills`);
      break;
    }
    const killedAt = Date.now();
    await targets[k.target].kill();
    await sleep(k.downMs);
    await targets[k.target].restart();
    killed.push({ ...k, killedAt, readyAt: Date.now() });
    say(
      `kill ${k.n}/${o.kills}: ${k.target} at ${round((killedAt - started) / 1000)} s, down ${k.downMs} ms, answering after ${round((Date.now() - killedAt) / 1000)} s; ${progress.stepsDone}/${o.hosts * CAMPAIGN_STEPS.length} steps done`,
    );
  }

  const final = await progress.result(o.timeoutMs ?? 30 * 60_000);
  const durationS = round((Date.now() - started) / 1000);
  say(`rollout ${final.state} after ${durationS} s: ${final.counts.succeeded}/${o.hosts} hosts succeeded`);
  await progress.stop();
  await fleet.stop();
  await controller.stop();
  // Kills do not wait for the rollout to advance, so the time until it does may span later kills.
  const kills = killed.map(({ killedAt, readyAt, ...k }): KillRecord => {
    const advancedAt = progress.advances.find((t) => t > killedAt);
    return {
      ...k,
      at: round((killedAt - started) / 1000),
      restartS: round((readyAt - killedAt) / 1000),
      recoverS: advancedAt === undefined ? null : round((advancedAt - killedAt) / 1000),
    };
  });
  const stalls = [started, ...progress.advances].map((t, i, all) => (all[i + 1] ?? t) - t);

  const effects = await hostEffects(stateDir, hostIds, CAMPAIGN_STEPS);
  const audit = await verifyAudit(nc);
  const open = await openHostWorkflows(client, hostIds);
  const counted = await commandCounts(nc);
  const result: ChaosResult = {
    seed: o.seed,
    hosts: o.hosts,
    killsAsked: o.kills,
    stepMs,
    rolloutId,
    durationS,
    longestStallS: round(Math.max(...stalls) / 1000),
    kills,
    rollout: {
      state: final.state,
      succeeded: final.counts.succeeded,
      total: o.hosts,
      ...(final.message !== undefined ? { message: final.message } : {}),
    },
    effects,
    audit,
    openHostWorkflows: open,
    journalAnswers: countLogLines(logOf('fleet'), 'command already finished; answering from the journal'),
    resumedSteps: counted.resumed,
    duplicatesDropped: countLogLines(logOf('controller'), 'step sent', { duplicate: true }),
    commands: counted.commands,
    unexpectedExits: unexpected,
    failures: [],
  };
  result.failures = judge(result);
  return result;
}

/** Why a run failed: each pass condition that does not hold. */
export function judge(r: ChaosResult): string[] {
  const failures: string[] = [];
  if (r.kills.length < r.killsAsked)
    failures.push(`only ${r.kills.length} of ${r.killsAsked} kills happened before the rollout ended`);
  if (r.rollout.state !== 'completed' || r.rollout.succeeded !== r.rollout.total)
    failures.push(
      `the rollout is ${r.rollout.state} with ${r.rollout.succeeded}/${r.rollout.total} hosts${r.rollout.message ? `: ${r.rollout.message}` : ''}`,
    );
  for (const h of r.effects.filter((e) => e.wrong.length > 0))
    failures.push(`${h.hostId}: effects not exactly once: ${h.wrong.join(', ')} (${JSON.stringify(h.effects)})`);
  if (!r.audit.ok) failures.push(`audit verify: not intact: ${r.audit.problems.join('; ')}`);
  for (const o of r.openHostWorkflows) failures.push(`host workflow left open: ${o}`);
  for (const k of r.kills.filter((k) => k.recoverS === null || k.recoverS > RECOVERY_BOUND_MS / 1000))
    failures.push(`kill ${k.n} (${k.target}): the rollout did not advance within ${RECOVERY_BOUND_MS / 1000} s`);
  return failures;
}

const round = (n: number) => Math.round(n * 10) / 10;

/**
 * Watches how many steps the rollout has completed (the rollout's status query, and each running
 * host workflow's progress query), twice a second. Queries fail while Temporal or the controller
 * is down; that only pauses the count.
 */
class RolloutProgress {
  stepsDone = 0;
  done = false;
  /** The rollout's status as last read. */
  last: RolloutStatus | undefined;
  /** When the count of completed steps went up, and when the rollout ended. */
  readonly advances: number[] = [];
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(
    private readonly client: Client,
    private readonly rolloutId: string,
    private readonly hostIds: readonly string[],
  ) {
    this.loop = this.watch();
  }

  private async watch(): Promise<void> {
    while (!this.stopped && !this.done) {
      const done = await this.read().catch(() => undefined);
      if (done !== undefined && done > this.stepsDone) {
        this.stepsDone = done;
        this.advances.push(Date.now());
      }
      await sleep(500);
    }
  }

  private async read(): Promise<number> {
    const handle = this.client.workflow.getHandle(this.rolloutId);
    const within = <T>(fn: () => Promise<T>) => this.client.connection.withDeadline(Date.now() + 3_000, fn);
    const described = await within(() => handle.describe());
    if (described.status.name !== 'RUNNING') {
      this.done = true;
      return this.hostIds.length * CAMPAIGN_STEPS.length;
    }
    const status = await within(() => handle.query(rolloutStatusQuery));
    this.last = status;
    const counts = await Promise.all(
      status.hosts.map(async (host) => {
        if (host.state === 'succeeded') return CAMPAIGN_STEPS.length;
        if (host.state !== 'running') return 0;
        const progress = await within(() =>
          this.client.workflow.getHandle(hostWorkflowId(host.hostId)).query(hostProgressQuery),
        );
        return progress.rolloutId === this.rolloutId ? progress.steps.filter((s) => s.state === 'succeeded').length : 0;
      }),
    );
    return counts.reduce((a, b) => a + b, 0);
  }

  /** The rollout's end; a rollout that paused (its failure budget spent) waits for a person: its status then. */
  async result(timeoutMs: number): Promise<RolloutStatus> {
    const result = rolloutEnd(this.client.workflow.getHandle(this.rolloutId));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const done = await Promise.race([result, sleep(1_000).then(() => undefined)]);
      if (done !== undefined) return done;
      if (this.last?.state === 'paused') return { ...this.last, message: this.last.paused?.reason ?? 'paused' };
      if (Date.now() > deadline) throw new Error(`the rollout did not end within ${timeoutMs / 1000} s`);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}
