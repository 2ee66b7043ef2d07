import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { hostWorkflowId } from '../schemas/names.js';
import { startRollout } from '../workers/control/rollouts.js';
import { awaitRollout, startFleet, type Harness } from './harness.js';
import { CAMPAIGN_STEPS, NO_WAIT, benchPlan } from './plans.js';
import { round } from './stats.js';

export type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** An event's type as Temporal names it (`ActivityTaskScheduled`), from the attributes it carries. */
export const eventType = (e: HistoryEvent): string =>
  (Object.keys(e).find((k) => k.endsWith('EventAttributes') && e[k as keyof HistoryEvent] != null) ?? 'unknown')
    .replace(/EventAttributes$/, '')
    .replace(/^./, (c) => c.toUpperCase());

/** How many events of each type. */
export function eventCounts(events: readonly HistoryEvent[]): Record<string, number> {
  const byType: Record<string, number> = {};
  for (const e of events) byType[eventType(e)] = (byType[eventType(e)] ?? 0) + 1;
  return byType;
}

/** The summary an event was given (a local activity's marker says what it recorded). */
export const eventSummary = (e: HistoryEvent): unknown =>
  e.userMetadata?.summary ? defaultPayloadConverter.fromPayload(e.userMetadata.summary) : undefined;

export interface HistoryRun {
  steps: string[];
  events: number;
  perStep: number;
  byType: Record<string, number>;
  state: string;
}

/**
 * History events per host-step: the whole campaign (drain, ovs-convert, sriov-enable, reboot,
 * verify, undrain) on one SIMULATED host (a second one takes its VMs), its finished
 * `hostMaintenance` history fetched from Temporal and counted by type. test/host-history.test.ts
 * checks the same count against its bound.
 */
export async function measureHistory(h: Harness): Promise<HistoryRun> {
  const fleet = await startFleet(h, 'history', {
    hosts: 2,
    prefix: `hh${randomBytes(2).toString('hex')}`,
    stepMs: NO_WAIT,
    rebootPauseMs: 200,
    presenceIntervalMs: 10_000,
  });
  try {
    const host = fleet.info.hostIds[0] as string;
    const plan = benchPlan({
      name: 'bench-history',
      hosts: [host],
      steps: CAMPAIGN_STEPS,
      canary: 0,
      batchSize: 1,
      maxInFlight: 1,
    });
    const id = `bench-history-${randomBytes(3).toString('hex')}`;
    h.say(`history: the campaign on ${host}`);
    await startRollout(h.client, h.config.taskQueue, plan, id);
    const status = await awaitRollout(h, id, 300_000);
    const events = (await h.client.workflow.getHandle(hostWorkflowId(host)).fetchHistory()).events ?? [];
    return {
      steps: [...CAMPAIGN_STEPS],
      events: events.length,
      perStep: round(events.length / CAMPAIGN_STEPS.length, 2),
      byType: eventCounts(events),
      state: status.state,
    };
  } finally {
    await fleet.stop();
  }
}
