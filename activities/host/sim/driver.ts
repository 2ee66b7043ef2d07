import { mkdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import type { Logger } from 'pino';
import { stepLabel } from '../../../schemas/names.js';
import type { StepCall, StepKind, StepOutcome } from '../../../schemas/steps.js';
import type { StepPreview } from '../../../schemas/preview.js';
import type { HostFacts } from '../../../schemas/host.js';
import type { StepCommand } from '../../../schemas/command.js';
import { HostDownError, StepFailedError, throwIfAborted, type HostDriver, type StepContext } from '../driver.js';
import {
  bootSimHost,
  initialSimState,
  loadSimState,
  saveSimState,
  simFacts,
  simObservation,
  type SimHostShape,
  type SimState,
} from './state.js';
import { planSimStep, type SimPlan } from './steps.js';

/** How long each step takes at speed 1. */
export const SIM_STEP_MS: Readonly<Record<StepKind, number>> = {
  drain: 400,
  undrain: 400,
  'ovs-convert': 300,
  'ovs-bond': 300,
  'sriov-enable': 300,
  reboot: 200,
  verify: 500,
  'nic-tuning': 200,
  'net-health': 300,
  'vxlan-tunnel': 200,
};
export const SIM_REBOOT_PAUSE_MS = 1_500;
const TICKS = 4;

export type FailureMode = 'always' | 'once';
/** Injected failures: "always" fails every apply, "once" only the first (a later command succeeds). */
export type SimFailures = Partial<Record<StepKind, FailureMode>>;

export interface SimDriverOptions {
  hostId: string;
  /** Where the simulated host keeps its state; a restarted worker on the same dir finds the same host. */
  stateDir: string;
  /** 2 runs everything twice as fast, 0.1 ten times slower. */
  speed?: number;
  stepMs?: Partial<Record<StepKind, number>>;
  /** How long the host is down during a reboot, at speed 1. */
  rebootPauseMs?: number;
  fail?: SimFailures;
  /**
   * A real program each step runs first, as a real step observes the host before it acts, e.g.
   * `['/bin/true']`: benchmarks use it so that a simulated step costs a process like a real one.
   */
  stepCommand?: readonly string[];
  /** The host's make-up when its state dir is new. */
  shape?: SimHostShape;
  log?: Logger;
}

/** Models a hypervisor without touching anything: for demos, benchmarks and tests. Always says so. */
export class SimDriver implements HostDriver {
  readonly kind = 'sim' as const;
  private down = false;
  private rebooting: Promise<void> | undefined;
  private writes: Promise<void> = Promise.resolve();

  private constructor(
    private readonly opts: SimDriverOptions,
    private state: SimState,
  ) {}

  static async open(opts: SimDriverOptions): Promise<SimDriver> {
    await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
    const stored = await loadSimState(opts.stateDir);
    const driver = new SimDriver(opts, stored ?? initialSimState(opts.hostId, opts.shape));
    if (stored === undefined) await driver.persist();
    // The worker died between reporting a reboot and doing it: the reboot is still owed.
    if (driver.state.rebootPending !== null) {
      opts.log?.info({ bootId: driver.state.bootId }, 'sim: finishing a reboot that was reported but not done');
      void driver.reboot();
    }
    return driver;
  }

  /** A copy of the simulated host's state, for tests and demos. */
  snapshot(): SimState {
    return structuredClone(this.state);
  }

  /** Resolves when no reboot is in progress. */
  async whenUp(): Promise<void> {
    await this.rebooting;
  }

  facts(): Promise<HostFacts> {
    if (this.down) return Promise.reject(new HostDownError('sim: rebooting'));
    return Promise.resolve(simFacts(this.state));
  }

  /**
   * What the simulation's model of the host says each step would do, each step on the state the ones
   * before it would leave; a simulated host has no files, so no diffs, and every summary says it is
   * simulated. The host's own state is not touched.
   */
  preview(steps: readonly StepCall[]): Promise<StepPreview[]> {
    let state = this.state;
    return Promise.resolve(
      steps.map((step, index) => {
        const command = { ...step, mode: 'apply', commandId: `dry-run/${index}` } as StepCommand;
        const plan = planSimStep(state, command);
        if (!plan.done && plan.deferred !== true) state = plan.change(state);
        return {
          index,
          kind: step.kind,
          summary: `simulated: ${plan.done ? `nothing to do (${plan.summary})` : plan.summary}`,
          files: [],
          changes: [],
        };
      }),
    );
  }

  async runStep(step: StepCommand, ctx: StepContext): Promise<StepOutcome> {
    await this.rebooting;
    await this.runStepCommand(ctx);
    const before = simObservation(this.state);
    const plan = planSimStep(this.state, step);
    const appliedKey = `${step.mode}:${step.kind}`;
    if (plan.done) {
      const doneByThisCommand = ctx.recovering && this.state.appliedBy[appliedKey] === step.commandId;
      ctx.progress(100, `sim: ${plan.summary}`);
      return this.outcome(plan, before, doneByThisCommand);
    }
    await this.ticks(step, ctx);
    await this.injectFailure(step);
    const changed = plan.change(this.state);
    const effectKey = stepLabel(step.kind, step.mode);
    this.state = {
      ...changed,
      appliedBy: { ...changed.appliedBy, [appliedKey]: step.commandId },
      effects: plan.deferred
        ? changed.effects
        : { ...changed.effects, [effectKey]: (changed.effects[effectKey] ?? 0) + 1 },
    };
    await this.persist();
    ctx.log.info({ kind: step.kind, mode: step.mode, simulated: true }, `sim: ${plan.summary}`);
    ctx.progress(100, `sim: ${plan.summary}`);
    return this.outcome(plan, before, true);
  }

  async afterReported(step: StepCommand): Promise<void> {
    if (step.kind === 'reboot' && step.mode === 'apply' && this.state.rebootPending !== null) await this.reboot();
  }

  private outcome(plan: SimPlan, before: Record<string, unknown>, changed: boolean): StepOutcome {
    return {
      changed,
      summary: `sim: ${plan.summary}`,
      before,
      after: simObservation(this.state),
      bootId: plan.bootId ?? this.state.bootId,
      ...(plan.rebootRequired !== undefined ? { rebootRequired: plan.rebootRequired } : {}),
      ...(plan.traffic !== undefined ? { traffic: plan.traffic } : {}),
    };
  }

  /** The step's duration, in a few ticks; cancellation is honoured between them, before anything changes. */
  private async ticks(step: StepCommand, ctx: StepContext): Promise<void> {
    const total = (this.opts.stepMs?.[step.kind] ?? SIM_STEP_MS[step.kind]) / this.speed;
    // A step of no duration sleeps not at all: four timers of 0 ms took 4-5 ms (Node waits at least 1 ms each).
    for (let i = 0; i < (total > 0 ? TICKS : 0); i++) {
      throwIfAborted(ctx.signal);
      ctx.progress(Math.round((i / TICKS) * 100), `sim: ${step.mode === 'apply' ? '' : 'reverting '}${step.kind}`);
      await sleep(total / TICKS, undefined, { signal: ctx.signal }).catch(() => undefined);
    }
    throwIfAborted(ctx.signal);
  }

  private async runStepCommand(ctx: StepContext): Promise<void> {
    const [file, ...args] = this.opts.stepCommand ?? [];
    if (file === undefined) return;
    const started = performance.now();
    const done = await execa(file, args, { reject: false, stdin: 'ignore', cancelSignal: ctx.signal });
    const exitCode = done.exitCode ?? -1;
    ctx.audit?.({
      type: 'step.command',
      argv: [file, ...args],
      exitCode,
      durationMs: Math.round(performance.now() - started),
    });
    throwIfAborted(ctx.signal);
    if (exitCode !== 0) throw new StepFailedError(`sim: ${[file, ...args].join(' ')} exited with ${exitCode}`);
  }

  private async injectFailure(step: StepCommand): Promise<void> {
    const mode = step.mode === 'apply' ? this.opts.fail?.[step.kind] : undefined;
    if (mode === undefined) return;
    if (mode === 'once') {
      if (this.state.failedOnce.includes(step.kind)) return;
      this.state = { ...this.state, failedOnce: [...this.state.failedOnce, step.kind] };
      await this.persist();
    }
    throw new StepFailedError(`sim: injected failure of ${step.kind} (${mode})`);
  }

  private reboot(): Promise<void> {
    this.rebooting ??= (async () => {
      this.down = true;
      try {
        await sleep((this.opts.rebootPauseMs ?? SIM_REBOOT_PAUSE_MS) / this.speed);
        const booted = bootSimHost(this.state);
        this.state = { ...booted, effects: { ...booted.effects, reboot: (booted.effects.reboot ?? 0) + 1 } };
        await this.persist();
        this.opts.log?.info({ bootId: this.state.bootId, simulated: true }, 'sim: host is back with a new boot id');
      } finally {
        this.down = false;
        this.rebooting = undefined;
      }
    })();
    return this.rebooting;
  }

  private get speed(): number {
    return this.opts.speed !== undefined && this.opts.speed > 0 ? this.opts.speed : 1;
  }

  /** Writes are queued so that an older state never overwrites a newer one. */
  private persist(): Promise<void> {
    const snapshot = this.state;
    const write = this.writes.then(() => saveSimState(this.opts.stateDir, snapshot));
    this.writes = write.catch(() => undefined);
    return write;
  }
}
