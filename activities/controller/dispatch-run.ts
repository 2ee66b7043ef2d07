import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { withoutHealth, type CommandStatus, type StepCommand } from '../../schemas/command.js';
import type {
  DispatchRequest,
  DispatchRunRequest,
  DispatchRunResult,
  RunStepResult,
} from '../../schemas/activities.js';
import type { StepMetrics } from '../step-metrics.js';
import {
  cancelledByWorkflow,
  commandFor,
  executionOf,
  HEARTBEAT_EVERY_MS,
  sendUnlessKnown,
  stopOnCancel,
  watchCommand,
  type DispatchDeps,
} from './dispatch.js';

/**
 * Apply a run of one host's steps in one activity (decision 0037). Each step is its own command,
 * `<workflowId>/<runId>/<activityId>#<plan index>`, sent once the step before it succeeded and
 * followed to its end as dispatchStep follows one; the run stops at the first step that does not
 * succeed. A retried attempt (a controller restarted) reads each step's result key first: a step
 * whose result is known is not sent again, and one that is running is awaited.
 */
export function createDispatchRun(deps: DispatchDeps & { stepMetrics?: StepMetrics | undefined }) {
  return async function dispatchRun(req: DispatchRunRequest): Promise<DispatchRunResult> {
    const ctx = Context.current();
    const { workflowId, runId } = executionOf(ctx);
    const results: RunStepResult[] = [];
    let current: { index: number; last?: CommandStatus } | undefined;
    const heartbeat = () =>
      ctx.heartbeat({
        step: current?.index,
        state: current?.last?.state ?? 'sent',
        progress: current?.last?.progress,
      });
    const ticker = setInterval(heartbeat, HEARTBEAT_EVERY_MS);
    try {
      for (const { index, ...call } of req.steps) {
        // Cancelled by the workflow between two steps: the next one never starts.
        if (ctx.cancellationSignal.aborted) {
          if (!cancelledByWorkflow(ctx.cancellationSignal.reason)) throw ctx.cancellationSignal.reason;
          return { steps: results, cancelled: true };
        }
        const commandId = `${workflowId}/${runId}/${ctx.info.activityId}#${index}`;
        const stepLog = deps.log.child({ hostId: req.hostId, commandId, kind: call.kind, mode: 'apply' });
        const step = {
          rolloutId: req.rolloutId,
          hostId: req.hostId,
          mode: 'apply',
          ...call,
          ...(call.kind === 'drain' && req.avoidHosts ? { avoidHosts: req.avoidHosts } : {}),
        } as DispatchRequest;
        current = { index };
        const started = performance.now();
        let built: { command: StepCommand; sent: StepCommand };
        try {
          built = await commandFor(deps, step, commandId, workflowId);
        } catch (err) {
          // A step refused before it is sent (no destination for a drain): the run ends there.
          if (!(err instanceof ApplicationFailure) || !err.nonRetryable) throw err;
          results.push({ index, state: 'failed', error: err.message, errorType: err.type ?? 'StepFailed' });
          break;
        }
        const { command, sent } = built;
        const watched = watchCommand(deps, req.hostId, commandId, stepLog, (s) => {
          if (current) current.last = s;
          heartbeat();
        });
        await sendUnlessKnown(deps, watched, sent, stepLog);
        const final = await Promise.race([
          watched.settled,
          ctx.cancelled.catch((err: unknown) => stopOnCancel(deps, err, [sent], stepLog, { returnStatus: true })),
        ]);
        const result = stepResult(index, final, sent, command);
        results.push(result);
        deps.stepMetrics?.stepEnded({
          kind: call.kind,
          mode: 'apply',
          outcome: result.state,
          seconds: (performance.now() - started) / 1000,
        });
        if (result.state !== 'succeeded') break;
        // The workflow cancelled the run as the step ended: the step stands, the next never starts.
        if (ctx.cancellationSignal.aborted && cancelledByWorkflow(ctx.cancellationSignal.reason))
          return { steps: results, cancelled: true };
      }
      return { steps: results };
    } finally {
      clearInterval(ticker);
    }
  };
}

/** A step's end as the run reports it: what dispatchStep would have returned, or thrown. */
function stepResult(index: number, status: CommandStatus, sent: StepCommand, command: StepCommand): RunStepResult {
  if (status.state === 'succeeded' && status.outcome)
    return { index, state: 'succeeded', outcome: withoutHealth(sent, status.outcome, command) };
  if (status.state === 'cancelled')
    return {
      index,
      state: 'cancelled',
      error: `step ${status.kind} cancelled on ${status.hostId}`,
      errorType: status.error?.type ?? 'StepCancelledError',
    };
  const error = status.error ?? { type: 'Unknown', message: `host reported ${status.state} without an outcome` };
  return {
    index,
    state: 'failed',
    error: `${status.kind} failed on ${status.hostId}: ${error.message}`,
    errorType: 'StepFailed',
  };
}
