import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { CorruptStateFileError } from '../../activities/files.js';
import type { HostDriver } from '../../activities/host/driver.js';
import { CommandStatus, type ReceivedCommand } from '../../schemas/command.js';
import type { Labels } from '../../schemas/common.js';
import { PRESENCE_INTERVAL_MS } from '../../schemas/host.js';
import { STREAMS, SUBJECTS, commandConsumer } from '../../schemas/names.js';
import { hostChainStore } from '../../activities/audit/store.js';
import type { Signer } from '../../activities/nkey.js';
import type { StepMetrics } from '../../activities/step-metrics.js';
import { HostAuditLog } from './audit-spool.js';
import { servePreviews } from './preview.js';
import { CommandNotProcessedError, CommandRunner, type RunResult } from './command-runner.js';
import { checkCancelMessage, checkCommandMessage, checkConfirmMessage, commandNamedIn } from './command-message.js';
import { publishCommandStatus } from './report.js';
import { CommandJournal } from './journal.js';
import { stepBeforeCheck } from './step-run.js';
import { startPresence } from './presence.js';
import { AGENT_VERSION } from './version.js';

export { AGENT_VERSION };

/** Well inside the consumer's 30 s ack wait, so a long step is never redelivered while it runs. */
export const DEFAULT_WORKING_INTERVAL_MS = 10_000;
/**
 * A command whose processing fails outside its step is delivered this many times, 2 s, 4 s, 8 s and
 * 16 s apart (half a minute in all: a full disk freed, a NATS blip over), then answered failed and
 * terminated, so that the queue, one message in flight per host, moves on.
 */
export const COMMAND_ATTEMPTS = 5;
/**
 * How long one pull request waits on the server. The server heartbeats an open pull every half of
 * this, and the client pulls again after two missed heartbeats: when the cluster node leading this
 * host's consumer is lost, the pull waiting there is lost with it, and the host pulls again within
 * this (nats.js's 30 s default: up to 30 s with no command taken; docs/RELIABILITY.md).
 */
export const PULL_EXPIRES_MS = 10_000;
const COMMAND_RETRY_DELAY_MS = 2_000;

export interface HostWorkerOptions {
  hostId: string;
  /** A connection with this host's own credentials; the caller closes it after stop(). */
  nc: NatsConnection;
  driver: HostDriver;
  labels: Labels;
  /** Signs this host's audit events: its own nkey (the seed it connects with). */
  signer?: Signer;
  /** Holds the command journal, the audit spool (and, for the sim, the simulated host). */
  stateDir: string;
  log: Logger;
  presenceIntervalMs?: number;
  agentVersion?: string;
  /** Unique to this start of this agent, reported in presence (startHost gives the state-dir lock's). */
  instanceId?: string;
  workingIntervalMs?: number;
  /** Deliveries of a command the host cannot process before it answers it failed (default {@link COMMAND_ATTEMPTS}). */
  commandAttempts?: number;
  /** The wait before the first redelivery of such a command, doubled for each next one. */
  commandRetryDelayMs?: number;
  /** Counts and times each step this host runs (the agent's /metrics). */
  stepMetrics?: StepMetrics;
}

export interface HostWorkerHandle {
  readonly hostId: string;
  /** Stop taking commands and leave a running step at its next safe point, unfinished, for the next start. */
  stop(): Promise<void>;
  /** Audit events spooled on this host and not yet stored in NATS. */
  auditBacklog(): number;
}

/**
 * The host worker: reports presence, takes commands from its own queue one at a time, runs each
 * through the driver exactly once (the journal answers repeats) and stores every status.
 */
export async function startHostWorker(o: HostWorkerOptions): Promise<HostWorkerHandle> {
  const log = o.log.child({ hostId: o.hostId });
  const js = jetstream(o.nc);
  const journal = await CommandJournal.open(path.join(o.stateDir, 'journal'));
  const audit = await HostAuditLog.open({
    hostId: o.hostId,
    dir: path.join(o.stateDir, 'audit'),
    store: hostChainStore(o.nc),
    log,
    signer: o.signer,
  });
  audit.start();
  const stopping = new AbortController();
  const runner: CommandRunner = new CommandRunner({
    hostId: o.hostId,
    js,
    journal,
    driver: o.driver,
    log,
    audit,
    bootId: async () =>
      (await (o.driver.bootId?.() ?? o.driver.facts().then((f) => f.bootId)).catch(() => undefined)) ??
      presence.lastBootId() ??
      'unknown',
  });
  const presence = startPresence({
    hostId: o.hostId,
    js,
    driver: o.driver,
    labels: o.labels,
    agentVersion: o.agentVersion ?? AGENT_VERSION,
    instanceId: o.instanceId ?? randomUUID(),
    intervalMs: Math.max(100, Math.round(o.presenceIntervalMs ?? PRESENCE_INTERVAL_MS)),
    busyWith: () => runner.busyWith(),
    log,
  });
  const cancels: Subscription = o.nc.subscribe(SUBJECTS.cancel(o.hostId), {
    callback: (err, msg) => {
      if (err) return log.warn({ err }, 'cancel subscription failed');
      const checked = checkCancelMessage(msg);
      if (checked.ok) runner.cancel(checked.value);
      else log.warn({ subject: msg.subject, reason: checked.reason }, 'rejected a cancel request');
    },
  });
  // The controller's confirmation that it still reaches this host (ovs-convert), for the running step.
  const confirms: Subscription = o.nc.subscribe(SUBJECTS.confirm(o.hostId), {
    callback: (err, msg) => {
      if (err) return log.warn({ err }, 'confirmation subscription failed');
      const checked = checkConfirmMessage(msg);
      if (checked.ok) runner.confirm(checked.value);
      else log.warn({ subject: msg.subject, reason: checked.reason }, 'rejected a confirmation');
    },
  });
  // Dry runs of a plan (refit rollout plan): read-only, answered at once, never queued with commands.
  const previews = servePreviews({ hostId: o.hostId, nc: o.nc, driver: o.driver, audit, log });
  let messages: ConsumerMessages | undefined;

  async function afterFinished(result: RunResult): Promise<void> {
    if (result.kind !== 'finished' || result.replayed || result.step === undefined) return;
    if (result.status.outcome !== undefined && o.driver.afterReported) {
      await o.driver.afterReported(result.step, result.status.outcome).catch((err: unknown) => {
        log.error({ err, commandId: result.status.commandId }, 'the step reported success but its follow-up failed');
      });
    }
    await presence.publishNow();
  }

  /** Commands the worker was running when it stopped or died: finish them now, not after the ack wait. */
  async function resumeUnfinished(): Promise<void> {
    const unreadable = (err: unknown) => log.error({ err }, 'a journal entry cannot be read; left for its command');
    const unfinished = await journal.unfinished(unreadable).catch((err: unknown) => {
      log.error({ err }, 'cannot read the command journal');
      return [];
    });
    for (const entry of unfinished) {
      if (stopping.signal.aborted) return;
      if (entry.command.hostId !== o.hostId) continue;
      log.info(
        { commandId: entry.commandId, kind: entry.command.kind, starts: entry.starts },
        'resuming a command left unfinished',
      );
      await afterFinished(await runner.run(entry.command));
    }
  }

  /** A message that is no step command: answered failed where it names a command of this host, then dropped. */
  async function refuse(
    msg: JsMsg,
    reason: string,
    forwarded: boolean,
    errorType = 'InvalidCommandError',
  ): Promise<void> {
    log.warn({ subject: msg.subject, seq: msg.seq, reason }, 'rejected a command message');
    // A forwarded message is someone else's words: answering it would let them fail a real command.
    const named = forwarded ? undefined : commandNamedIn(msg.data);
    if (named?.hostId === o.hostId) {
      const status = CommandStatus.parse({
        ...named,
        state: 'failed',
        starts: 0,
        bootId: await runner.bootId(),
        error: { type: errorType, message: `rejected by the host: ${reason}` },
        updatedAt: new Date().toISOString(),
      });
      await publishCommandStatus(js, status).catch((err: unknown) =>
        log.warn({ err, commandId: named.commandId }, 'cannot store the status of a rejected command'),
      );
    }
    msg.term();
  }

  /** Bounded retries of a command the runner cannot process; a corrupt journal entry is not retried. */
  async function processingFailed(msg: JsMsg, command: ReceivedCommand, err: unknown): Promise<void> {
    const attempt = msg.info.deliveryCount;
    const attempts = o.commandAttempts ?? COMMAND_ATTEMPTS;
    if (!(err instanceof CorruptStateFileError) && attempt < attempts) {
      const delay = (o.commandRetryDelayMs ?? COMMAND_RETRY_DELAY_MS) * 2 ** (attempt - 1);
      log.error(
        { err, commandId: command.commandId, attempt, attempts },
        'cannot run the command; it will be redelivered',
      );
      msg.nak(delay);
      return;
    }
    const reason =
      err instanceof CorruptStateFileError
        ? err
        : new CommandNotProcessedError(
            `the host could not process the command (attempt ${attempt} of ${attempts}): ${err instanceof Error ? err.message : String(err)}`,
            { cause: err },
          );
    log.error(
      { err, commandId: command.commandId, attempt, attempts },
      'giving up on the command; answering it failed',
    );
    const result = await runner.reject(command, reason).catch((cause: unknown) => {
      log.error({ err: cause, commandId: command.commandId }, 'cannot answer the command; it is dropped');
      return undefined;
    });
    if (result?.kind === 'left') return msg.nak();
    msg.term(reason.message);
  }

  async function handle(msg: JsMsg): Promise<void> {
    const checked = checkCommandMessage(msg, o.hostId);
    if (!checked.ok) return refuse(msg, checked.reason, checked.forwarded === true, checked.errorType);
    const command = checked.value;
    log.info(
      { commandId: command.commandId, kind: command.kind, mode: command.mode, redelivered: msg.redelivered },
      'command received',
    );
    const keepAlive = setInterval(() => msg.working(), o.workingIntervalMs ?? DEFAULT_WORKING_INTERVAL_MS);
    let result: RunResult;
    const started = performance.now();
    try {
      // A command of a run runs only after the step before it succeeded (contract 5, decision 0037).
      const notRun = await stepBeforeCheck(journal, command);
      result = notRun ? await runner.reject(command, notRun) : await runner.run(command);
      const { state } = result.kind === 'finished' ? result.status : { state: undefined };
      if (
        notRun === undefined &&
        result.kind === 'finished' &&
        !result.replayed &&
        (state === 'succeeded' || state === 'failed' || state === 'cancelled')
      )
        o.stepMetrics?.stepEnded({
          kind: command.kind,
          mode: command.mode,
          outcome: state,
          seconds: (performance.now() - started) / 1000,
        });
    } catch (err) {
      // Awaited here so that the message is kept alive while the host answers it.
      return await processingFailed(msg, command, err);
    } finally {
      clearInterval(keepAlive);
    }
    if (result.kind === 'left') return msg.nak();
    // The journal already holds the result: a lost ack only means a redelivery answered from it.
    await msg.ackAck().catch((err: unknown) => log.warn({ err, commandId: command.commandId }, 'ack not confirmed'));
    await afterFinished(result);
  }

  async function consumeCommands(): Promise<void> {
    for (let wait = 250; !stopping.signal.aborted;) {
      try {
        const consumer = await js.consumers.get(STREAMS.commands, commandConsumer(o.hostId));
        messages = await consumer.consume({ max_messages: 1, expires: PULL_EXPIRES_MS });
        wait = 250;
        void watchConsumer(messages);
        for await (const msg of messages) {
          await handle(msg).catch((err: unknown) => log.error({ err }, 'command handling failed'));
          if (stopping.signal.aborted) break;
        }
      } catch (err) {
        if (stopping.signal.aborted) return;
        log.warn({ err: String(err), retryInMs: wait }, 'command consumer not available yet; retrying');
        await sleep(wait, undefined, { signal: stopping.signal }).catch(() => undefined);
        wait = Math.min(wait * 2, 10_000);
      }
    }
  }

  /** A deleted consumer never delivers again: let go of it and look it up again. */
  async function watchConsumer(current: ConsumerMessages): Promise<void> {
    for await (const s of current.status()) {
      if (s.type === 'consumer_deleted' || s.type === 'consumer_not_found') {
        log.warn({ status: s.type }, 'command consumer is gone; waiting for it to come back');
        await current.close();
        return;
      }
    }
  }

  const running = resumeUnfinished()
    .then(consumeCommands)
    .catch((err: unknown) => log.error({ err }, 'host worker loop failed'));
  log.info({ driver: o.driver.kind, simulated: o.driver.kind === 'sim' }, 'host worker started');

  return {
    hostId: o.hostId,
    auditBacklog: () => audit.backlog,
    async stop() {
      if (stopping.signal.aborted) return;
      stopping.abort();
      runner.stop();
      await messages?.close();
      await running;
      cancels.unsubscribe();
      previews.unsubscribe();
      confirms.unsubscribe();
      await presence.stop();
      await audit.stop();
      log.info('host worker stopped');
    },
  };
}
