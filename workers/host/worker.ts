import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { HostDriver } from '../../activities/host/driver.js';
import type { Labels } from '../../schemas/common.js';
import { PRESENCE_INTERVAL_MS } from '../../schemas/host.js';
import { STREAMS, SUBJECTS, commandConsumer } from '../../schemas/names.js';
import { hostChainStore } from '../../activities/audit/store.js';
import { HostAuditLog } from './audit-spool.js';
import { CommandRunner, type RunResult } from './command-runner.js';
import { checkCancelMessage, checkCommandMessage, checkConfirmMessage } from './command-message.js';
import { CommandJournal } from './journal.js';
import { startPresence } from './presence.js';

/** Well inside the consumer's 30 s ack wait, so a long step is never redelivered while it runs. */
export const DEFAULT_WORKING_INTERVAL_MS = 10_000;
export const AGENT_VERSION = packageVersion();

export interface HostWorkerOptions {
  hostId: string;
  /** A connection with this host's own credentials; the caller closes it after stop(). */
  nc: NatsConnection;
  driver: HostDriver;
  labels: Labels;
  /** Holds the command journal, the audit spool (and, for the sim, the simulated host). */
  stateDir: string;
  log: Logger;
  presenceIntervalMs?: number;
  agentVersion?: string;
  workingIntervalMs?: number;
}

export interface HostWorkerHandle {
  readonly hostId: string;
  /** Stop taking commands and leave a running step at its next safe point, unfinished, for the next start. */
  stop(): Promise<void>;
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
    bootId: async () => (await o.driver.facts().catch(() => undefined))?.bootId ?? presence.lastBootId() ?? 'unknown',
  });
  const presence = startPresence({
    hostId: o.hostId,
    js,
    driver: o.driver,
    labels: o.labels,
    agentVersion: o.agentVersion ?? AGENT_VERSION,
    intervalMs: Math.max(100, Math.round(o.presenceIntervalMs ?? PRESENCE_INTERVAL_MS)),
    busyWith: () => runner.busyWith(),
    log,
  });
  const cancels: Subscription = o.nc.subscribe(SUBJECTS.cancel(o.hostId), {
    callback: (err, msg) => {
      if (err) return log.warn({ err }, 'cancel subscription failed');
      const checked = checkCancelMessage(msg.data);
      if (checked.ok) runner.cancel(checked.value);
      else log.warn({ subject: msg.subject, reason: checked.reason }, 'rejected a cancel request');
    },
  });
  // The controller's confirmation that it still reaches this host (ovs-convert), for the running step.
  const confirms: Subscription = o.nc.subscribe(SUBJECTS.confirm(o.hostId), {
    callback: (err, msg) => {
      if (err) return log.warn({ err }, 'confirmation subscription failed');
      const checked = checkConfirmMessage(msg.data);
      if (checked.ok) runner.confirm(checked.value);
      else log.warn({ subject: msg.subject, reason: checked.reason }, 'rejected a confirmation');
    },
  });
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
    const unfinished = await journal.unfinished().catch((err: unknown) => {
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

  async function handle(msg: JsMsg): Promise<void> {
    const checked = checkCommandMessage(msg.data, o.hostId);
    if (!checked.ok) {
      log.warn({ subject: msg.subject, seq: msg.seq, reason: checked.reason }, 'rejected a command message');
      msg.term();
      return;
    }
    const command = checked.value;
    log.info(
      { commandId: command.commandId, kind: command.kind, mode: command.mode, redelivered: msg.redelivered },
      'command received',
    );
    const keepAlive = setInterval(() => msg.working(), o.workingIntervalMs ?? DEFAULT_WORKING_INTERVAL_MS);
    let result: RunResult;
    try {
      result = await runner.run(command);
    } catch (err) {
      log.error({ err, commandId: command.commandId }, 'cannot run the command; it will be redelivered');
      msg.nak(5_000);
      return;
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
        messages = await consumer.consume({ max_messages: 1 });
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
    async stop() {
      if (stopping.signal.aborted) return;
      stopping.abort();
      runner.stop();
      await messages?.close();
      await running;
      cancels.unsubscribe();
      confirms.unsubscribe();
      await presence.stop();
      await audit.stop();
      log.info('host worker stopped');
    },
  };
}

function packageVersion(): string {
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'refit' && pkg.version) return pkg.version;
    } catch {
      // not at this level: source and compiled layouts differ by one directory
    }
  }
  return 'unknown';
}
