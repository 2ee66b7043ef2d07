import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { RetryState } from '@temporalio/common';
import {
  hostAuditEventId,
  NON_RETRYABLE_STEP_ERRORS,
  type ControllerActivities,
  type DispatchRunResult,
} from '../schemas/activities.js';
import type { HostMaintenanceInput, HostMaintenanceResult, StepRecord } from '../schemas/rollout.js';
import { stepLabel } from '../schemas/names.js';
import type { PlanStep, StepOutcome } from '../schemas/steps.js';
import { audit } from './audit.js';
import { cutIntoRuns, DEFAULT_STEP_TIMEOUT_MS, runTimeoutMs, STEP_RUNS } from './step-runs.js';
import { SUMMARIES, abortHostSignal, hostProgressQuery, phaseKey, type HostProgress } from './messages.js';

/** Host workflows that took it audit as local activities and set their phase once, not per step. */
export const LEAN_HOST_HISTORY = 'lean-host-history';

/**
 * Host workflows that took it have their start audited by their first run's dispatch activity
 * (decision 0040; their end, as recorded before its amendment, by the last run's), and take this one
 * patch for the four before it (summaries, bounded step retries, lean-host-history, step-runs).
 */
export const HOST_AUDIT_WITH_STEPS = 'host-audit-with-steps';

/** Steps whose revert means nothing: a reboot is not undone, a check has no effect. */
const NOTHING_TO_REVERT = new Set<PlanStep['kind']>(['reboot', 'verify']);

/**
 * How many times a step's activities are tried before the step fails. A host that never answers
 * (or a controller that cannot reach it) is retried a few times, not without end.
 */
export const STEP_ATTEMPTS = 5;

function activitiesFor(step: Pick<PlanStep, 'timeout'>, summary: string | undefined, latest: boolean) {
  // Histories recorded before the bound retried without limit, and replay so.
  const bounded = latest || patched('bounded-step-retries');
  return proxyActivities<ControllerActivities>({
    ...(summary !== undefined ? { summary } : {}),
    startToCloseTimeout: step.timeout ?? DEFAULT_STEP_TIMEOUT_MS,
    // The dispatch activity heartbeats every few seconds; a dead controller is noticed within this.
    heartbeatTimeout: '20s',
    // On cancel, wait until the host has stopped the step, so the revert that follows sees its end.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '1s',
      maximumInterval: '20s',
      nonRetryableErrorTypes: NON_RETRYABLE_STEP_ERRORS,
      ...(bounded ? { maximumAttempts: STEP_ATTEMPTS } : {}),
    },
  });
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    const message = cause instanceof Error ? cause.message : err.message;
    if (err instanceof ActivityFailure && err.retryState === RetryState.MAXIMUM_ATTEMPTS_REACHED)
      return `${err.activityType} gave up after ${STEP_ATTEMPTS} attempts; the last failed: ${message}`;
    return message;
  }
  return String(err);
}

/**
 * One host through one campaign's steps. Its workflow id is derived from the host id, so two
 * campaigns can never work on one host at the same time.
 */
export async function hostMaintenance(input: HostMaintenanceInput): Promise<HostMaintenanceResult> {
  const records: StepRecord[] = [];
  const progress: HostProgress = { hostId: input.hostId, rolloutId: input.rolloutId, current: null, steps: records };
  setHandler(hostProgressQuery, () => progress);
  // The start audited with the first run (decision 0040); one patch marker for the four below.
  const latest = patched(HOST_AUDIT_WITH_STEPS);
  // Histories recorded before their activities had summaries replay without them.
  const summaries = latest || patched(SUMMARIES);
  // Fewer history events per host (decision 0024): audit events as local activities, the phase set
  // once to running rather than to each step. Histories recorded before replay the old way.
  const lean = latest || patched(LEAN_HOST_HISTORY);
  // A run of steps with no decision between them in one activity (decision 0037).
  const stepRuns = latest || patched(STEP_RUNS);
  // The rollout asks a host to stop (cancel with onCancel: rollback): the running step is cancelled
  // at a safe point on the host, then the completed steps are undone.
  const steps = new CancellationScope();
  let abortedBy: string | undefined;
  setHandler(abortHostSignal, ({ by, reason }) => {
    abortedBy = `${reason ?? 'aborted'} by ${by}`;
    steps.cancel();
  });

  async function run(
    step: PlanStep,
    index: number,
    mode: 'apply' | 'revert',
    applied?: StepOutcome,
  ): Promise<StepOutcome> {
    if (latest) await auditStarted();
    progress.current = { index, kind: step.kind, mode };
    if (!lean) upsertSearchAttributes([{ key: phaseKey, value: stepLabel(step.kind, mode) }]);
    const record: StepRecord = { index, kind: step.kind, mode, state: 'running' };
    records.push(record);
    const acts = activitiesFor(step, summaries ? `${input.hostId} · ${stepLabel(step.kind, mode)}` : undefined, latest);
    const { timeout: _timeout, ...call } = step;
    try {
      const outcome = await acts.dispatchStep({
        rolloutId: input.rolloutId,
        hostId: input.hostId,
        ...call,
        mode,
        ...(applied ? { applied: { ...applied } } : {}),
        ...(step.kind === 'drain' && input.avoidHosts ? { avoidHosts: input.avoidHosts } : {}),
      });
      if (step.kind === 'reboot' && mode === 'apply') await awaitReboot(step, outcome, acts);
      record.state = 'succeeded';
      record.outcome = outcome;
      return outcome;
    } catch (err) {
      record.state = 'failed';
      record.error = errorMessage(err);
      throw err;
    } finally {
      progress.current = null;
    }
  }

  async function awaitReboot(
    step: Extract<PlanStep, { kind: 'reboot' }>,
    outcome: StepOutcome,
    acts: ReturnType<typeof activitiesFor>,
  ): Promise<void> {
    if (!outcome.bootId)
      throw ApplicationFailure.nonRetryable('reboot step did not report the boot id it left', 'StepFailed');
    await acts.awaitReboot({
      hostId: input.hostId,
      bootIdBefore: outcome.bootId,
      deadlineMs: Date.now() + step.params.timeout,
    });
  }

  /**
   * Apply a run of steps (indexes into the plan's steps) in one activity. Each step gets its record,
   * outcome and place among the touched steps as when it is dispatched alone; the first that did not
   * succeed fails the host with the same error. While the run goes, the progress shows its first step.
   * With `latest`, the run writes `host.started` if that is not known to be stored. It never writes the
   * host's end: only this workflow knows whether the rollout aborted the host while the run ran (the
   * activity hears of a cancel with its next heartbeat, up to 16 s later, often after the host finished),
   * and an aborted host is rolled back, not succeeded. Histories recorded while the run wrote
   * `host.succeeded` (its result says `ended`) replay as they ran.
   */
  async function applyRun(indexes: number[], touched: Touched[]): Promise<void> {
    const run = indexes.map((index) => ({ index, step: input.steps[index] as PlanStep }));
    const first = run[0] as (typeof run)[number];
    progress.current = { index: first.index, kind: first.step.kind, mode: 'apply' };
    const firstRecord: StepRecord = { index: first.index, kind: first.step.kind, mode: 'apply', state: 'running' };
    records.push(firstRecord);
    const label = run.map(({ step }) => stepLabel(step.kind, 'apply')).join(', ');
    const acts = activitiesFor(
      { timeout: runTimeoutMs(run.map(({ step }) => step)) },
      summaries ? `${input.hostId} · ${label}` : undefined,
      latest,
    );
    let ended: DispatchRunResult;
    try {
      ended = await acts.dispatchRun({
        rolloutId: input.rolloutId,
        hostId: input.hostId,
        steps: run.map(({ index, step: { timeout: _timeout, ...call } }) => ({ ...call, index })),
        ...(input.avoidHosts && run.some(({ step }) => step.kind === 'drain') ? { avoidHosts: input.avoidHosts } : {}),
        ...(latest && !startStored ? { hostAudit: { started: startData } } : {}),
      });
      if (latest) startStored = true;
    } catch (err) {
      // The activity itself failed (it gave up, or its cancel was not answered): how far the host got is
      // not known, so every step of the run may have run and is reverted (reverts observe first).
      firstRecord.state = 'failed';
      firstRecord.error = errorMessage(err);
      touched.push(...run);
      throw err;
    } finally {
      progress.current = null;
    }
    for (const result of ended.steps) {
      const { step, index } = run.find((r) => r.index === result.index) ?? first;
      const record: StepRecord =
        index === first.index ? firstRecord : { index, kind: step.kind, mode: 'apply', state: 'running' };
      if (record !== firstRecord) records.push(record);
      const entry: Touched = { step, index };
      touched.push(entry);
      if (result.state !== 'succeeded') {
        record.state = 'failed';
        record.error = result.error;
        throw result.state === 'cancelled'
          ? new CancelledFailure(result.error)
          : ApplicationFailure.nonRetryable(result.error, result.errorType);
      }
      try {
        if (step.kind === 'reboot') await awaitReboot(step, result.outcome, acts);
      } catch (err) {
        record.state = 'failed';
        record.error = errorMessage(err);
        throw err;
      }
      record.state = 'succeeded';
      record.outcome = result.outcome;
      entry.outcome = result.outcome;
    }
    // The run stored the host's end (recorded histories only, see above): every step succeeded.
    if (ended.ended === true) {
      endStored = true;
      return;
    }
    // Aborted (the rollout cancelled it): as a step dispatched alone, the run ends cancelled even when
    // the host finished its step first, and what ran is undone; steps not reached never started.
    if (ended.cancelled === true || ended.steps.length < run.length || abortedBy !== undefined) {
      if (ended.steps.length === 0) {
        firstRecord.state = 'failed';
        firstRecord.error = 'cancelled';
      }
      throw new CancelledFailure('cancelled');
    }
  }

  // Steps that ran, or may have: the one interrupted by a failure or a cancel has no outcome but
  // may have changed the host, so it is reverted too (reverts observe first and are idempotent).
  const touched: Touched[] = [];
  const base = { actor: 'controller', rolloutId: input.rolloutId, hostId: input.hostId } as const;
  const startData = { steps: input.steps.map((s) => s.kind), onHostFailure: input.onHostFailure };
  // With `latest` (decision 0040) the first run's activity stores host.started before it sends a
  // command; whatever else the host does first (a revert, its end) stores host.started itself, under the
  // same event id, and so stored once. The end is the workflow's (a run stored it only in histories
  // recorded before the decision's amendment).
  let startStored = false;
  let endStored = false;
  const { workflowId, runId } = workflowInfo();
  const eventId = (which: 'started' | 'end') => (latest ? { eventId: hostAuditEventId(workflowId, runId, which) } : {});
  async function auditStarted(): Promise<void> {
    if (startStored) return;
    await audit({ ...base, type: 'host.started', data: startData, ...eventId('started') }, { localActivity: lean });
    startStored = true;
  }
  if (!latest) await auditStarted();
  if (lean) upsertSearchAttributes([{ key: phaseKey, value: 'running' }]);
  const finish = async (result: HostMaintenanceResult): Promise<HostMaintenanceResult> => {
    upsertSearchAttributes([{ key: phaseKey, value: result.state }]);
    if (endStored) return result;
    await auditStarted();
    await audit(
      {
        ...base,
        type: `host.${result.state}`,
        data: endData(result.steps, result.error),
        ...eventId('end'),
      },
      { localActivity: lean },
    );
    return result;
  };
  try {
    await steps.run(async () => {
      const runs = stepRuns ? cutIntoRuns(input.steps) : input.steps.map((_, index) => [index]);
      for (const indexes of runs) {
        // Since decision 0040 a run of one step is a run too: its activity audits the host's start.
        if (indexes.length > 1 || latest) {
          await applyRun(indexes, touched);
          continue;
        }
        const index = indexes[0] as number;
        const step = input.steps[index] as PlanStep;
        const entry: Touched = { step, index };
        touched.push(entry);
        entry.outcome = await run(step, index, 'apply');
      }
    });
    return await finish({ hostId: input.hostId, state: 'succeeded', steps: records });
  } catch (err) {
    const error = abortedBy ?? (isCancellation(err) ? 'cancelled' : errorMessage(err));
    if (input.onHostFailure === 'hold' && !abortedBy && !isCancellation(err)) {
      return await finish({ hostId: input.hostId, state: 'held', steps: records, error });
    }
    // Undo even when cancelled: a half-converted host is worse than either end.
    const undone = await CancellationScope.nonCancellable(() => rollBack(touched, run));
    return await CancellationScope.nonCancellable(() =>
      finish({ hostId: input.hostId, state: undone ? 'rolled-back' : 'failed', steps: records, error }),
    );
  }
}

/** A host's end event's data: each step's record as `<label>:<state>`, and the error if any. */
function endData(steps: Pick<StepRecord, 'kind' | 'mode' | 'state'>[], error?: string): Record<string, unknown> {
  return { steps: steps.map((r) => `${stepLabel(r.kind, r.mode)}:${r.state}`), ...(error ? { error } : {}) };
}

/** A step that ran, or may have, with its outcome if it succeeded. */
interface Touched {
  step: PlanStep;
  index: number;
  outcome?: StepOutcome;
}

/**
 * Revert the steps that ran in reverse order. A revert that changes boot configuration asks for a
 * reboot; it happens before the VMs come back, so they return to a host in its final state.
 */
async function rollBack(
  completed: Touched[],
  run: (step: PlanStep, index: number, mode: 'apply' | 'revert', applied?: StepOutcome) => Promise<StepOutcome>,
): Promise<boolean> {
  let rebootStep: { step: PlanStep; index: number } | undefined;
  let rebootPending = false;
  try {
    for (const { step, index, outcome } of [...completed].reverse()) {
      if (step.kind === 'reboot') rebootStep = { step, index };
      if (NOTHING_TO_REVERT.has(step.kind)) continue;
      if (step.kind === 'drain' && rebootPending && rebootStep) {
        await run(rebootStep.step, rebootStep.index, 'apply');
        rebootPending = false;
      }
      const reverted = await run(step, index, 'revert', outcome);
      if (reverted.rebootRequired) rebootPending = true;
    }
    if (rebootPending && rebootStep) await run(rebootStep.step, rebootStep.index, 'apply');
    return true;
  } catch {
    return false;
  }
}
