import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { phaseKey } from '../workflows/messages.js';
import { hostWorkflowId } from '../schemas/names.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { CAMPAIGN_STEPS, campaignStepsYaml } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { recordHistory } from './helpers/history.js';
import { eventCounts, eventSummary } from '../bench/history.js';

// How many history events a host workflow writes per step (issue 17, docs/BENCHMARKS.md "History
// events per host-step"), counted from the real history of a finished host workflow.
// Two hosts: the drain needs somewhere to send the VMs.
const hosts = simHostIds(2, `hh${randomBytes(2).toString('hex')}`);
const host = hosts[0] as string;
const suite = useSimFleet({ hosts, speed: 8, rebootPauseMs: 200 });

describe('a host workflow through the whole campaign', () => {
  it('writes at most 9.5 history events per step, its audit events stored as local activities', async () => {
    const name = `host-history-${randomBytes(2).toString('hex')}`;
    const { id, result } = await suite.controller.runRollout(`apiVersion: refit/v1
kind: Campaign
name: ${name}
targets: { hosts: [${host}] }
${campaignStepsYaml()}
`);
    expect(result.state, JSON.stringify(result.hosts)).toBe('completed');
    const events = (await suite.controller.client.workflow.getHandle(hostWorkflowId(host)).fetchHistory()).events ?? [];
    const byType = eventCounts(events);
    const perStep = events.length / CAMPAIGN_STEPS.length;
    console.log(
      `host workflow: ${events.length} events for ${CAMPAIGN_STEPS.length} steps (${perStep.toFixed(2)} per step): ${JSON.stringify(byType)}`,
    );
    // One dispatchStep per step and the reboot's awaitReboot; the audit events are local activities' markers.
    expect(byType.ActivityTaskScheduled).toBe(CAMPAIGN_STEPS.length + 1);
    const audits = events.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity');
    expect(audits.map(eventSummary)).toEqual([`${host} · host.started`, `${host} · host.succeeded`]);
    // The phase set at the start (running) and the end, none per step.
    const phases = events.filter(
      (e) => e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.[phaseKey.name],
    );
    expect(phases).toHaveLength(2);
    // 70 before (11.67 per step): docs/BENCHMARKS.md.
    expect(perStep).toBeLessThanOrEqual(9.5);
    await recordHistory(suite.config, hostWorkflowId(host), 'lean-host-history');
    expect(id).toContain(name);
  });
});
