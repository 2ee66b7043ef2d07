import {
  ApplicationFailure,
  ParentClosePolicy,
  WorkflowIdReusePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SignalDefinition, UpdateDefinition } from '@temporalio/common';
import type { ControllerActivities } from '../schemas/activities.js';
import { hostWorkflowId } from '../schemas/names.js';
import type { OperatorAction, RolloutInput, RolloutStatus } from '../schemas/rollout.js';
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
import { ActionNotAudited, ActionRefused, type Action } from './operator.js';
import type { GateDecision } from './rollout-decision.js';
import { RolloutMachine } from './rollout-machine.js';
import { newRollout } from './rollout-state.js';

const { resolveTargets, acquireLease, releaseLease } = proxyActivities<ControllerActivities>({
  startToCloseTimeout: '1m',
  retry: { maximumInterval: '10s' },
});

const DEFAULT_HISTORY_LIMIT = 10_000;

/**
 * Fail the update with the action's refusal. Only a Temporal failure fails an update; any other
 * error thrown by its handler would fail the workflow task, again at every retry.
 */
function failUpdate(err: unknown): never {
  if (err instanceof ActionRefused || err instanceof ActionNotAudited)
    throw ApplicationFailure.create({
      type: err.name,
      message: err.message,
      nonRetryable: true,
      ...(err.cause instanceof Error ? { cause: err.cause } : {}),
    });
  throw err;
}

/** Every operator action is audited with who asked. */
const ACTION_EVENTS = {
  pause: 'rollout.paused',
  resume: 'rollout.resumed',
  cancel: 'rollout.cancelled',
  approve: 'rollout.approved',
  retryHost: 'host.retried',
  skipHost: 'host.skipped',
} as const;

/**
 * A campaign across the fleet: canary first, then waves, a bounded number of hosts in flight per
 * rollout, per failure domain and fleet-wide, only inside maintenance windows, pausing itself when
 * the failure budget is spent. It continues as new (with all its state) before its history grows
 * large, after the hosts in flight have finished. `RolloutMachine` decides; this carries it out.
 */
export async function fleetRollout(input: RolloutInput): Promise<RolloutStatus> {
  const { plan, rolloutId } = input;
  const carried = input.carried ?? newRollout(input, workflowInfo().startTime.getTime());
  // A window decision made before DST-correct windows stays as its history recorded it.
  const machine = new RolloutMachine(plan, carried, () => patched('dst-correct-windows'));
  const { status } = machine;
  /** Each started host's maintenance, until it has settled. */
  const maintenance = new Map<string, Promise<void>>();

  setHandler(rolloutStatusQuery, () => status);
  const auditAction = (name: keyof typeof ACTION_EVENTS, a: OperatorAction & { hostId?: string }) =>
    audit({
      type: ACTION_EVENTS[name],
      actor: userActor(a.by),
      rolloutId,
      ...(a.hostId ? { hostId: a.hostId } : {}),
      data: { action: name, ...(a.reason ? { reason: a.reason } : {}), state: status.state },
    });
  // Validated, audited, then applied: an action whose audit event cannot be stored changes nothing.
  // A history recorded before (without this marker where its action came in) applied first and
  // audited second, and replays so.
  const auditFirst = () => patched('operator-actions-audited-first');
  /** An action as an update (validated, answered with the status once audited and applied) and as a signal of the same name. */
  function handle<A extends OperatorAction>(
    name: keyof typeof ACTION_EVENTS,
    update: UpdateDefinition<RolloutStatus, [A]>,
    signal: SignalDefinition<[A]>,
    action: Action<A>,
  ): void {
    setHandler(
      update,
      async (a: A) => {
        if (auditFirst()) await action.perform(a, () => auditAction(name, a)).catch(failUpdate);
        else {
          action.apply(a);
          await auditAction(name, a);
        }
        return status;
      },
      { validator: (a: A) => action.check(a) },
    );
    setHandler(signal, async (a: A) => {
      if (auditFirst()) await action.tryPerform(a, () => auditAction(name, a));
      else if (action.tryApply(a)) await auditAction(name, a);
    });
  }
  for (const name of OPERATOR_ACTIONS)
    handle(name, operatorUpdates[name], operatorSignals[name], machine.actions[name]);
  for (const name of HOST_ACTIONS) handle(name, hostUpdates[name], hostSignals[name], machine.actions[name]);

  if (!input.carried) {
    const targets = await resolveTargets(plan.targets);
    await audit({
      type: 'rollout.started',
      actor: userActor(input.startedBy),
      rolloutId,
      data: {
        plan: plan.name,
        steps: plan.steps.map((s) => s.kind),
        hosts: targets.hostIds,
        missing: targets.missing,
        excluded: targets.excluded,
      },
    });
    machine.targetsResolved(targets);
  }

  const drains = plan.steps.some((s) => s.kind === 'drain');
  async function maintain(hostId: string): Promise<void> {
    try {
      const child = await startChild(hostMaintenance, {
        workflowId: hostWorkflowId(hostId),
        args: [
          {
            rolloutId,
            hostId,
            steps: plan.steps,
            onHostFailure: plan.onHostFailure,
            parentId: workflowInfo().workflowId,
            // Only a drain needs it, and a wave of thousands of ids would weigh on every child's history.
            ...(drains ? { avoidHosts: machine.waveOf(hostId) } : {}),
          },
        ],
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        typedSearchAttributes: [
          { key: rolloutIdKey, value: rolloutId },
          { key: hostIdKey, value: hostId },
          { key: phaseKey, value: 'starting' },
        ],
      });
      if (machine.abortsInFlight) await abortHost(hostId);
      machine.hostFinished(hostId, await child.result());
    } catch (err) {
      if (err instanceof Error && err.name === 'WorkflowExecutionAlreadyStartedError')
        machine.hostBusy(hostId, Date.now());
      else machine.hostFailedToRun(hostId, err instanceof Error ? err.message : String(err));
    } finally {
      if (plan.limits.fleetWide !== undefined) await releaseLease({ hostId });
    }
  }

  async function abortHost(hostId: string): Promise<void> {
    const by = status.cancelled?.by ?? 'refit';
    await getExternalWorkflowHandle(hostWorkflowId(hostId))
      .signal(abortHostSignal, { by, reason: 'rollout cancelled' })
      .catch(() => undefined);
  }

  function start(hostId: string): void {
    const p = maintain(hostId).finally(() => {
      maintenance.delete(hostId);
      machine.hostSettled(hostId);
    });
    maintenance.set(hostId, p);
  }

  const historyLimit = input.historyLimit ?? DEFAULT_HISTORY_LIMIT;
  const historyFull = () => workflowInfo().historyLength > historyLimit || workflowInfo().continueAsNewSuggested;
  const waitForChange = async (timeoutMs?: number) => {
    const seen = machine.version;
    if (timeoutMs === undefined) await condition(() => machine.version !== seen);
    else await condition(() => machine.version !== seen, Math.max(1, timeoutMs));
  };
  // pauseSelf and passGate keep the await nesting of the loop the machine replaced: a running
  // rollout's history fixes the order of the commands that concurrent coroutines issue in one task.
  async function pauseSelf(reason: string): Promise<void> {
    await audit({ type: 'rollout.paused', actor: 'controller', rolloutId, data: { reason } });
  }
  async function passGate(gate: GateDecision): Promise<void> {
    if (gate.approval) await condition(() => machine.approvalSettled);
    else if (gate.pauseMs !== undefined) await condition(() => status.cancelled !== null, gate.pauseMs);
    machine.gatePassed(gate);
  }

  for (;;) {
    const now = Date.now();
    const decision = machine.next({ now, historyFull: historyFull() });
    if (decision.kind === 'finish') break;
    if (decision.kind === 'continueAsNew') {
      await condition(allHandlersFinished);
      return continueAsNew<typeof fleetRollout>({ ...input, carried: machine.carryOver() });
    }
    if (decision.kind === 'wait')
      await waitForChange(decision.untilMs === undefined ? undefined : decision.untilMs - now);
    else if (decision.kind === 'pause') await pauseSelf(decision.reason);
    else if (decision.kind === 'gate') await passGate(decision);
    else if (decision.kind === 'start') start(decision.hostId);
    else if (await acquireLease({ hostId: decision.hostId, rolloutId, limit: decision.limit })) {
      machine.leaseGranted(decision.hostId);
      start(decision.hostId);
    } else machine.leaseRefused(decision.hostId, Date.now());
  }

  if (machine.abortsInFlight) await Promise.all([...maintenance.keys()].map(abortHost));
  await Promise.all(maintenance.values());
  const end = machine.finish();
  upsertSearchAttributes([{ key: phaseKey, value: end.state }]);
  await audit({
    type:
      end.state === 'completed'
        ? 'rollout.completed'
        : end.state === 'cancelled'
          ? 'rollout.cancelled'
          : 'rollout.failed',
    actor: 'controller',
    rolloutId,
    data: { counts: end.counts, missing: end.missingHosts, ...(end.message ? { message: end.message } : {}) },
  });
  await condition(allHandlersFinished);
  return end;
}
