import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { phaseKey } from '../workflows/messages.js';
import { hostWorkflowId } from '../schemas/names.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { CAMPAIGN_STEPS, campaignStepsYaml } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { recordHistory } from './helpers/history.js';
import { eventCounts } from '../bench/history.js';
import { withNats } from '../workers/clients.js';
import { trailEvents } from './audit-helpers.js';
import { hostCommands } from './helpers/results.js';

// How many history events a host workflow writes per step (issue 17, docs/BENCHMARKS.md "History
// events per host-step"), counted from the real history of a finished host workflow.
// Three hosts: the drain needs somewhere to send the VMs; the third fails its sriov-enable.
const hosts = simHostIds(3, `hh${randomBytes(2).toString('hex')}`);
const [host, , failing] = hosts as [string, string, string];
const suite = useSimFleet({ hosts, speed: 8, rebootPauseMs: 200, fail: { [failing]: { 'sriov-enable': 'always' } } });
const commandsOf = hostCommands(() => suite.stack.controllerConnection());

describe('a host workflow through the whole campaign', () => {
  it("writes at most 6 history events per step: a run of steps in one activity, the host's start audited by its first run", async () => {
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
    // Two runs (drain to reboot, verify and undrain: decision 0037) and the reboot's awaitReboot. The first
    // run audits the host's start (decision 0040); the workflow its end, a local activity, as only it knows
    // whether the rollout aborted the host meanwhile. One patch marker.
    const scheduled = events.map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter(Boolean);
    expect(scheduled).toEqual(['dispatchRun', 'awaitReboot', 'dispatchRun']);
    const markers = events.filter((e) => e.markerRecordedEventAttributes);
    expect(markers.map((e) => e.markerRecordedEventAttributes?.markerName)).toEqual([
      'core_patch',
      'core_local_activity',
    ]);
    const hostEvents = (await withNats(suite.config, trailEvents))
      .map((e) => e.event)
      .filter((e) => e.hostId === host && e.rolloutId === id && e.type.startsWith('host.'));
    expect(hostEvents.map((e) => e.type)).toEqual(['host.started', 'host.succeeded']);
    // The phase set at the start (running) and the end, none per step.
    const phases = events.filter(
      (e) => e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.[phaseKey.name],
    );
    expect(phases).toHaveLength(2);
    // 70 before lean-host-history (11.67 per step), 57 before step-runs (9.50), 35 before decision 0040
    // (5.83), 28 since (4.67; 27 while the last run audited the end): docs/BENCHMARKS.md.
    expect(perStep).toBeLessThanOrEqual(6);
    // Each step still its own command on the host: one of each audit event, in plan order, before and after kept.
    const trail = (await withNats(suite.config, trailEvents))
      .map((e) => e.event)
      .filter((e) => e.hostId === host && e.rolloutId === id && e.type.startsWith('step.'));
    const commands = [...new Set(trail.map((e) => e.commandId))];
    expect(commands).toHaveLength(CAMPAIGN_STEPS.length);
    expect(commands.map((c) => trail.filter((e) => e.commandId === c).map((e) => `${e.step} ${e.type}`))).toEqual(
      CAMPAIGN_STEPS.map((kind) => [`${kind} step.requested`, `${kind} step.started`, `${kind} step.succeeded`]),
    );
    expect(trail.filter((e) => e.type === 'step.succeeded').every((e) => 'before' in (e.data ?? {}))).toBe(true);
    // The host workflow's own record of each step, as when each was dispatched alone.
    const ended = (await suite.controller.client.workflow.getHandle(hostWorkflowId(host)).result()) as {
      steps: { kind: string; state: string; outcome?: { summary: string } }[];
    };
    expect(ended.steps.map((r) => `${r.kind}:${r.state}`)).toEqual(CAMPAIGN_STEPS.map((k) => `${k}:succeeded`));
    expect(ended.steps.every((r) => r.outcome?.summary !== undefined)).toBe(true);
    await recordHistory(suite.config, hostWorkflowId(host), 'host-audit-with-steps');
    expect(id).toContain(name);
  });

  it('stops a run at its first failed step, and undoes the steps of the host as when each was dispatched alone', async () => {
    const { id, result } = await suite.controller.runRollout(`apiVersion: refit/v1
kind: Campaign
name: host-history-fails-${randomBytes(2).toString('hex')}
targets: { hosts: [${failing}] }
failureBudget: { maxFailedHosts: 1 }
${campaignStepsYaml()}
`);
    const error = `sriov-enable failed on ${failing}: sim: injected failure of sriov-enable (always)`;
    expect(result.hosts.find((h) => h.hostId === failing)).toMatchObject({ state: 'rolled-back', error });
    const ended = (await suite.controller.client.workflow.getHandle(hostWorkflowId(failing)).result()) as {
      steps: { kind: string; mode: string; state: string; error?: string }[];
    };
    expect(ended.steps.map((r) => `${r.mode}:${r.kind}:${r.state}`)).toEqual([
      'apply:drain:succeeded',
      'apply:ovs-convert:succeeded',
      'apply:sriov-enable:failed',
      'revert:sriov-enable:succeeded',
      'revert:ovs-convert:succeeded',
      'revert:drain:succeeded',
    ]);
    expect(ended.steps[2]?.error).toBe(error);
    // Nothing ran after the failed step. The reboot went to the host with its run (contract 5) and was
    // answered never run; verify and undrain, in the next run, were never sent.
    const commands = await commandsOf(failing);
    expect(commands.map((c) => `${c.mode}:${c.kind}:${c.state}`).sort()).toEqual(
      [
        'apply:drain:succeeded',
        'apply:ovs-convert:succeeded',
        'apply:sriov-enable:failed',
        'apply:reboot:failed',
        'revert:drain:succeeded',
        'revert:ovs-convert:succeeded',
        'revert:sriov-enable:succeeded',
      ].sort(),
    );
    expect(commands.find((c) => c.kind === 'reboot')?.error).toEqual({
      type: 'StepNotRunError',
      message: 'not run: the step before it in its run (sriov-enable) failed',
    });
    expect(suite.fleet.hosts.get(failing)?.snapshot().effects).not.toHaveProperty('reboot');
    // Its start stored by the first run, its end by the workflow after the reverts: each once.
    const hostEvents = (await withNats(suite.config, trailEvents))
      .map((e) => e.event)
      .filter((e) => e.hostId === failing && e.rolloutId === id && e.type.startsWith('host.'));
    expect(hostEvents.map((e) => e.type)).toEqual(['host.started', 'host.rolled-back']);
    expect(suite.fleet.hosts.get(failing)?.snapshot()).toMatchObject({ cordoned: false, bridge: { type: 'linux' } });
  });
});
