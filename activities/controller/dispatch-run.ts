import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { TERMINAL_STATES, withoutHealth, type CommandStatus, type StepCommand } from '../../schemas/command.js';
import {
  hostAuditEventId,
  type ControllerActivities,
  type DispatchRequest,
  type DispatchRunRequest,
  type DispatchRunResult,
  type RunStepResult,
} from '../../schemas/activities.js';
import type { StepMetrics } from '../step-metrics.js';
import {
  cancelledByWorkflow,
  commandFor,
  executionOf,
  HEARTBEAT_EVERY_MS,
  hostContract,
  sendUnlessKnown,
  stepEnd,
  stopOnCancel,
  watchCommand,
  type DispatchDeps,
  type WatchedCommand,
} from './dispatch.js';

/** The first contract whose agents take a whole run at once (each command names the step it follows). */
export const RUNS_CONTRACT = 5;

interface PlannedStep {
  index: number;
  kind: StepCommand['kind'];
  command: StepCommand;
  sent: StepCommand;
  watched: WatchedCommand;
}

/**
 * Apply a run of one host's steps in one activity (decision 0037). Each step is its own command,
 * `<workflowId>/<runId>/<activityId>#<plan index>`, followed to its end as dispatchStep follows one;
 * the run stops at the first step that does not succeed. An agent of contract 5 is sent the whole
 * run at once, each command naming the one before it (`after`): it runs a step only once the one
 * before succeeded. An older agent is sent each step once the one before it succeeded. A retried
 * attempt (a controller restarted) reads each step's result key first: a step whose result is known
 * is not sent again, and one that is running is awaited.
 *
 * Asked to (`hostAudit`, decision 0040), it also writes the host workflow's `host.started` before
 * sending anything and `host.succeeded` once every step succeeded, each under the workflow run's own
 * event id: a retried attempt stores neither twice. Workflows no longer ask for `host.succeeded` (only
 * the workflow knows whether the rollout aborted the host meanwhile); an attempt scheduled by a
 * workflow that did is still served.
 */
export function createDispatchRun(
  deps: DispatchDeps & {
    stepMetrics?: StepMetrics | undefined;
    recordAudit: ControllerActivities['recordAudit'];
  },
) {
  return async function dispatchRun(req: DispatchRunRequest): Promise<DispatchRunResult> {
    const ctx = Context.current();
    const { workflowId, runId } = executionOf(ctx);
    const log = deps.log.child({ hostId: req.hostId });
    const hostAudit = (type: 'host.started' | 'host.succeeded', data: Record<string, unknown>) =>
      deps.recordAudit({
        type,
        actor: 'controller',
        rolloutId: req.rolloutId,
        hostId: req.hostId,
        data,
        eventId: hostAuditEventId(workflowId, runId, type === 'host.started' ? 'started' : 'end'),
      });
    // Stored while the commands are written and their keys read; awaited before the first is sent.
    const started = req.hostAudit?.started && hostAudit('host.started', req.hostAudit.started);
    started?.catch(() => undefined);
    const wholeRun = hostContract(deps.presence, req.hostId) >= RUNS_CONTRACT;
    const results: RunStepResult[] = [];
    let current: { index: number; last?: CommandStatus } | undefined;
    const heartbeat = () =>
      ctx.heartbeat({ step: current?.index, state: current?.last?.state ?? 'sent', progress: current?.last?.progress });
    const ticker = setInterval(heartbeat, HEARTBEAT_EVERY_MS);
    try {
      // Every command is written first (a drain starts its run, so its destinations are chosen now, as alone).
      const planned: PlannedStep[] = [];
      let refused: RunStepResult | undefined;
      for (const { index, ...call } of req.steps) {
        const commandId = `${workflowId}/${runId}/${ctx.info.activityId}#${index}`;
        const step = {
          rolloutId: req.rolloutId,
          hostId: req.hostId,
          mode: 'apply',
          ...call,
          ...(call.kind === 'drain' && req.avoidHosts ? { avoidHosts: req.avoidHosts } : {}),
        } as DispatchRequest;
        const after = planned.at(-1)?.command.commandId;
        try {
          const { command, sent } = await commandFor(deps, step, commandId, workflowId, after ? { after } : {});
          const stepLog = log.child({ commandId, kind: call.kind, mode: 'apply' });
          const watched = watchCommand(deps, req.hostId, commandId, stepLog, (s) => {
            if (current?.index !== index) return;
            current.last = s;
            heartbeat();
          });
          planned.push({ index, kind: call.kind, command, sent, watched });
        } catch (err) {
          // A step refused before it is sent (a tunnel without this host's end): the run ends there.
          if (!(err instanceof ApplicationFailure) || !err.nonRetryable) throw err;
          refused = { index, state: 'failed', error: err.message, errorType: err.type ?? 'StepFailed' };
          break;
        }
      }
      await started;
      if (wholeRun)
        for (const p of planned) {
          const known = await sendUnlessKnown(deps, p.watched, p.sent, log.child({ commandId: p.sent.commandId }));
          // A retried attempt: the host ended this step without success, so the rest are not sent.
          if (known && TERMINAL_STATES.has(known.state) && known.state !== 'succeeded') break;
        }
      for (const [i, p] of planned.entries()) {
        const stepLog = log.child({ commandId: p.sent.commandId, kind: p.kind, mode: 'apply' });
        const rest = planned.slice(i).map((r) => r.sent);
        // Cancelled by the workflow between two steps: with the whole run sent, the host is asked to
        // stop the rest (the next may have started); otherwise the next was never sent.
        if (ctx.cancellationSignal.aborted) {
          if (!cancelledByWorkflow(ctx.cancellationSignal.reason)) throw ctx.cancellationSignal.reason;
          if (wholeRun) {
            const ended = await stopOnCancel(deps, ctx.cancellationSignal.reason, rest, stepLog, {
              returnStatus: true,
            });
            results.push(stepResult(p, ended));
          }
          return { steps: results, cancelled: true };
        }
        current = { index: p.index };
        const started = performance.now();
        if (!wholeRun) await sendUnlessKnown(deps, p.watched, p.sent, stepLog);
        const final = await Promise.race([
          p.watched.settled,
          ctx.cancelled.catch((err: unknown) =>
            stopOnCancel(deps, err, wholeRun ? rest : [p.sent], stepLog, { returnStatus: true }),
          ),
        ]);
        const result = stepResult(p, final);
        results.push(result);
        deps.stepMetrics?.stepEnded({
          kind: p.kind,
          mode: 'apply',
          outcome: result.state,
          seconds: (performance.now() - started) / 1000,
        });
        if (result.state !== 'succeeded') return { steps: results };
        // The workflow cancelled the run as the step ended: the step stands, the rest are stopped.
        if (ctx.cancellationSignal.aborted && cancelledByWorkflow(ctx.cancellationSignal.reason)) {
          const later = planned.slice(i + 1).map((r) => r.sent);
          if (wholeRun && later.length > 0) {
            const ended = await stopOnCancel(deps, ctx.cancellationSignal.reason, later, stepLog, {
              returnStatus: true,
            });
            const next = planned[i + 1] as PlannedStep;
            results.push(stepResult(next, ended));
          }
          return { steps: results, cancelled: true };
        }
      }
      if (refused) {
        results.push(refused);
        return { steps: results };
      }
      if (req.hostAudit?.succeeded === undefined) return { steps: results };
      await hostAudit('host.succeeded', req.hostAudit.succeeded);
      return { steps: results, ended: true };
    } finally {
      clearInterval(ticker);
    }
  };
}

/** A step's end as the run reports it: what dispatchStep would have returned, or thrown. */
function stepResult({ index, sent, command }: PlannedStep, status: CommandStatus): RunStepResult {
  const end = stepEnd(status);
  if (end.state === 'succeeded')
    return { index, state: 'succeeded', outcome: withoutHealth(sent, end.outcome, command) };
  return { index, state: end.state, error: end.error, errorType: end.errorType };
}
