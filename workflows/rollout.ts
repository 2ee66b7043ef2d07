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
import { ROLLOUT_CANCELLED, ROLLOUT_FAILED, hostWorkflowId } from '../schemas/names.js';
import {
  SIGNATURE_MAX_AGE_MS,
  type HostAction,
  type OperatorAction,
  type RolloutInput,
  type RolloutStatus,
} from '../schemas/rollout.js';
import type { ActionSignature, VerifyActionResult } from '../schemas/operators.js';
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
  SUMMARIES,
} from './messages.js';
import { audit, userActor } from './audit.js';
import { ActionNotAudited, ActionRefused, type Action } from './operator.js';
import type { GateDecision } from './rollout-decision.js';
import { RolloutMachine } from './rollout-machine.js';
import { newRollout, offlineFates } from './rollout-state.js';
import { compactCarried, expandCarried, expandPlan, planWithoutHosts } from './carried.js';
import { startNotifier } from './notify.js';

const { resolveTargets, findOffline, acquireLease, releaseLease } = proxyActivities<ControllerActivities>({
  startToCloseTimeout: '1m',
  retry: { maximumInterval: '10s' },
});

const { verifyOperatorAction } = proxyActivities<ControllerActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 10 },
});

const DEFAULT_HISTORY_LIMIT = 10_000;
/** Continue-as-new carries the state compactly (decision 0024). */
const COMPACT_CARRIED = 'compact-carried-state';
/**
 * resolveTargets returns only the labels of the plan's failure domains (limits.perLabel): its result
 * is recorded in the first run's history, and all labels of every host set the rollout's size ceiling
 * (about 28,500 hosts with the sim's three labels; docs/BENCHMARKS.md).
 */
const LEAN_TARGETS = 'lean-targets';
/**
 * What Temporal shows of a rollout (decision 0017): the RefitPhase search attribute follows the
 * rollout's state, a rollout that ends failed or cancelled fails its workflow (its status in the
 * failure's details), and child workflows carry their host as summary: all behind the one patch
 * `SUMMARIES` (one marker: a run's history is no longer than it must be). Histories recorded before
 * set the phase at start and end only and completed whatever the outcome.
 */
/** Signed operator actions, verified before they are audited; histories recorded before take every action as named. */
const SIGNED_ACTIONS = 'signed-operator-actions';

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

/** The arguments an action's signature covers. */
function argsOf(a: OperatorAction): Record<string, unknown> {
  const hostId = (a as Partial<HostAction>).hostId;
  return { ...(a.reason !== undefined ? { reason: a.reason } : {}), ...(hostId !== undefined ? { hostId } : {}) };
}

/** How the audit trail records who asked: the verified operator and key with the nonce, or unsigned. */
function signatureRecord(a: OperatorAction): Record<string, string> | 'unsigned' {
  if (!a.identity?.signed) return 'unsigned';
  return { operator: a.identity.operator, key: a.identity.key, nonce: a.signature?.nonce ?? '' };
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
  const { rolloutId } = input;
  // A compact carried state (decision 0024) holds the plan's named hosts and every host's status.
  const plan = expandPlan(input.plan, input.carried);
  const carried = input.carried
    ? expandCarried(input.carried, plan)
    : newRollout(input, workflowInfo().startTime.getTime());
  // A window decision made before DST-correct windows stays as its history recorded it; a rollout
  // started before offline targets neither keeps them nor checks presence at a host's turn.
  const offlineTargets = patched('offline-targets');
  const readsLikeRefit = patched(SUMMARIES);
  // A wave is running while its hosts run; before, it went from pending straight to done.
  const machine = new RolloutMachine(plan, carried, () => patched('dst-correct-windows'), {
    offlineTargets,
    waveRunning: () => patched('wave-running'),
  });
  const { status } = machine;
  /** Each started host's maintenance, until it has settled. */
  const maintenance = new Map<string, Promise<void>>();

  setHandler(rolloutStatusQuery, () => status);
  // Webhooks of the plan's notify block; histories from before it had none to tell.
  const notifier =
    plan.notify !== undefined && patched('notifications')
      ? startNotifier(plan.notify, rolloutId, plan.name, status)
      : undefined;
  const auditAction = (name: keyof typeof ACTION_EVENTS, a: OperatorAction & { hostId?: string }) =>
    audit({
      type: ACTION_EVENTS[name],
      actor: userActor(a.by),
      rolloutId,
      ...(a.hostId ? { hostId: a.hostId } : {}),
      data: {
        action: name,
        ...(a.reason ? { reason: a.reason } : {}),
        state: status.state,
        ...(a.identity ? { signature: signatureRecord(a) } : {}),
      },
    });

  /** Refuse an action for who sent it (or how): audited as refused, then the caller is told why. */
  async function refuseAction(name: string, a: OperatorAction, reason: string): Promise<never> {
    await audit({
      type: 'rollout.action-refused',
      actor: userActor(a.by),
      rolloutId,
      ...((a as Partial<HostAction>).hostId ? { hostId: (a as HostAction).hostId } : {}),
      data: {
        action: name,
        reason,
        ...(a.signature?.operator !== undefined ? { signedAs: String(a.signature.operator) } : {}),
        state: status.state,
      },
    });
    throw new ActionRefused(reason);
  }

  const signatureRequired = (name: string) =>
    (plan.signatures?.require ?? []).some((n) => n === name) ||
    (name === 'approve' && plan.approvals.distinctFrom === 'starter');

  /**
   * Who asked for an action: a verified operator when it is signed (checked against the enrolled keys
   * by an activity, used once, and for approvals under four eyes not the starter), or unsigned where the
   * plan allows it. Anything else is audited as refused and not applied.
   */
  async function identify<A extends OperatorAction>(name: string, action: Action<A>, a: A): Promise<A> {
    action.check(a);
    const { signature, identity: _fromSender, ...rest } = a;
    if (signature === undefined) {
      if (signatureRequired(name))
        await refuseAction(
          name,
          a,
          `this plan requires ${name} to be signed by an enrolled operator (refit with REFIT_OPERATOR_KEY); it came unsigned`,
        );
      return { ...rest, identity: { signed: false } } as A;
    }
    let verified: VerifyActionResult;
    try {
      verified = await verifyOperatorAction({
        rolloutId,
        action: name,
        args: argsOf(a),
        signature,
        receivedAt: new Date().toISOString(),
      });
    } catch (err) {
      verified = { ok: false, reason: `the signature could not be checked: ${(err as Error).message}` };
    }
    if (!verified.ok) return refuseAction(name, a, verified.reason);
    const nonces = (carried.nonces ??= {});
    const now = Date.now();
    for (const [n, at] of Object.entries(nonces)) if (now - at > 2 * SIGNATURE_MAX_AGE_MS) delete nonces[n];
    if (nonces[signature.nonce] !== undefined)
      await refuseAction(name, a, 'this signature was used already (a replay); sign the action again');
    nonces[signature.nonce] = now;
    if (name === 'approve' && plan.approvals.distinctFrom === 'starter') {
      if (status.starter === undefined)
        await refuseAction(
          name,
          a,
          'four eyes: the start of this rollout was not signed, so no approval can be told apart from its starter',
        );
      else if (status.starter.operator === verified.operator)
        await refuseAction(
          name,
          a,
          `four eyes: ${verified.operator} started this rollout and may not approve it; another operator must`,
        );
    }
    const identity = { signed: true as const, operator: verified.operator, key: verified.key };
    return { ...rest, signature, by: verified.operator, identity } as unknown as A;
  }
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
        if (auditFirst()) {
          try {
            const who = patched(SIGNED_ACTIONS) ? await identify(name, action, a) : a;
            await action.perform(who, () => auditAction(name, who));
          } catch (err) {
            failUpdate(err);
          }
        } else {
          action.apply(a);
          await auditAction(name, a);
        }
        return status;
      },
      { validator: (a: A) => action.check(a) },
    );
    setHandler(signal, async (a: A) => {
      if (auditFirst() && patched(SIGNED_ACTIONS)) {
        let who: A;
        try {
          who = await identify(name, action, a);
        } catch (err) {
          status.message = `ignored a signal: ${name} refused: ${err instanceof Error ? err.message : String(err)}`;
          return;
        }
        await action.tryPerform(who, () => auditAction(name, who));
      } else if (auditFirst()) await action.tryPerform(a, () => auditAction(name, a));
      else if (action.tryApply(a)) await auditAction(name, a);
    });
  }
  for (const name of OPERATOR_ACTIONS)
    handle(name, operatorUpdates[name], operatorSignals[name], machine.actions[name]);
  for (const name of HOST_ACTIONS) handle(name, hostUpdates[name], hostSignals[name], machine.actions[name]);

  if (!input.carried) {
    if (input.signedStart !== undefined && patched(SIGNED_ACTIONS)) await verifyStart(input.signedStart);
    const targets = patched(LEAN_TARGETS)
      ? await resolveTargets(plan.targets, Object.keys(plan.limits.perLabel))
      : await resolveTargets(plan.targets);
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
        ...(status.starter ? { signature: status.starter } : {}),
        ...(offlineTargets ? { offline: targets.offline ?? [], onOffline: plan.onOffline } : {}),
      },
    });
    machine.targetsResolved(targets, Date.now());
  }

  /** A signed start names the verified starter, or the rollout fails before it does anything. */
  async function verifyStart(signature: ActionSignature): Promise<void> {
    let verified: VerifyActionResult;
    try {
      verified = await verifyOperatorAction({
        rolloutId,
        action: 'start',
        args: { plan },
        signature,
        receivedAt: workflowInfo().startTime.toISOString(),
      });
    } catch (err) {
      verified = { ok: false, reason: `the signature could not be checked: ${(err as Error).message}` };
    }
    if (!verified.ok) {
      await refuseAction('start', { by: input.startedBy, signature }, verified.reason).catch(() => undefined);
      throw ApplicationFailure.nonRetryable(`start refused: ${verified.reason}`, ActionRefused.name);
    }
    status.startedBy = verified.operator;
    status.starter = { operator: verified.operator, key: verified.key };
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
        ...(readsLikeRefit
          ? {
              staticSummary: hostId,
              staticDetails: `rollout ${rolloutId}: ${plan.steps.map((s) => s.kind).join(' → ')}`,
            }
          : {}),
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

  /** The RefitPhase search attribute, kept at the rollout's state so Temporal's lists and filters see it. */
  let phase = workflowInfo().typedSearchAttributes.get(phaseKey);
  const syncPhase = () => {
    if (!readsLikeRefit || phase === status.state) return;
    phase = status.state;
    upsertSearchAttributes([{ key: phaseKey, value: phase }]);
  };

  for (;;) {
    const now = Date.now();
    const decision = machine.next({ now, historyFull: historyFull() });
    syncPhase();
    if (decision.kind === 'finish') break;
    if (decision.kind === 'continueAsNew') {
      await notifier?.flush();
      await condition(allHandlersFinished);
      const carry = machine.carryOver();
      // What grows with the fleet is carried compactly; runs recorded before carried it as it is.
      if (patched(COMPACT_CARRIED))
        return continueAsNew<typeof fleetRollout>({
          ...input,
          plan: planWithoutHosts(plan),
          carried: compactCarried(carry, plan),
        });
      return continueAsNew<typeof fleetRollout>({ ...input, carried: carry });
    }
    if (decision.kind === 'wait')
      await waitForChange(decision.untilMs === undefined ? undefined : decision.untilMs - now);
    else if (decision.kind === 'pause') await pauseSelf(decision.reason);
    else if (decision.kind === 'gate') await passGate(decision);
    else if (decision.kind === 'start') start(decision.hostId);
    else if (decision.kind === 'checkPresence')
      machine.presenceChecked(decision.hostIds, await findOffline({ hostIds: decision.hostIds }), Date.now());
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
    data: {
      counts: end.counts,
      missing: end.missingHosts,
      ...(end.message ? { message: end.message } : {}),
      ...(offlineTargets ? { offline: offlineFates(end) } : {}),
    },
  });
  await notifier?.ended(end);
  await condition(allHandlersFinished);
  if (readsLikeRefit && end.state !== 'completed')
    // Failed in Temporal too, so its lists, filters and alerts see the truth; the status stays
    // readable as the failure's details (`rolloutEnd` in workers/control/rollout-status.ts).
    throw ApplicationFailure.create({
      type: end.state === 'cancelled' ? ROLLOUT_CANCELLED : ROLLOUT_FAILED,
      message: `rollout ${end.state}${end.message ? `: ${end.message}` : ''}`,
      nonRetryable: true,
      details: [end],
    });
  return end;
}
