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

const HEARTBEAT_EVERY_MS = 3_000;
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
export function createDispatchStep({ nc, results, presence, ensureHostConsumer, log }: DispatchDeps) {
  const js = jetstream(nc);
  return async function dispatchStep(req: DispatchRequest): Promise<StepOutcome> {
    const ctx = Context.current();
    const execution = ctx.info.workflowExecution;
    if (!execution) throw ApplicationFailure.nonRetryable('dispatchStep runs only inside a workflow', 'InvalidStep');
    const { workflowId, runId } = execution;
    const commandId = `${workflowId}/${runId}/${ctx.info.activityId}`;
    const stepLog = log.child({ hostId: req.hostId, commandId, kind: req.kind, mode: req.mode });

    const { rolloutId, hostId, mode, applied, avoidHosts, ...call } = req;
    const command: StepCommand = {
      ...(call.kind === 'drain' && mode === 'apply'
        ? await withDestinations(
            call,
            () => {
              ctx.heartbeat({ state: 'choosing destinations' });
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
      issuedAt: new Date().toISOString(),
    };
    // An agent one contract version older gets the command as its version reads it, and so does a host
    // whose presence is not seen: every agent this controller works with takes N-1 (docs/upgrading.md).
    const hostContract = presence.get(hostId)?.contractVersion ?? COMMAND_CONTRACT_VERSION - 1;
    const sent = commandForContract(command, hostContract);
    let last: CommandStatus | undefined;
    const heartbeat = () => ctx.heartbeat({ state: last?.state ?? 'sent', progress: last?.progress });
    const ticker = setInterval(heartbeat, HEARTBEAT_EVERY_MS);
    const key = resultKey(req.hostId, commandId);
    try {
      /** The start of the command on the host (more than one after a host worker restart) last confirmed. */
      let confirmedStart = 0;
      // The wait's own read of the key tells whether the host already has the command: one KV get, not two.
      let read!: (value: CommandStatus | undefined) => void;
      const firstRead = new Promise<CommandStatus | undefined>((resolve) => (read = resolve));
      const settled = results.waitFor(key, (s) => TERMINAL_STATES.has(s.state), {
        onRead: read,
        onValue: (s) => {
          last = s;
          heartbeat();
          // Hearing the host after it switched its network, and telling it so, is the confirmation.
          if (s.starts > confirmedStart && s.state === 'running' && s.progress?.awaitingConfirmation === true) {
            confirmedStart = s.starts;
            nc.publish(SUBJECTS.confirm(req.hostId), JSON.stringify({ commandId }));
            stepLog.info('confirmed the host is reachable after its network switch');
          }
        },
      });
      // Awaited below; if NATS fails before that (the attempt is retried), its rejection is not unhandled.
      settled.catch(() => undefined);
      const known = await Promise.race([firstRead, settled]);
      if (!known) {
        await ensureHostConsumer(req.hostId);
        const ack = await js.publish(SUBJECTS.command(req.hostId), JSON.stringify(sent), { msgID: commandId });
        // A duplicate: an earlier attempt sent it and its result is not stored yet; the stream kept one.
        stepLog.info({ attempt: ctx.info.attempt, duplicate: ack.duplicate }, 'step sent');
      } else {
        stepLog.info(
          { attempt: ctx.info.attempt, state: known.state },
          'step already known to the host; awaiting its result',
        );
      }
      const final = await Promise.race([settled, ctx.cancelled.catch((err: unknown) => cancelled(err))]);
      return withoutHealth(sent, outcomeOf(final), command);
    } finally {
      clearInterval(ticker);
    }

    /**
     * Only the workflow's own cancellation stops the host. A worker shutting down, a heartbeat timeout
     * or a reset only end this attempt: the next one waits for the same command, which goes on.
     */
    async function cancelled(reason: unknown): Promise<never> {
      const byWorkflow =
        ctx.cancellationDetails?.cancelRequested === true ||
        (reason instanceof CancelledFailure && reason.message === 'CANCELLED');
      if (!byWorkflow) {
        stepLog.info({ reason: String(reason) }, 'dispatch attempt ended; the step goes on on its host');
        throw reason;
      }
      return cancel(reason);
    }

    async function cancel(reason: unknown): Promise<never> {
      stepLog.warn('step cancelled by the workflow; asking the host to stop');
      nc.publish(SUBJECTS.cancel(req.hostId), JSON.stringify({ commandId, reason: 'workflow cancelled' }));
      await results
        .waitFor(key, (s) => TERMINAL_STATES.has(s.state), { timeoutMs: CANCEL_GRACE_MS })
        .catch(() => stepLog.warn('host did not confirm the cancellation in time'));
      throw reason instanceof CancelledFailure ? reason : new CancelledFailure('step cancelled');
    }
  };
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

function outcomeOf(status: CommandStatus): StepOutcome {
  if (status.state === 'succeeded' && status.outcome) return status.outcome;
  if (status.state === 'cancelled') throw new CancelledFailure(`step ${status.kind} cancelled on ${status.hostId}`);
  const error = status.error ?? { type: 'Unknown', message: `host reported ${status.state} without an outcome` };
  // The host never runs a command id twice, so retrying this activity could only repeat the answer.
  throw ApplicationFailure.create({
    type: 'StepFailed',
    message: `${status.kind} failed on ${status.hostId}: ${error.message}`,
    nonRetryable: true,
    details: [{ hostError: error.type }],
  });
}
