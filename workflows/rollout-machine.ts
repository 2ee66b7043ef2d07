import type { TargetResolution } from '../schemas/activities.js';
import type { Plan } from '../schemas/plan.js';
import type { HostMaintenanceResult, HostStatus, RolloutCarried, RolloutStatus } from '../schemas/rollout.js';
import { stepLabel } from '../schemas/names.js';
import { replayableStartDecision } from '../schemas/windows.js';
import { createOperatorActions, type HostPatch } from './operator.js';
import type { GateDecision, RolloutDecision } from './rollout-decision.js';
import { FAILED_STATES, addTargets, conclude, patchHost } from './rollout-state.js';

/** How long to wait before asking again for a busy host or a fleet-wide slot. */
export const RETRY_START_MS = 2_000;

/** A host seen online this recently may start without asking again. */
export const PRESENCE_FRESH_MS = 30_000;

/** The plan's `offlineWait` when a plan from before it has none. */
const DEFAULT_OFFLINE_WAIT_MS = 30 * 60_000;

/** How often to look again for an offline host being waited for: a tenth of the wait, 1 s to 30 s. */
export function offlineRecheckMs(offlineWaitMs: number): number {
  return Math.min(30_000, Math.max(1_000, Math.round(offlineWaitMs / 10)));
}

/** "30m", "1h30m", "45s": a duration as a plan writes it. */
export function formatDuration(ms: number): string {
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('') || `${ms}ms`;
}

/** What the loop this replaced did right after recording a self-pause: the next decision carries on there. */
type Resume = 'leave-done-wave' | 'fill-wave';

const WAIT: RolloutDecision = { kind: 'wait' };

/** Host states of a wave not yet done. */
const OPEN_STATES: ReadonlySet<string> = new Set(['pending', 'running']);

/**
 * The scheduling of a rollout, without Temporal: waves in order with the canary alone first, at most
 * `maxInFlight` hosts and per failure domain, gates between waves, self-pauses when the canary
 * fails or the failure budget is spent, maintenance windows, and cancel; operator actions are its
 * events too (`actions`). Time comes in as an argument. The decisions follow the order of the original workflow loop check by check, so a
 * workflow driven by it issues the same Temporal commands as before and old histories replay.
 */
export class RolloutMachine {
  readonly status: RolloutStatus;
  readonly byHost: Map<string, HostStatus>;
  /** Operator actions (pause, resume, cancel, approve, retryHost, skipHost) on this rollout. */
  readonly actions: ReturnType<typeof createOperatorActions>;
  /** Bumped by every change that may let a waiting rollout make progress. */
  version = 0;
  private readonly inFlight = new Set<string>();
  private readonly retryAt = new Map<string, number>();
  private readonly gatesPassed: Set<number>;
  private resume: Resume | null = null;
  private waitingForWindow = false;
  /** An operator action's audit event is being stored: decide nothing until it is applied or dropped. */
  private held = false;
  /** A decision was put off while held: wake the rollout when the hold ends. */
  private heldBack = false;

  /** When each host was last seen online by a presence check (not carried: a new run asks again). */
  private readonly seenOnlineAt = new Map<string, number>();
  private readonly offlineTargets: boolean;
  private readonly waveRunning: () => boolean;

  /**
   * `dstCorrectWindows`: may a window decision that DST-correct windows changed take the new answer?
   * `offlineTargets`: are offline targets kept and checked at their turn (`onOffline`)?
   * `waveRunning`: is a wave marked running while its hosts run, and done once its last host has
   * settled (before, it went from pending to done when the rollout left it)? The workflow passes
   * Temporal's `patched` for each (asked first where a host changes), so histories made before each
   * change replay.
   */
  constructor(
    private readonly plan: Plan,
    private readonly carried: RolloutCarried,
    private readonly dstCorrectWindows: () => boolean = () => true,
    features: { offlineTargets?: boolean; waveRunning?: () => boolean } = {},
  ) {
    this.offlineTargets = features.offlineTargets ?? true;
    this.waveRunning = features.waveRunning ?? (() => true);
    this.status = carried.status;
    this.byHost = new Map(this.status.hosts.map((h) => [h.hostId, h]));
    this.gatesPassed = new Set(carried.gatesPassed);
    this.actions = createOperatorActions({
      status: this.status,
      byHost: this.byHost,
      carried,
      isOver: () => this.isOver,
      setHost: (host, patch) => this.setHost(host, patch),
      onChange: () => this.changed(),
      holdDecisions: (held) => this.holdDecisions(held),
    });
  }

  /** Completed, failed or cancelled: no operator action applies any more. */
  get isOver(): boolean {
    return ['completed', 'failed', 'cancelled'].includes(this.status.state);
  }

  /** Hosts in flight are asked to stop and undo their steps: the rollout was cancelled with `onCancel: rollback`. */
  get abortsInFlight(): boolean {
    return this.status.cancelled !== null && this.plan.onCancel === 'rollback';
  }

  /** An approval gate is behind us: approved, or the rollout was cancelled. */
  get approvalSettled(): boolean {
    return this.status.pendingApproval === null || this.status.cancelled !== null;
  }

  /** Hosts started and not yet settled. */
  get hostsInFlight(): ReadonlySet<string> {
    return this.inFlight;
  }

  /** The hosts of this host's wave (a drain sends no VM there). */
  waveOf(hostId: string): string[] {
    return this.status.waves[this.host(hostId).wave]?.hosts ?? [];
  }

  /**
   * The next thing to do at time `now`; `historyFull` says the run's history is long enough to continue
   * as new. Wait while an operator action's audit event is being stored.
   */
  next({ now, historyFull = false }: { now: number; historyFull?: boolean }): RolloutDecision {
    if (this.held) {
      this.heldBack = true;
      return WAIT;
    }
    if (this.waitingForWindow) {
      this.waitingForWindow = false;
      this.status.nextWindowAt = null;
      delete this.status.message;
    }
    const resume = this.resume;
    this.resume = null;
    if (resume === 'leave-done-wave') return this.leaveDoneWave(now) ?? this.next({ now, historyFull });
    if (resume === 'fill-wave') return this.fillWave(now);
    for (;;) {
      const decision = this.step(now, historyFull);
      if (decision) return decision;
    }
  }

  /** One pass of the checks, in the order of the loop this replaced; undefined: pass again. */
  private step(now: number, historyFull: boolean): RolloutDecision | undefined {
    const { status } = this;
    if (status.cancelled) return { kind: 'finish' };
    if (historyFull && this.inFlight.size === 0) return { kind: 'continueAsNew' };
    const wave = status.waves[status.currentWave];
    if (!wave) {
      if (this.inFlight.size === 0 && !status.hosts.some((h) => h.state === 'pending')) return { kind: 'finish' };
      status.currentWave = Math.max(0, status.waves.length - 1);
      return WAIT;
    }
    const open = wave.hosts.some((h) => OPEN_STATES.has(this.byHost.get(h)?.state ?? ''));
    if (open) {
      if (!status.paused && this.budgetSpent()) {
        const { failed, maxFailedHosts } = status.failureBudget;
        return this.pauseSelf(
          `failure budget spent: ${failed} hosts failed, ${maxFailedHosts} allowed`,
          now,
          'fill-wave',
        );
      }
      return this.fillWave(now);
    }
    wave.state = 'done';
    if (this.canaryFailed(wave.index) && !this.gatesPassed.has(-1)) {
      this.gatesPassed.add(-1);
      return this.pauseSelf('the canary failed: retry it, skip it, resume or cancel', now, 'leave-done-wave');
    }
    return this.leaveDoneWave(now);
  }

  /** The current wave is done: stay paused, pass the gate before the next wave, or move on to it (undefined). */
  private leaveDoneWave(now: number): RolloutDecision | undefined {
    const { status } = this;
    if (status.paused) {
      status.state = 'paused';
      return WAIT;
    }
    const next = status.currentWave + 1;
    if (next < status.waves.length && !this.gatesPassed.has(next)) return this.gate(next, now);
    status.currentWave = next;
    return undefined;
  }

  /** Start a host of the waves reached so far, if every limit, the window and the pause allow it. */
  private fillWave(now: number): RolloutDecision {
    const { status, plan } = this;
    if (status.paused) {
      status.state = 'paused';
      return WAIT;
    }
    if (this.inFlight.size >= plan.waves.maxInFlight) {
      status.state = 'running';
      return WAIT;
    }
    const host = this.nextHost(now);
    if (!host) {
      const soonest = Math.min(...[...this.retryAt.values()].filter((t) => t > now));
      status.state = this.inFlight.size > 0 ? 'running' : 'waiting';
      return Number.isFinite(soonest) ? { kind: 'wait', untilMs: soonest } : WAIT;
    }
    const window = replayableStartDecision(plan.windows, now, plan.hostDuration, this.dstCorrectWindows);
    if (!window.start) {
      status.state = this.inFlight.size > 0 ? 'running' : 'waiting';
      status.nextWindowAt = new Date(window.waitUntil).toISOString();
      status.message = `${window.reason}; next window opens ${status.nextWindowAt}`;
      this.waitingForWindow = true;
      return { kind: 'wait', untilMs: window.waitUntil };
    }
    if (this.offlineTargets && !this.seenOnline(host.hostId, now))
      return { kind: 'checkPresence', hostIds: this.presenceToCheck(host, now) };
    if (plan.limits.fleetWide !== undefined)
      return { kind: 'acquireLease', hostId: host.hostId, limit: plan.limits.fleetWide };
    return this.start(host);
  }

  private seenOnline(hostId: string, now: number): boolean {
    return now - (this.seenOnlineAt.get(hostId) ?? -Infinity) < PRESENCE_FRESH_MS;
  }

  /** `first` and the next hosts that could start now, as many as there are free slots, not seen online lately. */
  private presenceToCheck(first: HostStatus, now: number): string[] {
    const free = this.plan.waves.maxInFlight - this.inFlight.size;
    const ids = [first.hostId];
    for (const h of this.status.hosts) {
      if (ids.length >= free) break;
      if (h !== first && this.mayStart(h, now) && !this.seenOnline(h.hostId, now)) ids.push(h.hostId);
    }
    return ids;
  }

  /** Pending hosts of the waves reached so far, in order, not waiting to retry, whose failure domains have room. */
  private nextHost(now: number): HostStatus | undefined {
    return this.status.hosts.find((h) => this.mayStart(h, now));
  }

  private mayStart(h: HostStatus, now: number): boolean {
    return (
      h.state === 'pending' &&
      h.wave <= this.status.currentWave &&
      !this.inFlight.has(h.hostId) &&
      !(h.waitingFor && (this.retryAt.get(h.hostId) ?? 0) > now) &&
      this.domainHasRoom(h.hostId)
    );
  }

  private domainHasRoom(hostId: string): boolean {
    const mine = this.carried.domains[hostId] ?? {};
    return Object.entries(this.plan.limits.perLabel).every(([label, max]) => {
      const busy = [...this.inFlight].filter((h) => this.carried.domains[h]?.[label] === mine[label]).length;
      return busy < max;
    });
  }

  private budgetSpent(): boolean {
    const { failed, maxFailedHosts } = this.status.failureBudget;
    return failed > maxFailedHosts && failed > this.carried.acceptedFailures;
  }

  private canaryFailed(wave: number): boolean {
    return (
      wave === 0 &&
      this.plan.waves.canary > 0 &&
      this.status.waves.length > 1 &&
      (this.status.waves[0]?.hosts ?? []).some((h) => FAILED_STATES.has(this.byHost.get(h)?.state ?? 'pending'))
    );
  }

  private pauseSelf(reason: string, now: number, resume: Resume): RolloutDecision {
    this.status.paused = { reason, by: 'refit', at: new Date(now).toISOString() };
    this.resume = resume;
    return { kind: 'pause', reason };
  }

  private gate(wave: number, now: number): RolloutDecision {
    const { status, plan } = this;
    const pause = plan.waves.pauseBetweenWaves;
    const afterCanary = wave === 1 && plan.waves.canary > 0;
    if (pause === 'approval' || plan.approvals.afterEachWave || (afterCanary && plan.approvals.afterCanary)) {
      status.state = 'waiting';
      const gate = afterCanary ? 'after-canary' : `before-wave-${wave}`;
      status.pendingApproval = { gate, wave, since: new Date(now).toISOString() };
      return { kind: 'gate', wave, approval: true };
    }
    if (typeof pause === 'number' && pause > 0) {
      status.state = 'waiting';
      status.message = `pausing ${pause / 1000}s between waves`;
      return { kind: 'gate', wave, pauseMs: pause };
    }
    return { kind: 'gate', wave };
  }

  private start(host: HostStatus): RolloutDecision {
    this.status.state = 'running';
    this.setHost(host, { state: 'running', attempts: host.attempts + 1, waitingFor: undefined });
    this.inFlight.add(host.hostId);
    return { kind: 'start', hostId: host.hostId };
  }

  /**
   * The rollout found its targets (first run only), at `now` (by default when it started). Offline
   * targets wait at the end of the waves, or are skipped or failed now, as the plan's `onOffline` says.
   */
  targetsResolved(targets: TargetResolution, now = Date.parse(this.status.startedAt)): void {
    addTargets(this.carried, this.plan, targets, this.byHost, this.offlineTargets ? now : undefined);
  }

  /**
   * A presence check of `hostIds` at `now` found `offline` of them offline. An online one may start; an
   * offline one is skipped, failed, or waited for (then failed once `offlineWait` has passed since its
   * turn came), as the plan's `onOffline` says.
   */
  presenceChecked(hostIds: readonly string[], offline: readonly string[], now: number): void {
    const down = new Set(offline);
    const at = new Date(now).toISOString();
    const policy = this.plan.onOffline ?? 'wait';
    const waitMs = this.plan.offlineWait ?? DEFAULT_OFFLINE_WAIT_MS;
    for (const hostId of hostIds) {
      const host = this.byHost.get(hostId);
      if (host?.state !== 'pending') continue;
      const known = host.offline?.back === undefined ? host.offline : undefined;
      if (!down.has(hostId)) {
        this.seenOnlineAt.set(hostId, now);
        if (known) this.setHost(host, { offline: { ...known, back: at }, waitingFor: undefined });
        continue;
      }
      const since = known?.since ?? at;
      const record = { since, ...(known?.atResolution ? { atResolution: true } : {}) };
      if (policy !== 'wait') {
        const state = policy === 'skip' ? 'skipped' : 'failed';
        const error = `offline when its turn came; ${state} as the plan says (onOffline: ${policy})`;
        this.setHost(host, { state, error, offline: record, waitingFor: undefined });
        continue;
      }
      const until = known?.waitUntil !== undefined ? Date.parse(known.waitUntil) : now + waitMs;
      const offlineRecord = { ...record, waitUntil: new Date(until).toISOString() };
      if (now >= until) {
        const error = `offline since ${since}; waited ${formatDuration(waitMs)} for it, then failed as the plan says (offlineWait)`;
        this.setHost(host, { state: 'failed', error, offline: offlineRecord, waitingFor: undefined });
        continue;
      }
      this.retryAt.set(hostId, Math.min(now + offlineRecheckMs(waitMs), until));
      this.setHost(host, {
        offline: offlineRecord,
        waitingFor: `offline; waiting for it until ${offlineRecord.waitUntil}`,
      });
    }
  }

  /** The fleet-wide lease is ours: the host is in flight from now on; start its maintenance. */
  leaseGranted(hostId: string): void {
    this.start(this.host(hostId));
  }

  /** Every fleet-wide slot is taken: ask again for this host a little later. */
  leaseRefused(hostId: string, now: number): void {
    this.retryAt.set(hostId, now + RETRY_START_MS);
    this.setHost(this.host(hostId), {
      waitingFor: `fleet-wide limit of ${this.plan.limits.fleetWide} hosts under maintenance`,
    });
  }

  /** The gate is behind us: approved, waited out, or there was none to wait for. */
  gatePassed(gate: GateDecision): void {
    if (gate.pauseMs !== undefined) delete this.status.message;
    this.gatesPassed.add(gate.wave);
  }

  /** The host's maintenance workflow ended with this result. */
  hostFinished(hostId: string, result: HostMaintenanceResult): void {
    const last = result.steps.at(-1);
    const step = last ? stepLabel(last.kind, last.mode) : null;
    this.setHost(this.host(hostId), { state: result.state, step, ...(result.error ? { error: result.error } : {}) });
  }

  /** The host is in another campaign: skip it, or try again a little later, as the plan says. */
  hostBusy(hostId: string, now: number): void {
    const host = this.host(hostId);
    if (this.plan.onBusyHost === 'skip') {
      this.setHost(host, { state: 'skipped', error: 'host is in another campaign; skipped as the plan says' });
      return;
    }
    this.retryAt.set(hostId, now + RETRY_START_MS);
    this.setHost(host, { state: 'pending', attempts: host.attempts - 1, waitingFor: 'host is in another campaign' });
  }

  /** Its maintenance could not be started or followed. */
  hostFailedToRun(hostId: string, error: string): void {
    this.setHost(this.host(hostId), { state: 'failed', error });
  }

  /** Everything about the host's start is over (lease released): it no longer counts as in flight. */
  hostSettled(hostId: string): void {
    this.inFlight.delete(hostId);
    this.changed();
  }

  /** The state the next run starts from, counting one more run. */
  carryOver(): RolloutCarried {
    this.status.runs += 1;
    return { ...this.carried, gatesPassed: [...this.gatesPassed] };
  }

  /** The final status, once no host is in flight: hosts never started are skipped if cancelled. */
  finish(): RolloutStatus {
    for (const h of this.status.hosts)
      if (h.state === 'pending' && this.status.cancelled)
        this.setHost(h, { state: 'skipped', error: 'rollout cancelled' });
    conclude(this.status);
    return this.status;
  }

  private setHost(host: HostStatus, patch: HostPatch): void {
    patchHost(this.status, host, patch);
    if (host.wave >= 0 && this.waveRunning()) this.markWave(host);
    this.changed();
  }

  /** A host of the wave runs: the wave runs. Its last host settled: the wave is done. */
  private markWave(host: HostStatus): void {
    const wave = this.status.waves[host.wave];
    if (!wave) return;
    if (host.state === 'running') wave.state = 'running';
    else if (
      wave.state === 'running' &&
      host.state !== 'pending' &&
      !wave.hosts.some((h) => OPEN_STATES.has(this.byHost.get(h)?.state ?? ''))
    )
      wave.state = 'done';
  }

  private holdDecisions(held: boolean): void {
    this.held = held;
    if (held || !this.heldBack) return;
    this.heldBack = false;
    this.changed();
  }

  private changed(): void {
    this.version += 1;
  }

  private host(hostId: string): HostStatus {
    const host = this.byHost.get(hostId);
    if (!host) throw new Error(`host ${hostId} is not in this rollout`);
    return host;
  }
}
