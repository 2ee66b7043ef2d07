import {
  ParentClosePolicy,
  WorkflowIdReusePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SignalDefinition, UpdateDefinition } from '@temporalio/common';
import type { ControllerActivities } from '../schemas/activities.js';
import { hostWorkflowId } from '../schemas/names.js';
import type {
  HostState,
  HostStatus,
  OperatorAction,
  RolloutCarried,
  RolloutInput,
  RolloutStatus,
} from '../schemas/rollout.js';
import { hostMaintenance } from './host-maintenance.js';
import {
  HOST_ACTIONS,
  OPERATOR_ACTIONS,
  abortHostSignal,
  hostIdKey,
  hostSignals,
  hostUpdates,
  operatorSignals,
  operatorUpdates,
  phaseKey,
  rolloutIdKey,
  rolloutStatusQuery,
} from './messages.js';
import { audit, userActor } from './audit.js';
import { createOperatorActions, type Action, type HostPatch } from './operator.js';
import { planWaves, resolveCount } from './waves.js';
import { startDecision } from '../schemas/windows.js';

const { resolveTargets, acquireLease, releaseLease } = proxyActivities<ControllerActivities>({
  startToCloseTimeout: '1m',
  retry: { maximumInterval: '10s' },
});

export const HOST_STATES: HostState[] = ['pending', 'running', 'succeeded', 'failed', 'rolled-back', 'held', 'skipped'];
export const FAILED_STATES = new Set<HostState>(['failed', 'rolled-back', 'held']);
const DEFAULT_HISTORY_LIMIT = 10_000;
/** How long to wait before asking again for a busy host or a fleet-wide slot. */
const RETRY_START_MS = 2_000;

function emptyStatus(input: RolloutInput): RolloutStatus {
  return {
    id: input.rolloutId,
    name: input.plan.name,
    state: 'waiting',
    message: 'resolving targets from the inventory',
    startedBy: input.startedBy,
    startedAt: new Date(workflowInfo().startTime).toISOString(),
    missingHosts: [],
    excludedHosts: [],
    waves: [],
    hosts: [],
    counts: Object.fromEntries(HOST_STATES.map((s) => [s, 0])) as Record<HostState, number>,
    failureBudget: { maxFailedHosts: 0, failed: 0 },
    currentWave: 0,
    paused: null,
    pendingApproval: null,
    approvals: [],
    cancelled: null,
    nextWindowAt: null,
    runs: 0,
  };
}

/**
 * A campaign across the fleet: canary first, then waves, a bounded number of hosts in flight per
 * rollout, per failure domain and fleet-wide, only inside maintenance windows, pausing itself when
 * the failure budget is spent. It continues as new (with all its state) before its history grows
 * large, after the hosts in flight have finished.
 */
export async function fleetRollout(input: RolloutInput): Promise<RolloutStatus> {
  const { plan } = input;
  const carried: RolloutCarried = input.carried ?? {
    status: emptyStatus(input),
    domains: {},
    acceptedFailures: 0,
    gatesPassed: [],
  };
  const status = carried.status;
  const gatesPassed = new Set(carried.gatesPassed);
  const byHost = new Map(status.hosts.map((h) => [h.hostId, h]));
  const inFlight = new Map<string, Promise<void>>();
  /** Bumped by every event that may let the loop make progress; conditions wait on it. */
  let epoch = 0;
  const bump = () => void (epoch += 1);
  const isOver = () => ['completed', 'failed', 'cancelled'].includes(status.state);

  setHandler(rolloutStatusQuery, () => status);
  const actions = createOperatorActions({ status, byHost, carried, isOver, setHost, onChange: bump });
  // Every operator action is audited with who asked; an update answers once its event is stored.
  const ACTION_EVENTS = {
    pause: 'rollout.paused',
    resume: 'rollout.resumed',
    cancel: 'rollout.cancelled',
    approve: 'rollout.approved',
    retryHost: 'host.retried',
    skipHost: 'host.skipped',
  } as const;
  const auditAction = (name: keyof typeof ACTION_EVENTS, a: OperatorAction & { hostId?: string }) =>
    audit({
      type: ACTION_EVENTS[name],
      actor: userActor(a.by),
      rolloutId: input.rolloutId,
      ...(a.hostId ? { hostId: a.hostId } : {}),
      data: { action: name, ...(a.reason ? { reason: a.reason } : {}), state: status.state },
    });
  /** An action as an update (validated, answered with the status) and as a signal of the same name. */
  function handle<A extends OperatorAction>(
    name: keyof typeof ACTION_EVENTS,
    update: UpdateDefinition<RolloutStatus, [A]>,
    signal: SignalDefinition<[A]>,
    action: Action<A>,
  ): void {
    setHandler(
      update,
      async (a: A) => {
        action.apply(a);
        await auditAction(name, a);
        return status;
      },
      { validator: (a: A) => action.check(a) },
    );
    setHandler(signal, async (a: A) => {
      if (action.tryApply(a)) await auditAction(name, a);
    });
  }
  for (const name of OPERATOR_ACTIONS) handle(name, operatorUpdates[name], operatorSignals[name], actions[name]);
  for (const name of HOST_ACTIONS) handle(name, hostUpdates[name], hostSignals[name], actions[name]);

  function setHost(host: HostStatus, patch: HostPatch): void {
    status.counts[host.state] -= 1;
    for (const [key, value] of Object.entries(patch) as [keyof HostStatus, unknown][]) {
      if (value === undefined) delete host[key];
      else (host as unknown as Record<string, unknown>)[key] = value;
    }
    status.counts[host.state] += 1;
    status.failureBudget.failed = status.hosts.filter((h) => FAILED_STATES.has(h.state)).length;
    bump();
  }

  if (!input.carried) {
    const targets = await resolveTargets(plan.targets);
    await audit({
      type: 'rollout.started',
      actor: userActor(input.startedBy),
      rolloutId: input.rolloutId,
      data: {
        plan: plan.name,
        steps: plan.steps.map((s) => s.kind),
        hosts: targets.hostIds,
        missing: targets.missing,
        excluded: targets.excluded,
      },
    });
    status.missingHosts = targets.missing;
    status.excludedHosts = targets.excluded;
    status.failureBudget.maxFailedHosts = resolveCount(plan.failureBudget.maxFailedHosts, targets.hostIds.length);
    const domainLabels = Object.keys(plan.limits.perLabel);
    planWaves(targets.hostIds, plan.waves).forEach((hosts, index) => {
      status.waves.push({ index, hosts, state: 'pending' });
      for (const hostId of hosts) {
        const host: HostStatus = { hostId, state: 'pending', step: null, wave: index, attempts: 0 };
        status.hosts.push(host);
        byHost.set(hostId, host);
        status.counts.pending += 1;
        const labels = targets.labels[hostId] ?? {};
        carried.domains[hostId] = Object.fromEntries(domainLabels.map((l) => [l, labels[l] ?? '(none)']));
      }
    });
    delete status.message;
  }

  const budgetSpent = () =>
    status.failureBudget.failed > status.failureBudget.maxFailedHosts &&
    status.failureBudget.failed > carried.acceptedFailures;

  function domainHasRoom(hostId: string): boolean {
    const mine = carried.domains[hostId] ?? {};
    return Object.entries(plan.limits.perLabel).every(([label, max]) => {
      const busy = [...inFlight.keys()].filter((h) => carried.domains[h]?.[label] === mine[label]).length;
      return busy < max;
    });
  }

  /** Pending hosts of the waves reached so far, in order, whose failure domains have room. */
  function nextHost(now: number): HostStatus | undefined {
    return status.hosts.find(
      (h) =>
        h.state === 'pending' &&
        h.wave <= status.currentWave &&
        !inFlight.has(h.hostId) &&
        !(h.waitingFor && retryAt.get(h.hostId)! > now) &&
        domainHasRoom(h.hostId),
    );
  }
  const retryAt = new Map<string, number>();
  const drains = plan.steps.some((s) => s.kind === 'drain');

  async function maintain(host: HostStatus): Promise<void> {
    try {
      const child = await startChild(hostMaintenance, {
        workflowId: hostWorkflowId(host.hostId),
        args: [
          {
            rolloutId: input.rolloutId,
            hostId: host.hostId,
            steps: plan.steps,
            onHostFailure: plan.onHostFailure,
            parentId: workflowInfo().workflowId,
            // Only a drain needs it, and a wave of thousands of ids would weigh on every child's history.
            ...(drains ? { avoidHosts: status.waves[host.wave]?.hosts ?? [] } : {}),
          },
        ],
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        typedSearchAttributes: [
          { key: rolloutIdKey, value: input.rolloutId },
          { key: hostIdKey, value: host.hostId },
          { key: phaseKey, value: 'starting' },
        ],
      });
      if (status.cancelled && plan.onCancel === 'rollback') await abortHost(host.hostId);
      const result = await child.result();
      const last = result.steps.at(-1);
      const step = last ? (last.mode === 'revert' ? `revert:${last.kind}` : last.kind) : null;
      setHost(host, { state: result.state, step, ...(result.error ? { error: result.error } : {}) });
    } catch (err) {
      if (err instanceof Error && err.name === 'WorkflowExecutionAlreadyStartedError') {
        if (plan.onBusyHost === 'skip') {
          setHost(host, { state: 'skipped', error: 'host is in another campaign; skipped as the plan says' });
        } else {
          retryAt.set(host.hostId, Date.now() + RETRY_START_MS);
          setHost(host, { state: 'pending', attempts: host.attempts - 1, waitingFor: 'host is in another campaign' });
        }
      } else {
        setHost(host, { state: 'failed', error: err instanceof Error ? err.message : String(err) });
      }
    } finally {
      if (plan.limits.fleetWide !== undefined) await releaseLease({ hostId: host.hostId });
    }
  }

  async function abortHost(hostId: string): Promise<void> {
    const by = status.cancelled?.by ?? 'refit';
    await getExternalWorkflowHandle(hostWorkflowId(hostId))
      .signal(abortHostSignal, { by, reason: 'rollout cancelled' })
      .catch(() => undefined);
  }

  function start(host: HostStatus): void {
    setHost(host, { state: 'running', attempts: host.attempts + 1, waitingFor: undefined });
    const p = maintain(host).finally(() => {
      inFlight.delete(host.hostId);
      bump();
    });
    inFlight.set(host.hostId, p);
  }

  const historyLimit = input.historyLimit ?? DEFAULT_HISTORY_LIMIT;
  const historyFull = () => workflowInfo().historyLength > historyLimit || workflowInfo().continueAsNewSuggested;
  const waitForChange = async (timeoutMs?: number) => {
    const seen = epoch;
    if (timeoutMs === undefined) await condition(() => epoch !== seen);
    else await condition(() => epoch !== seen, Math.max(1, timeoutMs));
  };

  for (;;) {
    if (status.cancelled) break;
    if (historyFull() && inFlight.size === 0) {
      await condition(allHandlersFinished);
      status.runs += 1;
      return continueAsNew<typeof fleetRollout>({ ...input, carried: { ...carried, gatesPassed: [...gatesPassed] } });
    }
    const wave = status.waves[status.currentWave];
    if (!wave) {
      if (inFlight.size === 0 && !status.hosts.some((h) => h.state === 'pending')) break;
      status.currentWave = Math.max(0, status.waves.length - 1);
      await waitForChange();
      continue;
    }
    const open = wave.hosts.some((h) => ['pending', 'running'].includes(byHost.get(h)?.state ?? ''));
    if (!open) {
      wave.state = 'done';
      const canaryFailed =
        wave.index === 0 &&
        plan.waves.canary > 0 &&
        status.waves.length > 1 &&
        wave.hosts.some((h) => FAILED_STATES.has(byHost.get(h)?.state ?? 'pending'));
      if (canaryFailed && !gatesPassed.has(-1)) {
        gatesPassed.add(-1);
        await pauseSelf('the canary failed: retry it, skip it, resume or cancel');
      }
      if (status.paused) {
        status.state = 'paused';
        await waitForChange();
        continue;
      }
      const next = wave.index + 1;
      if (next < status.waves.length && !gatesPassed.has(next)) {
        await passGate(next);
        continue;
      }
      status.currentWave = next;
      continue;
    }
    if (!status.paused && budgetSpent()) {
      await pauseSelf(
        `failure budget spent: ${status.failureBudget.failed} hosts failed, ${status.failureBudget.maxFailedHosts} allowed`,
      );
    }
    if (status.paused) {
      status.state = 'paused';
      await waitForChange();
      continue;
    }
    if (inFlight.size >= plan.waves.maxInFlight) {
      status.state = 'running';
      await waitForChange();
      continue;
    }
    const host = nextHost(Date.now());
    if (!host) {
      const soonest = Math.min(...[...retryAt.values()].filter((t) => t > Date.now()));
      status.state = inFlight.size > 0 ? 'running' : 'waiting';
      await waitForChange(Number.isFinite(soonest) ? soonest - Date.now() : undefined);
      continue;
    }
    const decision = startDecision(plan.windows, Date.now(), plan.hostDuration);
    if (!decision.start) {
      status.state = inFlight.size > 0 ? 'running' : 'waiting';
      status.nextWindowAt = new Date(decision.waitUntil).toISOString();
      status.message = `${decision.reason}; next window opens ${status.nextWindowAt}`;
      await waitForChange(decision.waitUntil - Date.now());
      status.nextWindowAt = null;
      delete status.message;
      continue;
    }
    if (
      plan.limits.fleetWide !== undefined &&
      !(await acquireLease({ hostId: host.hostId, rolloutId: input.rolloutId, limit: plan.limits.fleetWide }))
    ) {
      retryAt.set(host.hostId, Date.now() + RETRY_START_MS);
      setHost(host, { waitingFor: `fleet-wide limit of ${plan.limits.fleetWide} hosts under maintenance` });
      continue;
    }
    status.state = 'running';
    start(host);
  }

  /** The rollout pauses itself (canary failed, budget spent) and says so in the audit trail. */
  async function pauseSelf(reason: string): Promise<void> {
    status.paused = { reason, by: 'refit', at: new Date().toISOString() };
    await audit({ type: 'rollout.paused', actor: 'controller', rolloutId: input.rolloutId, data: { reason } });
  }

  async function passGate(wave: number): Promise<void> {
    const gate = plan.waves.pauseBetweenWaves;
    const approval =
      gate === 'approval' ||
      plan.approvals.afterEachWave ||
      (wave === 1 && plan.waves.canary > 0 && plan.approvals.afterCanary);
    if (approval) {
      status.state = 'waiting';
      status.pendingApproval = {
        gate: wave === 1 && plan.waves.canary > 0 ? 'after-canary' : `before-wave-${wave}`,
        wave,
        since: new Date().toISOString(),
      };
      await condition(() => status.pendingApproval === null || status.cancelled !== null);
    } else if (typeof gate === 'number' && gate > 0) {
      status.state = 'waiting';
      status.message = `pausing ${gate / 1000}s between waves`;
      await condition(() => status.cancelled !== null, gate);
      delete status.message;
    }
    gatesPassed.add(wave);
  }

  if (status.cancelled && plan.onCancel === 'rollback') await Promise.all([...inFlight.keys()].map(abortHost));
  await Promise.all(inFlight.values());
  for (const h of status.hosts)
    if (h.state === 'pending' && status.cancelled) setHost(h, { state: 'skipped', error: 'rollout cancelled' });

  const allSucceeded =
    status.hosts.every((h) => h.state === 'succeeded' || h.state === 'skipped') && status.missingHosts.length === 0;
  status.state = status.cancelled ? 'cancelled' : allSucceeded && status.counts.succeeded > 0 ? 'completed' : 'failed';
  if (status.state === 'failed' && !status.message) {
    status.message =
      status.missingHosts.length > 0
        ? `hosts not present: ${status.missingHosts.join(', ')}`
        : status.hosts.length === 0
          ? 'no host matched the targets'
          : 'some hosts did not succeed';
  }
  status.paused = null;
  upsertSearchAttributes([{ key: phaseKey, value: status.state }]);
  await audit({
    type:
      status.state === 'completed'
        ? 'rollout.completed'
        : status.state === 'cancelled'
          ? 'rollout.cancelled'
          : 'rollout.failed',
    actor: 'controller',
    rolloutId: input.rolloutId,
    data: {
      counts: status.counts,
      missing: status.missingHosts,
      ...(status.message ? { message: status.message } : {}),
    },
  });
  await condition(allHandlersFinished);
  return status;
}
