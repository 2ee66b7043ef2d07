import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { WorkflowFailedError, ApplicationFailure, defaultPayloadConverter } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { ROLLOUT_CANCELLED, ROLLOUT_FAILED, hostWorkflowId } from '../schemas/names.js';
import { RolloutStatusJson } from '../schemas/rollout-json.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';
import { startRollout } from '../workers/control/rollouts.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { operatorUpdates, phaseKey } from '../workflows/messages.js';
import { drainUndrainPlan, rolloutReaches, runCli } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { recordHistory } from './helpers/history.js';

// What the Temporal UI (and anything else reading Temporal) sees of a rollout: decision 0017.
const hosts = simHostIds(3, `tu${randomBytes(2).toString('hex')}`);
const h = (i: number) => hosts[i] as string;
const suite = useSimFleet({ hosts, speed: 4 });

async function start(name: string, targets: string[], extra = ''): Promise<string> {
  const id = `${name}-${randomBytes(4).toString('hex')}`;
  await startRollout(suite.controller.client, suite.config.taskQueue, drainUndrainPlan(name, targets, extra), id);
  return id;
}

const summaryOf = (e: temporal.api.history.v1.IHistoryEvent): unknown =>
  e.userMetadata?.summary ? defaultPayloadConverter.fromPayload(e.userMetadata.summary) : undefined;

/** The phase Temporal has for a workflow, once it is `phase` (an upsert lands a workflow task later). */
async function phaseBecomes(id: string, phase: string): Promise<string | undefined> {
  let seen: string | undefined;
  for (let i = 0; i < 100; i++) {
    seen = (await suite.controller.client.workflow.getHandle(id).describe()).typedSearchAttributes.get(phaseKey);
    if (seen === phase) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return seen;
}

describe('a rollout in Temporal', () => {
  it('that refit reports failed is a FAILED workflow whose status refit still reads; hosts and steps carry summaries', async () => {
    const { client } = suite.controller;
    const absent = `absent-${randomBytes(2).toString('hex')}`;
    const id = await start('ends-failed', [h(0), absent]);
    const handle = client.workflow.getHandle(id);
    const failure = await handle.result().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    const cause = (failure as WorkflowFailedError).cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect((cause as ApplicationFailure).type).toBe(ROLLOUT_FAILED);
    expect(cause?.message).toContain(absent);

    const described = await handle.describe();
    expect(described.status.name).toBe('FAILED');
    expect(described.typedSearchAttributes.get(phaseKey)).toBe('failed');
    expect(await described.staticSummary()).toBe('refit rollout · plan ends-failed');

    const end = await rolloutEnd(handle);
    expect(end.state).toBe('failed');
    expect(end.missingHosts).toEqual([absent]);
    // The CLI reads it as before, with no worker needed for a closed rollout's status.
    const cli = await runCli(suite.config, ['rollout', 'status', id, '--json']);
    expect(cli.code, cli.stderr).toBe(0);
    const status = RolloutStatusJson.parse(JSON.parse(cli.stdout));
    expect(status.state).toBe('failed');
    expect(status.hosts.find((x) => x.hostId === h(0))?.state).toBe('succeeded');
    const listed = await runCli(suite.config, ['rollout', 'list', '--json']);
    expect((JSON.parse(listed.stdout) as { id: string; state: string }[]).find((r) => r.id === id)?.state).toBe(
      'failed',
    );

    // The parent names the host of each child it starts; the child names host and step of each activity.
    const parent = (await handle.fetchHistory()).events ?? [];
    const starts = parent.filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes);
    expect(starts.map(summaryOf)).toEqual([h(0)]);
    const child = client.workflow.getHandle(hostWorkflowId(h(0)));
    expect(await (await child.describe()).staticSummary()).toBe(h(0));
    const childEvents = (await child.fetchHistory()).events ?? [];
    // Audit events the workflow writes itself are local activities (decision 0024), their summaries on
    // their markers; a host's start is written by its first run (decision 0040), its end by the workflow.
    const scheduled = childEvents.filter(
      (e) =>
        e.activityTaskScheduledEventAttributes || e.markerRecordedEventAttributes?.markerName === 'core_local_activity',
    );
    const summaries = scheduled.map(summaryOf);
    // Drain and undrain are one run of steps, one activity (decision 0037), named by both.
    expect(summaries).toEqual([`${h(0)} · drain, undrain`, `${h(0)} · host.succeeded`]);
    expect(summaries.every((s) => typeof s === 'string' && s.startsWith(`${h(0)} · `))).toBe(true);
    await recordHistory(suite.config, id, 'ends-failed');
  });

  it('keeps RefitPhase at the rollout state (paused), and a cancelled rollout fails as RolloutCancelled', async () => {
    const { client } = suite.controller;
    const id = await start('phases', [h(1), h(2)], 'waves: { canary: 1, batchSize: 1, maxInFlight: 1 }');
    const handle = client.workflow.getHandle(id);
    await rolloutReaches(client, id, 'its canary running', (s) => s.hosts.some((x) => x.state === 'running'));
    expect(await phaseBecomes(id, 'running')).toBe('running');
    await handle.executeUpdate(operatorUpdates.pause, { args: [{ by: 'test', reason: 'look' }] });
    expect(await phaseBecomes(id, 'paused')).toBe('paused');
    await handle.executeUpdate(operatorUpdates.cancel, { args: [{ by: 'test' }] });

    const end = await rolloutEnd(handle);
    expect(end.state).toBe('cancelled');
    const failure = await handle.result().then(
      () => undefined,
      (err: unknown) => (err as WorkflowFailedError).cause,
    );
    expect((failure as ApplicationFailure).type).toBe(ROLLOUT_CANCELLED);
    const described = await handle.describe();
    expect(described.status.name).toBe('FAILED');
    expect(described.typedSearchAttributes.get(phaseKey)).toBe('cancelled');
    const cli = await runCli(suite.config, ['rollout', 'status', id, '--json']);
    expect(RolloutStatusJson.parse(JSON.parse(cli.stdout)).state).toBe('cancelled');
    await recordHistory(suite.config, id, 'pause-cancel-phases');
  });
});
