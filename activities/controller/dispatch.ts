import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { SUBJECTS } from '../../schemas/names.js';
import {
  COMMAND_CONTRACT_VERSION,
  commandForContract,
  TERMINAL_STATES,
  resultKey,
  withoutHealth,
  type CommandStatus,
  type StepCommand,
} from '../../schemas/command.js';
import { vxlanEndFor, type StepCall, type StepOutcome } from '../../schemas/steps.js';
import type { HostPresence } from '../../schemas/host.js';
import { NoDestinationError, unknownDestinations, waitForDestinations } from './inventory.js';
import type { Logger } from 'pino';
import type { BucketFollower } from './bucket-follower.js';
import type { DispatchRequest } from '../../schemas/activities.js';

export const HEARTBEAT_EVERY_MS = 3_000;
/** After asking a host to cancel, how long to wait for it to say it stopped. */
const CANCEL_GRACE_MS = 30_000;
/** How long a drain waits for a host with room (others may be silent for a moment after a restart). */
const DESTINATION_WAIT_MS = 60_000;

export interface DispatchDeps {
  nc: NatsConnection;
  results: BucketFollower<typeof CommandStatus>;
  presence: BucketFollower<typeof HostPresence>;
  /** Make sure the host's durable command consumer exists before its first command. */
  ensureHostConsumer: (hostId: string) => Promise<void>;
  log: Logger;
}

/**
 * Send one step to its host and wait for the result. The command id is derived from the workflow
 * and the activity, so a retry re-sends the same id: JetStream drops the duplicate within its
 * window, and the host answers any later one from its journal.
 */
export function createDispatchStep(deps: DispatchDeps) {
  return async function dispatchStep(req: DispatchRequest): Promise<StepOutcome> {
    const ctx = Context.current();
    const { workflowId, runId } = executionOf(ctx);
    const commandId = `${workflowId}/${runId}/${ctx.info.activityId}`;
    const stepLog = deps.log.child({ hostId: req.hostId, commandId, kind: req.kind, mode: req.mode });
    const { command, sent } = await commandFor(deps, req, commandId, workflowId);
    let last: CommandStatus | undefined;
    const heartbeat = () => ctx.heartbeat({ state: last?.state ?? 'sent', progress: last?.progress });
    const ticker = setInterval(heartbeat, HEARTBEAT_EVERY_MS);
    try {
      const watched = watchCommand(deps, req.hostId, commandId, stepLog, (s) => {
        last = s;
        heartbeat();
      });
      await sendUnlessKnown(deps, watched, sent, stepLog);
      const final = await Promise.race([
        watched.settled,
        ctx.cancelled.catch((err: unknown) => stopOnCancel(deps, err, [sent], stepLog)),
      ]);
      return withoutHealth(sent, outcomeOf(final), command);
    } finally {
      clearInterval(ticker);
    }
  };
}

export function executionOf(ctx: Context): { workflowId: string; runId: string } {
  const execution = ctx.info.workflowExecution;
  if (!execution) throw ApplicationFailure.nonRetryable('dispatching runs only inside a workflow', 'InvalidStep');
  return execution;
}

/**
 * The command for one step, as this controller writes it (a drain with its destinations, a tunnel
 * with the host's own end) and as the host's agent takes it (`sent`, for its contract version).
 */
export async function commandFor(
  { presence }: Pick<DispatchDeps, 'presence'>,
  req: DispatchRequest,
  commandId: string,
  workflowId: string,
  extra: { after?: string } = {},
): Promise<{ command: StepCommand; sent: StepCommand }> {
  const { rolloutId, hostId, mode, applied, avoidHosts, ...call } = req;
  const command: StepCommand = {
    ...(call.kind === 'drain' && mode === 'apply'
      ? await withDestinations(
          call,
          () => {
            Context.current().heartbeat({ state: 'choosing destinations' });
            return presence.values();
          },
          hostId,
          avoidHosts ?? [],
        )
      : call.kind === 'vxlan-tunnel'
        ? ownEnd(call, hostId)
        : call),
    commandId,
    contractVersion: COMMAND_CONTRACT_VERSION,
    hostId,
    mode,
    rolloutId,
    workflowId,
    ...(applied ? { applied } : {}),
    ...extra,
    issuedAt: new Date().toISOString(),
  };
  return { command, sent: commandForContract(command, hostContract(presence, hostId)) };
}

/**
 * The contract version of a host's agent. An agent one contract version older gets the command as its
 * version reads it, and so does a host whose presence is not seen: every agent this controller works
 * with takes N-1 (docs/upgrading.md).
 */
export function hostContract(presence: DispatchDeps['presence'], hostId: string): number {
  return presence.get(hostId)?.contractVersion ?? COMMAND_CONTRACT_VERSION - 1;
}

/** Whether the activity's cancellation is the workflow's own (not a worker shutting down, a timeout, a reset). */
export function cancelledByWorkflow(reason: unknown): boolean {
  return (
    Context.current().cancellationDetails?.cancelRequested === true ||
    (reason instanceof CancelledFailure && reason.message === 'CANCELLED')
  );
}

/** A command's result key followed to its end. */
export interface WatchedCommand {
  commandId: string;
  hostId: string;
  key: string;
  /** What the key held when the wait began: the host has the command already if anything. */
  known: Promise<CommandStatus | undefined>;
  /** The command's terminal status. */
  settled: Promise<CommandStatus>;
}

/**
 * Follow a command's result key until its terminal status; `onStatus` hears every status. The wait's
 * own read of the key tells whether the host already has the command: one KV get, not two. Hearing the
 * host after it switched its network, and telling it so, is the confirmation (ovs-convert).
 */
export function watchCommand(
  { nc, results }: Pick<DispatchDeps, 'nc' | 'results'>,
  hostId: string,
  commandId: string,
  log: Logger,
  onStatus: (s: CommandStatus) => void,
): WatchedCommand {
  const key = resultKey(hostId, commandId);
  /** The start of the command on the host (more than one after a host worker restart) last confirmed. */
  let confirmedStart = 0;
  let read!: (value: CommandStatus | undefined) => void;
  const firstRead = new Promise<CommandStatus | undefined>((resolve) => (read = resolve));
  const settled = results.waitFor(key, (s) => TERMINAL_STATES.has(s.state), {
    onRead: read,
    onValue: (s) => {
      onStatus(s);
      if (s.starts > confirmedStart && s.state === 'running' && s.progress?.awaitingConfirmation === true) {
        confirmedStart = s.starts;
        nc.publish(SUBJECTS.confirm(hostId), JSON.stringify({ commandId }));
        log.info('confirmed the host is reachable after its network switch');
      }
    },
  });
  // Awaited later; if NATS fails before that (the attempt is retried), its rejection is not unhandled.
  settled.catch(() => undefined);
  return { commandId, hostId, key, known: Promise.race([firstRead, settled]), settled };
}

/** Publish the command unless its key shows the host has it (a retried attempt, a controller restarted). */
export async function sendUnlessKnown(
  { nc, ensureHostConsumer }: Pick<DispatchDeps, 'nc' | 'ensureHostConsumer'>,
  watched: WatchedCommand,
  sent: StepCommand,
  log: Logger,
): Promise<CommandStatus | undefined> {
  const ctx = Context.current();
  const known = await watched.known;
  if (known) {
    log.info({ attempt: ctx.info.attempt, state: known.state }, 'step already known to the host; awaiting its result');
    return known;
  }
  await ensureHostConsumer(sent.hostId);
  const ack = await jetstream(nc).publish(SUBJECTS.command(sent.hostId), JSON.stringify(sent), {
    msgID: sent.commandId,
  });
  // A duplicate: an earlier attempt sent it and its result is not stored yet; the stream kept one.
  log.info({ attempt: ctx.info.attempt, duplicate: ack.duplicate }, 'step sent');
  return undefined;
}

/**
 * The activity's cancellation. Only the workflow's own stops the host: it is asked to stop each of
 * `commands` (the running one at a safe point; one not started yet never starts), and the first is
 * awaited until the host says it ended. A worker shutting down, a heartbeat timeout or a reset only
 * end this attempt: the next one waits for the same commands, which go on. Returns the first one's
 * status when the host answered in time; otherwise throws the cancellation.
 */
export async function stopOnCancel(
  { nc, results }: Pick<DispatchDeps, 'nc' | 'results'>,
  reason: unknown,
  commands: readonly Pick<StepCommand, 'hostId' | 'commandId'>[],
  log: Logger,
  opts: { returnStatus?: boolean } = {},
): Promise<CommandStatus> {
  if (!cancelledByWorkflow(reason)) {
    log.info({ reason: String(reason) }, 'dispatch attempt ended; the step goes on on its host');
    throw reason;
  }
  log.warn('step cancelled by the workflow; asking the host to stop');
  for (const { hostId, commandId } of commands)
    nc.publish(SUBJECTS.cancel(hostId), JSON.stringify({ commandId, reason: 'workflow cancelled' }));
  const first = commands[0];
  const ended =
    first &&
    (await results
      .waitFor(resultKey(first.hostId, first.commandId), (s) => TERMINAL_STATES.has(s.state), {
        timeoutMs: CANCEL_GRACE_MS,
      })
      .catch(() => {
        log.warn('host did not confirm the cancellation in time');
        return undefined;
      }));
  if (opts.returnStatus === true && ended) return ended;
  throw reason instanceof CancelledFailure ? reason : new CancelledFailure('step cancelled');
}

type DrainCall = Extract<StepCall, { kind: 'drain' }>;
type VxlanCall = Extract<StepCall, { kind: 'vxlan-tunnel' }>;

/**
 * A vxlan-tunnel with both ends in one step goes to each host as its own end alone, the form every
 * agent (contract 3 too) takes; a host without an entry gets nothing.
 */
function ownEnd(call: VxlanCall, hostId: string): VxlanCall {
  const end = vxlanEndFor(call.params, hostId);
  if (end === undefined)
    throw ApplicationFailure.nonRetryable(
      `vxlan-tunnel on ${hostId}: the step's hosts have no entry for ${hostId} (${Object.keys(call.params.hosts ?? {}).join(', ')} only)`,
      'StepFailed',
    );
  return { ...call, params: end };
}

/** A drain whose plan names no destinations gets the controller's: it sees the whole fleet, a host sees only itself. */
async function withDestinations(
  drain: DrainCall,
  inventory: () => readonly HostPresence[],
  hostId: string,
  avoid: string[],
): Promise<DrainCall> {
  const fleet = inventory();
  if (Object.keys(drain.params.destinations).length > 0) {
    // Checked again here: a plan started without `refit rollout start` (the temporal CLI) was not.
    const unknown = unknownDestinations([drain], new Set(fleet.map((p) => p.hostId)), hostId);
    if (unknown.length > 0)
      throw ApplicationFailure.nonRetryable(
        `drain of ${hostId}: the plan sends VMs to hosts that are not in the inventory: ${unknown
          .map((u) => `${u.vm} → ${u.destination}`)
          .join(', ')}`,
        'StepFailed',
      );
    return drain;
  }
  try {
    const destinations = await waitForDestinations(inventory, hostId, avoid, {
      timeoutMs: DESTINATION_WAIT_MS,
      ...(drain.params.nonMigratable !== undefined ? { nonMigratable: drain.params.nonMigratable } : {}),
    });
    return { ...drain, params: { ...drain.params, destinations } };
  } catch (err) {
    if (err instanceof NoDestinationError)
      throw ApplicationFailure.nonRetryable(`drain of ${hostId}: ${err.message}`, 'StepFailed');
    throw err;
  }
}

/** How a command ended, as the workflow hears it: its outcome, or the error a dispatch of it ends with. */
export type StepEnd =
  | { state: 'succeeded'; outcome: StepOutcome }
  | { state: 'cancelled'; error: string; errorType: string }
  | { state: 'failed'; error: string; errorType: 'StepFailed'; hostError: string };

export function stepEnd(status: CommandStatus): StepEnd {
  if (status.state === 'succeeded' && status.outcome) return { state: 'succeeded', outcome: status.outcome };
  if (status.state === 'cancelled')
    return {
      state: 'cancelled',
      error: `step ${status.kind} cancelled on ${status.hostId}`,
      errorType: status.error?.type ?? 'StepCancelledError',
    };
  const error = status.error ?? { type: 'Unknown', message: `host reported ${status.state} without an outcome` };
  return {
    state: 'failed',
    error: `${status.kind} failed on ${status.hostId}: ${error.message}`,
    errorType: 'StepFailed',
    hostError: error.type,
  };
}

function outcomeOf(status: CommandStatus): StepOutcome {
  const end = stepEnd(status);
  if (end.state === 'succeeded') return end.outcome;
  if (end.state === 'cancelled') throw new CancelledFailure(end.error);
  // The host never runs a command id twice, so retrying this activity could only repeat the answer.
  throw ApplicationFailure.create({
    type: end.errorType,
    message: end.error,
    nonRetryable: true,
    details: [{ hostError: end.hostError }],
  });
}
