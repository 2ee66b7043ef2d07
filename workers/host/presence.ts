import type { JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { HostDownError, type HostDriver } from '../../activities/host/driver.js';
import type { Labels } from '../../schemas/common.js';
import { HostPresence } from '../../schemas/host.js';
import { isWrongLastSequence, publishPresence } from './report.js';
import { COMMAND_CONTRACT_VERSION } from '../../schemas/command.js';

export interface PresenceOptions {
  hostId: string;
  js: JetStreamClient;
  driver: HostDriver;
  labels: Labels;
  agentVersion: string;
  /** Unique to this start of this agent. */
  instanceId?: string;
  intervalMs: number;
  busyWith: () => HostPresence['busyWith'];
  log: Logger;
}

export interface PresenceReporter {
  /** Publish now, e.g. after a step changed the facts. Never throws. */
  publishNow(): Promise<void>;
  /** The boot id of the last facts read, for statuses written while the host cannot say. */
  lastBootId(): string | undefined;
  stop(): Promise<void>;
}

/**
 * Publishes the host's presence and facts every interval, jittered by ±10% so that a fleet started
 * together does not report in lockstep. A host that is rebooting publishes nothing: it is offline.
 */
export function startPresence(o: PresenceOptions): PresenceReporter {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let failing = false;
  let queue: Promise<void> = Promise.resolve();
  let pending = 0;
  let bootId: string | undefined;
  /** The stream sequence of this agent's last presence write: the next is written only after it. */
  let lastSeq: number | undefined;
  let duplicateSeenAt: number | undefined;
  let conflicts = 0;

  /** Two agents with one host id overwrite each other's presence: each finds the key not as it left it. */
  async function publishChecked(presence: HostPresence): Promise<void> {
    try {
      lastSeq = await publishPresence(o.js, presence, lastSeq);
      conflicts = 0;
      return;
    } catch (err) {
      if (!isWrongLastSequence(err)) throw err;
    }
    // Once can be this agent's own write whose ack was lost; twice in a row is another writer.
    if (++conflicts < 2) {
      lastSeq = await publishPresence(o.js, presence);
      return;
    }
    if (duplicateSeenAt === undefined)
      o.log.error(
        { hostId: o.hostId, instanceId: o.instanceId },
        `another agent writes the presence of host ${o.hostId}: two agents run with this host id; stop one (refit hosts marks it DUPLICATE)`,
      );
    duplicateSeenAt = Date.now();
    lastSeq = await publishPresence(o.js, { ...presence, duplicateSeenAt: new Date(duplicateSeenAt).toISOString() });
  }

  async function publishOnce(): Promise<void> {
    try {
      const facts = await o.driver.facts();
      bootId = facts.bootId;
      const busyWith = o.busyWith();
      const presence = HostPresence.parse({
        hostId: o.hostId,
        driver: o.driver.kind,
        simulated: o.driver.kind === 'sim',
        agentVersion: o.agentVersion,
        contractVersion: COMMAND_CONTRACT_VERSION,
        ...(o.instanceId !== undefined ? { instanceId: o.instanceId } : {}),
        ...(duplicateSeenAt !== undefined && Date.now() - duplicateSeenAt < 3 * o.intervalMs
          ? { duplicateSeenAt: new Date(duplicateSeenAt).toISOString() }
          : {}),
        labels: o.labels,
        facts,
        ...(busyWith !== undefined ? { busyWith } : {}),
        reportedAt: new Date().toISOString(),
        intervalMs: o.intervalMs,
      });
      await publishChecked(presence);
      if (failing) o.log.info('presence published again');
      failing = false;
    } catch (err) {
      if (err instanceof HostDownError) return;
      // One warning when publishing starts failing, not one per interval.
      if (!failing) o.log.warn({ err }, 'cannot publish presence');
      failing = true;
    }
  }

  function publishNow(): Promise<void> {
    pending++;
    queue = queue.then(publishOnce).finally(() => pending--);
    return queue;
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(
      () => {
        // A slow server must not pile up publishes: skip the tick while one is still on its way.
        void (pending === 0 ? publishNow() : queue).then(schedule);
      },
      o.intervalMs * (0.9 + 0.2 * Math.random()),
    );
  }

  void publishNow().then(schedule);
  return {
    publishNow,
    lastBootId: () => bootId,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await queue;
    },
  };
}
