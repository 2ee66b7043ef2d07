import type { Client } from '@temporalio/client';
import type { NatsConnection } from '@nats-io/transport-node';
import { readTrail } from '../../activities/audit/read.js';
import { changesOf, renderChanges } from '../../activities/audit/diff.js';
import { hostWorkflowId } from '../../schemas/names.js';
import type { RolloutStatus, StepRecord } from '../../schemas/rollout.js';
import { hostProgressQuery, type HostProgress } from '../../workflows/messages.js';
import { listRollouts, type RolloutRow } from '../../workers/control/rollouts.js';
import { getRolloutStatus } from '../../workers/control/rollout-status.js';
import { readInventory } from '../../workers/control/inventory.js';
import { HostEventCache } from '../../workers/control/host-events.js';
import { summarize } from '../audit-render.js';

/**
 * What the web view shows, read through the same functions as `refit rollout list|status`,
 * `refit hosts` and `refit audit log`, with the CLI's identities: Temporal list, describe and
 * query; NATS stream info and direct gets. Nothing here writes.
 */
export interface UiReader {
  rollouts(limit: number): Promise<RolloutRow[]>;
  rollout(id: string): Promise<RolloutView>;
  host(hostId: string, rolloutId: string | undefined): Promise<HostView>;
}

export interface RolloutView {
  status: RolloutStatus;
  /** Per host of the rollout: whether it reports presence now; absent when it never reported. */
  online: Record<string, boolean>;
  /** The hosts of the rollout whose agent runs the sim driver: nothing on them is real. */
  simulated: string[];
}

export interface HostEventView {
  at: string;
  type: string;
  actor: string;
  step: string | null;
  summary: string;
  /** The event's diff, one line each (`path: before → after`, or a unified line diff). */
  changes: string[];
}

export interface HostView {
  hostId: string;
  rolloutId: string | null;
  /** Whether the host reports presence now; null when it never reported. */
  online: boolean | null;
  /** Its agent runs the sim driver (nothing on it is real); null when it never reported. */
  simulated: boolean | null;
  /** The host workflow's own account of its steps, when its latest run belongs to this rollout. */
  progress: { current: HostProgress['current']; steps: StepRecord[] } | null;
  events: HostEventView[];
  /** Set when fewer events are shown than the trail holds for this host. */
  eventsLeftOut: number;
}

/** The newest events a host page shows; older ones are in `refit audit log --host`. */
const MAX_EVENTS = 300;
/** Events are stored a little after they happen: read from this long before the rollout started. */
const READ_EARLY_MS = 10 * 60_000;

export function uiReader(client: Client, nc: NatsConnection): UiReader {
  // A host page polls every 2 s: each poll reads only the audit events stored since the last one.
  const hostEvents = new HostEventCache((opts) => readTrail(nc, opts), MAX_EVENTS);
  return {
    rollouts: (limit) => listRollouts(client, limit),
    async rollout(id) {
      const [status, inventory] = await Promise.all([getRolloutStatus(client, id), readInventory(nc)]);
      const ids = new Set(status.hosts.map((h) => h.hostId));
      const online: Record<string, boolean> = {};
      const simulated: string[] = [];
      for (const row of inventory.hosts) {
        if (!ids.has(row.hostId)) continue;
        online[row.hostId] = row.online;
        if (row.simulated) simulated.push(row.hostId);
      }
      return { status, online, simulated };
    },
    async host(hostId, rolloutId) {
      const status = rolloutId !== undefined ? await getRolloutStatus(client, rolloutId) : undefined;
      const since = status !== undefined ? new Date(Date.parse(status.startedAt) - READ_EARLY_MS) : undefined;
      const [progress, { events, total }, inventory] = await Promise.all([
        hostProgress(client, hostId, rolloutId),
        hostEvents.events(hostId, rolloutId, since),
        readInventory(nc),
      ]);
      const row = inventory.hosts.find((h) => h.hostId === hostId);
      return {
        hostId,
        rolloutId: rolloutId ?? null,
        online: row?.online ?? null,
        simulated: row?.simulated ?? null,
        progress,
        events: events.map((e) => ({
          at: e.at,
          type: e.type,
          actor: e.actor,
          step: e.step ?? null,
          summary: summarize(e),
          changes: renderChanges(changesOf(e)),
        })),
        eventsLeftOut: total - events.length,
      };
    },
  };
}

/** The host workflow's progress query, if its latest run is this rollout's (any rollout's when none is named). */
async function hostProgress(
  client: Client,
  hostId: string,
  rolloutId: string | undefined,
): Promise<HostView['progress']> {
  try {
    const progress = await client.workflow.getHandle(hostWorkflowId(hostId)).query(hostProgressQuery);
    if (rolloutId !== undefined && progress.rolloutId !== rolloutId) return null;
    return { current: progress.current, steps: progress.steps };
  } catch {
    // No host workflow yet, or no worker to answer the query: the audit events still tell the story.
    return null;
  }
}
