import { describe, expect, it } from 'vitest';
import type { TargetResolution } from '../schemas/activities.js';
import { Plan, type PlanInput } from '../schemas/plan.js';
import { hostFate, type HostMaintenanceResult, type RolloutCarried } from '../schemas/rollout.js';
import type { RolloutDecision } from './rollout-decision.js';
import { PRESENCE_FRESH_MS, RETRY_START_MS, RolloutMachine } from './rollout-machine.js';
import { newRollout } from './rollout-state.js';

/** A Monday noon, on a 10 s boundary (the interval windows below count from the epoch). */
const T0 = Date.UTC(2026, 0, 5, 12);
const by = { by: 'alice' };

function planOf(extra: Partial<PlanInput> = {}): Plan {
  return Plan.parse({
    apiVersion: 'refit/v1',
    kind: 'Campaign',
    name: 'machine-test',
    targets: { hosts: ['placeholder'] },
    steps: [{ kind: 'drain' }, { kind: 'undrain' }],
    ...extra,
  });
}

/** A rollout whose targets resolved to `hosts` (with these labels), before its first decision. */
function rollout(
  hosts: string[],
  extra: Partial<PlanInput> = {},
  opts: {
    labels?: Record<string, Record<string, string>>;
    /** The labels as resolveTargets gives them since lean-targets (TargetResolution.domains). */
    domains?: TargetResolution['domains'];
    missing?: string[];
    offline?: string[];
    /** As a rollout started before offline targets replays: no presence checks. */
    beforeOfflineTargets?: boolean;
  } = {},
): RolloutMachine {
  const plan = planOf(extra);
  const machine = new RolloutMachine(plan, newRollout({ rolloutId: 'r', plan, startedBy: 'test' }, T0), () => true, {
    offlineTargets: !opts.beforeOfflineTargets,
  });
  machine.targetsResolved({
    hostIds: hosts,
    missing: opts.missing ?? [],
    excluded: [],
    labels: opts.labels ?? {},
    ...(opts.domains ? { domains: opts.domains } : {}),
    ...(opts.offline ? { offline: opts.offline } : {}),
  });
  return machine;
}

/**
 * Ask for decisions until one is neither a start nor a presence check: the hosts started, and the
 * decision that stopped it. Presence checks are answered: every host is online but those in `offline`.
 */
function startAll(
  machine: RolloutMachine,
  now = T0,
  offline: readonly string[] = [],
): { started: string[]; then: RolloutDecision } {
  const started: string[] = [];
  for (;;) {
    const then = decide(machine, now, offline);
    if (then.kind !== 'start') return { started, then };
    started.push(then.hostId);
  }
}

/** The next decision that is not a presence check, answering those: every host is online but those in `offline`. */
function decide(machine: RolloutMachine, now = T0, offline: readonly string[] = []): RolloutDecision {
  for (;;) {
    const d = machine.next({ now });
    if (d.kind !== 'checkPresence') return d;
    machine.presenceChecked(
      d.hostIds,
      d.hostIds.filter((h) => offline.includes(h)),
      now,
    );
  }
}

/** The host's maintenance ended and its lease (if any) is released. */
function finish(machine: RolloutMachine, hostId: string, state: HostMaintenanceResult['state'] = 'succeeded'): void {
  machine.hostFinished(hostId, {
    hostId,
    state,
    steps: [{ index: 1, kind: 'undrain', mode: 'apply', state: state === 'succeeded' ? 'succeeded' : 'failed' }],
    ...(state === 'succeeded' ? {} : { error: 'verify failed' }),
  });
  machine.hostSettled(hostId);
}

/** Pass a gate without waiting, as the workflow does once it is approved or waited out. */
function passGate(machine: RolloutMachine, wave: number): void {
  const gate = machine.next({ now: T0 });
  expect(gate).toMatchObject({ kind: 'gate', wave });
  if (gate.kind === 'gate') machine.gatePassed(gate);
}

const fail = (): never => {
  throw new Error('no such host');
};

const hostsNamed = (n: number) => Array.from({ length: n }, (_, i) => `h${i}`);

describe('waves', () => {
  it('starts the canary alone, and nothing else until it has finished', () => {
    const m = rollout(hostsNamed(5), { waves: { canary: 1, batchSize: 2, maxInFlight: 4 } });
    expect(startAll(m)).toEqual({ started: ['h0'], then: { kind: 'wait' } });
    finish(m, 'h0');
    passGate(m, 1);
    expect(startAll(m).started).toEqual(['h1', 'h2']);
  });

  it('starts the waves in order, each only once the one before is done', () => {
    const m = rollout(hostsNamed(5), { waves: { canary: 0, batchSize: 2, maxInFlight: 4 } });
    expect(startAll(m).started).toEqual(['h0', 'h1']);
    finish(m, 'h0');
    expect(startAll(m)).toEqual({ started: [], then: { kind: 'wait' } });
    finish(m, 'h1');
    passGate(m, 1);
    expect(startAll(m).started).toEqual(['h2', 'h3']);
    finish(m, 'h2');
    finish(m, 'h3');
    passGate(m, 2);
    expect(startAll(m).started).toEqual(['h4']);
    expect(m.status.currentWave).toBe(2);
  });

  it('marks a wave running while its hosts run, and done once its last host has settled', () => {
    const m = rollout(hostsNamed(5), { waves: { canary: 1, batchSize: 2, maxInFlight: 4 } });
    const states = () => m.status.waves.map((w) => w.state);
    expect(states()).toEqual(['pending', 'pending', 'pending']);
    startAll(m);
    expect(states()).toEqual(['running', 'pending', 'pending']);
    finish(m, 'h0');
    expect(states()).toEqual(['done', 'pending', 'pending']);
    passGate(m, 1);
    expect(startAll(m).started).toEqual(['h1', 'h2']);
    expect(states()).toEqual(['done', 'running', 'pending']);
    finish(m, 'h1', 'failed');
    expect(states()).toEqual(['done', 'running', 'pending']);
    finish(m, 'h2');
    expect(states()).toEqual(['done', 'done', 'pending']);
  });

  it('marks a done wave running again while a retried host of it runs', () => {
    const m = rollout(hostsNamed(3), {
      waves: { canary: 1, batchSize: 2, maxInFlight: 4 },
      failureBudget: { maxFailedHosts: 5 },
    });
    startAll(m);
    finish(m, 'h0', 'failed');
    // The canary failed: the rollout pauses; the operator retries it and resumes.
    expect(decide(m)).toMatchObject({ kind: 'pause' });
    expect(m.status.waves[0]?.state).toBe('done');
    m.actions.retryHost.apply({ ...by, hostId: 'h0' });
    m.actions.resume.apply(by);
    passGate(m, 1);
    expect(startAll(m).started).toEqual(['h0']);
    expect(m.status.waves.map((w) => w.state)).toEqual(['running', 'pending']);
    finish(m, 'h0');
    expect(m.status.waves.map((w) => w.state)).toEqual(['done', 'pending']);
    expect(startAll(m).started).toEqual(['h1', 'h2']);
    expect(m.status.waves.map((w) => w.state)).toEqual(['done', 'running']);
  });

  it('leaves a wave pending until the rollout moves past it in a rollout started before wave-running', () => {
    const plan = planOf({ waves: { canary: 0, batchSize: 2, maxInFlight: 4 } });
    const m = new RolloutMachine(plan, newRollout({ rolloutId: 'r', plan, startedBy: 'test' }, T0), () => true, {
      waveRunning: () => false,
    });
    m.targetsResolved({ hostIds: hostsNamed(3), missing: [], excluded: [], labels: {} });
    expect(startAll(m).started).toEqual(['h0', 'h1']);
    expect(m.status.waves[0]?.state).toBe('pending');
    finish(m, 'h0');
    finish(m, 'h1');
    expect(m.status.waves[0]?.state).toBe('pending');
    passGate(m, 1);
    expect(m.status.waves[0]?.state).toBe('done');
  });

  it('never has more than maxInFlight hosts in flight, and starts the next as one finishes', () => {
    const m = rollout(hostsNamed(4), { waves: { canary: 0, batchSize: 4, maxInFlight: 2 } });
    expect(startAll(m)).toEqual({ started: ['h0', 'h1'], then: { kind: 'wait' } });
    expect(m.status.state).toBe('running');
    finish(m, 'h1');
    expect(startAll(m).started).toEqual(['h2']);
  });

  it('keeps at most perLabel hosts of one failure domain in flight, starting hosts of other domains meanwhile', () => {
    const labels = { h0: { rack: 'r1' }, h1: { rack: 'r1' }, h2: { rack: 'r2' }, h3: {} };
    const m = rollout(
      hostsNamed(4),
      { waves: { canary: 0, batchSize: 4, maxInFlight: 4 }, limits: { perLabel: { rack: 1 } } },
      { labels },
    );
    // h3 has no rack label: it counts as rack "(none)", a domain of its own.
    expect(startAll(m).started).toEqual(['h0', 'h2', 'h3']);
    finish(m, 'h0');
    expect(startAll(m).started).toEqual(['h1']);
  });

  it('reads the failure domains the same from lean targets (by index) as from labels by host', () => {
    const m = rollout(
      hostsNamed(4),
      { waves: { canary: 0, batchSize: 4, maxInFlight: 4 }, limits: { perLabel: { rack: 1 } } },
      { domains: { rack: { values: ['r1', 'r2'], of: [0, 0, 1, -1] } } },
    );
    // h0 and h1 share rack r1 (index 0); h3 has none: "(none)", a domain of its own.
    expect(startAll(m).started).toEqual(['h0', 'h2', 'h3']);
    finish(m, 'h0');
    expect(startAll(m).started).toEqual(['h1']);
  });
});

describe('busy hosts and fleet-wide leases', () => {
  it('tries a host busy in another campaign again after the retry delay, starting others meanwhile', () => {
    const m = rollout(['a', 'b'], { waves: { canary: 0, batchSize: 2, maxInFlight: 1 }, onBusyHost: 'wait' });
    expect(startAll(m).started).toEqual(['a']);
    m.hostBusy('a', T0);
    m.hostSettled('a');
    expect(m.byHost.get('a')).toMatchObject({
      state: 'pending',
      attempts: 0,
      waitingFor: 'host is in another campaign',
    });
    expect(startAll(m).started).toEqual(['b']);
    finish(m, 'b');
    expect(startAll(m, T0 + 500)).toEqual({ started: [], then: { kind: 'wait', untilMs: T0 + RETRY_START_MS } });
    expect(startAll(m, T0 + RETRY_START_MS).started).toEqual(['a']);
    expect(m.byHost.get('a')).toMatchObject({ state: 'running', attempts: 1 });
    expect(m.byHost.get('a')?.waitingFor).toBeUndefined();
  });

  it('skips a busy host when the plan says onBusyHost: skip', () => {
    const m = rollout(['a'], { waves: { canary: 0 }, onBusyHost: 'skip' });
    startAll(m);
    m.hostBusy('a', T0);
    m.hostSettled('a');
    expect(m.byHost.get('a')).toMatchObject({ state: 'skipped', error: expect.stringContaining('another campaign') });
  });

  it('asks for a fleet-wide lease first, and asks again later when every slot is taken', () => {
    const m = rollout(['a', 'b'], { waves: { canary: 0, batchSize: 2, maxInFlight: 2 }, limits: { fleetWide: 3 } });
    expect(decide(m, T0)).toEqual({ kind: 'acquireLease', hostId: 'a', limit: 3 });
    m.leaseRefused('a', T0);
    expect(m.byHost.get('a')?.waitingFor).toBe('fleet-wide limit of 3 hosts under maintenance');
    expect(decide(m, T0)).toEqual({ kind: 'acquireLease', hostId: 'b', limit: 3 });
    m.leaseGranted('b');
    expect(m.byHost.get('b')?.state).toBe('running');
    expect(decide(m, T0 + 1)).toEqual({ kind: 'wait', untilMs: T0 + RETRY_START_MS });
    expect(decide(m, T0 + RETRY_START_MS)).toEqual({ kind: 'acquireLease', hostId: 'a', limit: 3 });
  });
});

describe('offline targets', () => {
  const oneAtATime = { waves: { canary: 0, batchSize: 4, maxInFlight: 1 } };

  it('asks whether a host is online when its turn comes, for as many hosts as there are free slots', () => {
    const m = rollout(hostsNamed(4), { waves: { canary: 0, batchSize: 4, maxInFlight: 2 } });
    expect(m.next({ now: T0 })).toEqual({ kind: 'checkPresence', hostIds: ['h0', 'h1'] });
    m.presenceChecked(['h0', 'h1'], [], T0);
    expect(m.next({ now: T0 })).toEqual({ kind: 'start', hostId: 'h0' });
    expect(m.next({ now: T0 })).toEqual({ kind: 'start', hostId: 'h1' });
    finish(m, 'h0');
    // A host seen online lately starts without asking; one not seen lately is asked about again.
    expect(m.next({ now: T0 + PRESENCE_FRESH_MS })).toEqual({ kind: 'checkPresence', hostIds: ['h2'] });
  });

  it('asks nothing in a rollout started before offline targets, as its history recorded', () => {
    const m = rollout(hostsNamed(2), oneAtATime, { beforeOfflineTargets: true, offline: ['x'] });
    expect(m.next({ now: T0 })).toEqual({ kind: 'start', hostId: 'h0' });
    expect(m.status.hosts.map((h) => h.hostId)).toEqual(['h0', 'h1']);
  });

  it('waits for a host offline at its turn, starting the others meanwhile, and starts it once it is back', () => {
    const m = rollout(['a', 'b'], { ...oneAtATime, offlineWait: '10m' });
    expect(startAll(m, T0, ['a'])).toEqual({ started: ['b'], then: { kind: 'wait' } });
    const waitUntil = new Date(T0 + 600_000).toISOString();
    expect(m.byHost.get('a')).toMatchObject({
      state: 'pending',
      offline: { since: new Date(T0).toISOString(), waitUntil },
      waitingFor: `offline; waiting for it until ${waitUntil}`,
    });
    expect(hostFate(m.byHost.get('a') ?? fail())).toBe('waiting-offline');
    finish(m, 'b');
    // Looked for again a tenth of the wait later (at most 30 s).
    expect(startAll(m, T0 + 1_000, ['a'])).toEqual({ started: [], then: { kind: 'wait', untilMs: T0 + 30_000 } });
    expect(startAll(m, T0 + 30_000, ['a']).then).toEqual({ kind: 'wait', untilMs: T0 + 60_000 });
    expect(startAll(m, T0 + 60_000).started).toEqual(['a']);
    expect(m.byHost.get('a')?.offline?.back).toBe(new Date(T0 + 60_000).toISOString());
    expect(m.byHost.get('a')?.waitingFor).toBeUndefined();
    finish(m, 'a');
    expect(hostFate(m.byHost.get('a') ?? fail())).toBe('done-after-offline');
  });

  it('fails a host still offline once offlineWait has passed since its turn came', () => {
    const m = rollout(['a'], { ...oneAtATime, offlineWait: '1m', failureBudget: { maxFailedHosts: 1 } });
    startAll(m, T0, ['a']);
    expect(startAll(m, T0 + 59_000, ['a']).then).toEqual({ kind: 'wait', untilMs: T0 + 60_000 });
    expect(startAll(m, T0 + 60_000, ['a']).then).toEqual({ kind: 'finish' });
    const a = m.byHost.get('a') ?? fail();
    expect(a).toMatchObject({
      state: 'failed',
      error: `offline since ${new Date(T0).toISOString()}; waited 1m for it, then failed as the plan says (offlineWait)`,
    });
    expect(hostFate(a)).toBe('waited-then-failed');
    expect(m.status.failureBudget.failed).toBe(1);
  });

  it('skips a host offline at its turn with onOffline: skip, counted as skipped, and completes', () => {
    const m = rollout(['a', 'b'], { ...oneAtATime, onOffline: 'skip' });
    expect(startAll(m, T0, ['a']).started).toEqual(['b']);
    expect(m.byHost.get('a')).toMatchObject({ state: 'skipped', error: expect.stringContaining('onOffline: skip') });
    finish(m, 'b');
    expect(decide(m)).toEqual({ kind: 'finish' });
    const end = m.finish();
    expect(end.state).toBe('completed');
    expect(end.counts).toMatchObject({ succeeded: 1, skipped: 1, failed: 0 });
    expect(end.failureBudget.failed).toBe(0);
    expect(end.message).toBe('skipped as the plan says, being offline: a');
    expect(hostFate(m.byHost.get('a') ?? fail())).toBe('skipped-offline');
  });

  it('fails a host offline at its turn with onOffline: fail, against the failure budget', () => {
    const m = rollout(['a', 'b'], { ...oneAtATime, onOffline: 'fail', failureBudget: { maxFailedHosts: 0 } });
    startAll(m, T0, ['a']);
    expect(m.byHost.get('a')).toMatchObject({ state: 'failed', error: expect.stringContaining('onOffline: fail') });
    expect(hostFate(m.byHost.get('a') ?? fail())).toBe('failed-offline');
  });

  it('keeps hosts offline when targets resolved, after the online ones, and waits for them at their turn', () => {
    const m = rollout(['a', 'b'], { waves: { canary: 1, batchSize: 2 } }, { offline: ['c'], missing: ['c', 'z'] });
    expect(m.status.waves.map((w) => w.hosts)).toEqual([['a'], ['b', 'c']]);
    expect(m.status.missingHosts).toEqual(['z']);
    expect(m.byHost.get('c')).toMatchObject({
      state: 'pending',
      offline: { since: new Date(T0).toISOString(), atResolution: true },
    });
    expect(m.status.failureBudget.maxFailedHosts).toBe(1);
  });

  it('settles hosts offline when targets resolved at once with skip or fail, in no wave', () => {
    for (const [onOffline, state] of [
      ['skip', 'skipped'],
      ['fail', 'failed'],
    ] as const) {
      const m = rollout(['a'], { onOffline }, { offline: ['c'] });
      expect(m.status.waves.map((w) => w.hosts)).toEqual([['a']]);
      expect(m.byHost.get('c')).toMatchObject({
        state,
        wave: -1,
        error: `offline when targets resolved; ${state} as the plan says (onOffline: ${onOffline})`,
      });
      expect(m.status.counts[state]).toBe(1);
    }
  });

  it('looks for a retried host afresh, with a new wait', () => {
    const m = rollout(['a'], { ...oneAtATime, offlineWait: '1m', failureBudget: { maxFailedHosts: 1 } });
    startAll(m, T0, ['a']);
    startAll(m, T0 + 60_000, ['a']);
    expect(m.byHost.get('a')?.state).toBe('failed');
    m.actions.retryHost.apply({ ...by, hostId: 'a' });
    expect(m.byHost.get('a')?.offline).toBeUndefined();
    // The finished rollout first steps back to the retried host's wave.
    expect(decide(m, T0 + 120_000, ['a'])).toEqual({ kind: 'wait' });
    expect(startAll(m, T0 + 120_000, ['a']).then).toEqual({ kind: 'wait', untilMs: T0 + 126_000 });
    expect(m.byHost.get('a')?.offline?.waitUntil).toBe(new Date(T0 + 180_000).toISOString());
  });

  it('checks presence before asking for a fleet-wide lease', () => {
    const m = rollout(['a'], { limits: { fleetWide: 3 } });
    expect(m.next({ now: T0 })).toEqual({ kind: 'checkPresence', hostIds: ['a'] });
    m.presenceChecked(['a'], [], T0);
    expect(m.next({ now: T0 })).toEqual({ kind: 'acquireLease', hostId: 'a', limit: 3 });
  });
});

describe('the failure budget', () => {
  const plan = { waves: { canary: 0, batchSize: 4, maxInFlight: 1 }, failureBudget: { maxFailedHosts: 0 } };

  it('pauses the rollout when more hosts failed than allowed, and starts nothing while paused', () => {
    const m = rollout(hostsNamed(4), plan);
    startAll(m);
    finish(m, 'h0', 'rolled-back');
    expect(m.next({ now: T0 })).toEqual({ kind: 'pause', reason: 'failure budget spent: 1 hosts failed, 0 allowed' });
    expect(m.status.paused).toMatchObject({ by: 'refit', at: new Date(T0).toISOString() });
    expect(startAll(m)).toEqual({ started: [], then: { kind: 'wait' } });
    expect(m.status.state).toBe('paused');
  });

  it('lets a host in flight finish when it pauses: no abort, and its success counts', () => {
    const m = rollout(hostsNamed(4), { ...plan, waves: { canary: 0, batchSize: 4, maxInFlight: 2 } });
    expect(startAll(m).started).toEqual(['h0', 'h1']);
    finish(m, 'h0', 'rolled-back');
    expect(m.next({ now: T0 }).kind).toBe('pause');
    expect(m.abortsInFlight).toBe(false);
    expect([...m.hostsInFlight]).toEqual(['h1']);
    finish(m, 'h1');
    expect(startAll(m).started).toEqual([]);
    expect(m.status.hosts.map((h) => h.state)).toEqual(['rolled-back', 'succeeded', 'pending', 'pending']);
    expect(m.status.state).toBe('paused');
  });

  it('accepts the failures so far once resumed, and pauses again at the next one', () => {
    const m = rollout(hostsNamed(4), plan);
    startAll(m);
    finish(m, 'h0', 'failed');
    expect(m.next({ now: T0 }).kind).toBe('pause');
    m.actions.resume.apply(by);
    expect(startAll(m).started).toEqual(['h1']);
    finish(m, 'h1');
    expect(startAll(m).started).toEqual(['h2']);
    finish(m, 'h2', 'held');
    expect(m.next({ now: T0 })).toEqual({ kind: 'pause', reason: 'failure budget spent: 2 hosts failed, 0 allowed' });
  });

  it('carries on while the failures stay within the budget', () => {
    const m = rollout(hostsNamed(3), { ...plan, failureBudget: { maxFailedHosts: 1 } });
    startAll(m);
    finish(m, 'h0', 'failed');
    expect(startAll(m).started).toEqual(['h1']);
  });
});

describe('the canary', () => {
  it('pauses the rollout once when the canary failed; resumed, the next wave follows', () => {
    const m = rollout(hostsNamed(3), { waves: { canary: 1, batchSize: 2 }, failureBudget: { maxFailedHosts: 5 } });
    startAll(m);
    finish(m, 'h0', 'held');
    expect(m.next({ now: T0 })).toEqual({
      kind: 'pause',
      reason: 'the canary failed: retry it, skip it, resume or cancel',
    });
    expect(startAll(m)).toEqual({ started: [], then: { kind: 'wait' } });
    m.actions.resume.apply(by);
    passGate(m, 1);
    expect(startAll(m).started).toEqual(['h1', 'h2']);
  });
});

describe('gates between waves', () => {
  it('waits for an approval after the canary when the plan asks for it', () => {
    const m = rollout(hostsNamed(2), { waves: { canary: 1, batchSize: 1 }, approvals: { afterCanary: true } });
    startAll(m);
    finish(m, 'h0');
    const gate = m.next({ now: T0 });
    expect(gate).toEqual({ kind: 'gate', wave: 1, approval: true });
    expect(m.status).toMatchObject({ state: 'waiting', pendingApproval: { gate: 'after-canary', wave: 1 } });
    expect(m.approvalSettled).toBe(false);
    m.actions.approve.apply(by);
    expect(m.approvalSettled).toBe(true);
    expect(m.status.approvals).toEqual([expect.objectContaining({ gate: 'after-canary', wave: 1, by: 'alice' })]);
    if (gate.kind === 'gate') m.gatePassed(gate);
    expect(startAll(m).started).toEqual(['h1']);
  });

  it('waits for an approval before every wave with afterEachWave', () => {
    const m = rollout(hostsNamed(3), { waves: { canary: 0, batchSize: 1 }, approvals: { afterEachWave: true } });
    startAll(m);
    finish(m, 'h0');
    expect(m.next({ now: T0 })).toEqual({ kind: 'gate', wave: 1, approval: true });
    expect(m.status.pendingApproval?.gate).toBe('before-wave-1');
  });

  it("waits for an approval between waves with pauseBetweenWaves: 'approval'", () => {
    const m = rollout(hostsNamed(2), { waves: { canary: 0, batchSize: 1, pauseBetweenWaves: 'approval' } });
    startAll(m);
    finish(m, 'h0');
    expect(m.next({ now: T0 })).toEqual({ kind: 'gate', wave: 1, approval: true });
  });

  it('waits the given time between waves, saying so while it waits', () => {
    const m = rollout(hostsNamed(2), { waves: { canary: 1, batchSize: 1, pauseBetweenWaves: '3s' } });
    startAll(m);
    finish(m, 'h0');
    const gate = m.next({ now: T0 });
    expect(gate).toEqual({ kind: 'gate', wave: 1, pauseMs: 3_000 });
    expect(m.status).toMatchObject({ state: 'waiting', message: 'pausing 3s between waves' });
    if (gate.kind === 'gate') m.gatePassed(gate);
    expect(m.status.message).toBeUndefined();
    expect(startAll(m).started).toEqual(['h1']);
  });

  it('passes a gate at once when the plan has none, and each gate only once', () => {
    const m = rollout(hostsNamed(2), { waves: { canary: 1, batchSize: 1 } });
    startAll(m);
    finish(m, 'h0');
    expect(m.next({ now: T0 })).toEqual({ kind: 'gate', wave: 1 });
    m.gatePassed({ kind: 'gate', wave: 1 });
    expect(decide(m, T0)).toEqual({ kind: 'start', hostId: 'h1' });
  });
});

describe('maintenance windows', () => {
  const windows = { windows: [{ every: '10s', open: '5s' }], hostDuration: '3s', waves: { canary: 0 } };

  it('waits until the next window a host fits into, saying when it opens', () => {
    const m = rollout(['a'], windows);
    // 4 s into a 5 s window: a 3 s host would not finish before it closes.
    expect(decide(m, T0 + 4_000)).toEqual({ kind: 'wait', untilMs: T0 + 10_000 });
    expect(m.status).toMatchObject({
      state: 'waiting',
      nextWindowAt: new Date(T0 + 10_000).toISOString(),
      message: `the host would not finish before the window closes; next window opens ${new Date(T0 + 10_000).toISOString()}`,
    });
    expect(decide(m, T0 + 10_000)).toEqual({ kind: 'start', hostId: 'a' });
    expect(m.status.nextWindowAt).toBeNull();
    expect(m.status.message).toBeUndefined();
  });

  it('starts a host inside a window with room for it', () => {
    expect(decide(rollout(['a'], windows), T0 + 1_000)).toEqual({ kind: 'start', hostId: 'a' });
  });
});

describe('cancel', () => {
  it('starts nothing more, lets the hosts in flight finish, and skips the hosts never started', () => {
    const m = rollout(hostsNamed(3), { waves: { canary: 0, batchSize: 3, maxInFlight: 1 } });
    startAll(m);
    m.actions.cancel.apply({ by: 'bob', reason: 'wrong plan' });
    expect(m.next({ now: T0 })).toEqual({ kind: 'finish' });
    expect(m.abortsInFlight).toBe(false);
    finish(m, 'h0');
    const end = m.finish();
    expect(end.state).toBe('cancelled');
    expect(end.hosts.map((h) => [h.hostId, h.state, h.error])).toEqual([
      ['h0', 'succeeded', undefined],
      ['h1', 'skipped', 'rollout cancelled'],
      ['h2', 'skipped', 'rollout cancelled'],
    ]);
  });

  it('asks the hosts in flight to abort when cancelled with onCancel: rollback', () => {
    const m = rollout(hostsNamed(3), { waves: { canary: 0, batchSize: 3, maxInFlight: 2 }, onCancel: 'rollback' });
    startAll(m);
    expect(m.abortsInFlight).toBe(false);
    m.actions.cancel.apply(by);
    expect(m.next({ now: T0 })).toEqual({ kind: 'finish' });
    expect(m.abortsInFlight).toBe(true);
    expect([...m.hostsInFlight]).toEqual(['h0', 'h1']);
  });

  it('ends an approval gate when cancelled', () => {
    const m = rollout(hostsNamed(2), { waves: { canary: 1, batchSize: 1 }, approvals: { afterCanary: true } });
    startAll(m);
    finish(m, 'h0');
    m.next({ now: T0 });
    m.actions.cancel.apply(by);
    expect(m.approvalSettled).toBe(true);
  });
});

describe('the end of a rollout', () => {
  it('completes when every host succeeded', () => {
    const m = rollout(['a'], { waves: { canary: 0 } });
    startAll(m);
    finish(m, 'a');
    expect(m.next({ now: T0 })).toEqual({ kind: 'finish' });
    expect(m.finish()).toMatchObject({ state: 'completed', paused: null, counts: { succeeded: 1, pending: 0 } });
    expect(m.status.message).toBeUndefined();
  });

  it('ends only once no host is in flight, its fleet-wide lease released included', () => {
    const m = rollout(['a'], { waves: { canary: 0 }, limits: { fleetWide: 1 } });
    m.next({ now: T0 });
    m.leaseGranted('a');
    m.hostFinished('a', { hostId: 'a', state: 'succeeded', steps: [] });
    expect(m.next({ now: T0 })).toEqual({ kind: 'wait' });
    m.hostSettled('a');
    expect(m.next({ now: T0 })).toEqual({ kind: 'finish' });
  });

  it('fails when a host did not succeed, and says so', () => {
    const m = rollout(['a', 'b'], { waves: { canary: 0, batchSize: 2 }, failureBudget: { maxFailedHosts: 1 } });
    startAll(m);
    finish(m, 'a', 'rolled-back');
    finish(m, 'b');
    expect(m.next({ now: T0 })).toEqual({ kind: 'finish' });
    expect(m.finish()).toMatchObject({ state: 'failed', message: 'some hosts did not succeed' });
  });

  it('fails naming the hosts that were not present, even when the others succeeded', () => {
    const m = rollout(['a'], { waves: { canary: 0 } }, { missing: ['gone'] });
    startAll(m);
    finish(m, 'a');
    m.next({ now: T0 });
    expect(m.finish()).toMatchObject({ state: 'failed', message: 'hosts not present: gone' });
  });

  it('fails at once when no host matched the targets', () => {
    const m = rollout([]);
    expect(m.next({ now: T0 })).toEqual({ kind: 'finish' });
    expect(m.finish()).toMatchObject({ state: 'failed', message: 'no host matched the targets' });
  });
});

describe('continue-as-new', () => {
  it('continues as new only once no host is in flight', () => {
    const m = rollout(hostsNamed(2), { waves: { canary: 0, batchSize: 2, maxInFlight: 1 } });
    startAll(m);
    expect(m.next({ now: T0, historyFull: true })).toEqual({ kind: 'wait' });
    finish(m, 'h0');
    expect(m.next({ now: T0, historyFull: true })).toEqual({ kind: 'continueAsNew' });
  });

  it('hands the next run everything it needs to carry on, a pause and passed gates included', () => {
    const m = rollout(hostsNamed(3), { waves: { canary: 1, batchSize: 1 } });
    startAll(m);
    finish(m, 'h0');
    passGate(m, 1);
    m.actions.pause.apply({ by: 'dave', reason: 'lunch' });
    expect(m.next({ now: T0, historyFull: true })).toEqual({ kind: 'continueAsNew' });
    const carried: RolloutCarried = structuredClone(m.carryOver());
    expect(carried.status.runs).toBe(1);
    expect(carried.gatesPassed).toEqual([1]);

    const next = new RolloutMachine(planOf({ waves: { canary: 1, batchSize: 1 } }), carried);
    expect(next.next({ now: T0 })).toEqual({ kind: 'wait' });
    expect(next.status.paused).toMatchObject({ by: 'dave', reason: 'lunch' });
    next.actions.resume.apply(by);
    expect(startAll(next).started).toEqual(['h1']);
  });
});

describe('a self-pause', () => {
  // The workflow records the pause in the audit trail before it asks again; the loop the machine
  // replaced went on from there, so running rollouts replay only if the machine does too.
  it('is followed by waiting while paused, even when the history is full by then', () => {
    const canary = rollout(hostsNamed(2), { waves: { canary: 1, batchSize: 1 }, failureBudget: { maxFailedHosts: 5 } });
    startAll(canary);
    finish(canary, 'h0', 'failed');
    expect(canary.next({ now: T0 }).kind).toBe('pause');
    expect(canary.next({ now: T0, historyFull: true })).toEqual({ kind: 'wait' });
    expect(canary.next({ now: T0, historyFull: true })).toEqual({ kind: 'continueAsNew' });

    const budget = rollout(hostsNamed(2), {
      waves: { canary: 0, batchSize: 2, maxInFlight: 1 },
      failureBudget: { maxFailedHosts: 0 },
    });
    startAll(budget);
    finish(budget, 'h0', 'failed');
    expect(budget.next({ now: T0 }).kind).toBe('pause');
    expect(budget.next({ now: T0, historyFull: true })).toEqual({ kind: 'wait' });
  });
});

describe('host bookkeeping', () => {
  it('keeps the counts and the failed hosts of the budget in step with the host states', () => {
    const m = rollout(hostsNamed(4), {
      waves: { canary: 0, batchSize: 4, maxInFlight: 4 },
      failureBudget: { maxFailedHosts: 4 },
    });
    startAll(m);
    finish(m, 'h0');
    finish(m, 'h1', 'held');
    finish(m, 'h2', 'rolled-back');
    m.hostFailedToRun('h3', 'child workflow could not start');
    expect(m.status.counts).toEqual({
      pending: 0,
      running: 0,
      succeeded: 1,
      failed: 1,
      'rolled-back': 1,
      held: 1,
      skipped: 0,
    });
    expect(m.status.failureBudget).toEqual({ maxFailedHosts: 4, failed: 3 });
    expect(m.byHost.get('h3')).toMatchObject({ state: 'failed', error: 'child workflow could not start' });
  });

  it("records the last step a host reached, a revert as 'revert:<kind>'", () => {
    const m = rollout(['a'], { waves: { canary: 0 } });
    startAll(m);
    m.hostFinished('a', {
      hostId: 'a',
      state: 'rolled-back',
      error: 'verify failed',
      steps: [
        { index: 0, kind: 'drain', mode: 'apply', state: 'succeeded' },
        { index: 0, kind: 'drain', mode: 'revert', state: 'succeeded' },
      ],
    });
    expect(m.byHost.get('a')).toMatchObject({ state: 'rolled-back', step: 'revert:drain', error: 'verify failed' });
  });

  it('wakes a waiting rollout on every host change and operator action', () => {
    const m = rollout(['a', 'b'], { waves: { canary: 0, batchSize: 2, maxInFlight: 1 } });
    startAll(m);
    const seen = m.version;
    m.hostFinished('a', { hostId: 'a', state: 'succeeded', steps: [] });
    expect(m.version).toBeGreaterThan(seen);
    const afterFinish = m.version;
    m.hostSettled('a');
    expect(m.version).toBeGreaterThan(afterFinish);
    const afterSettle = m.version;
    m.actions.pause.apply(by);
    expect(m.version).toBeGreaterThan(afterSettle);
  });
});
