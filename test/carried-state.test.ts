import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { simHostIds } from '../workers/sim/fleet.js';
import { startRollout } from '../workers/control/rollouts.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';
import { useSimFleet } from './helpers/fleet.js';
import { recordHistory } from './helpers/history.js';
import { plan } from './helpers/controller.js';

// What a rollout carries through continue-as-new, compact (decision 0024), in a real rollout that
// continues as new several times: every host's outcome arrives at the end, and what each run hands
// on is a few bytes a host. The 100,000-host bound is modelled in workflows/carried.test.ts.
const HOSTS = Number(process.env.REFIT_CARRIED_HOSTS ?? 120);
const hosts = simHostIds(HOSTS, `cs${randomBytes(2).toString('hex')}`);
const suite = useSimFleet({ hosts, speed: 50 });

describe('a rollout that continues as new', () => {
  it(`carries every host's outcome compactly across its runs (${HOSTS} hosts)`, async () => {
    const { client } = suite.controller;
    const id = `carried-${randomBytes(4).toString('hex')}`;
    const started = performance.now();
    await startRollout(
      client,
      suite.config.taskQueue,
      plan(`apiVersion: refit/v1
kind: Campaign
name: carried
targets: { hosts: [${hosts.join(', ')}] }
waves: { canary: 0, batchSize: 20, maxInFlight: 20 }
steps:
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 1 }
`),
      id,
      // About 4 events a host: a new run every 30 to 40 hosts.
      { historyLimit: 150 },
    );
    const end = await rolloutEnd(client.workflow.getHandle(id));
    const wallS = (performance.now() - started) / 1000;
    expect(end.state, end.message).toBe('completed');
    expect(end.counts.succeeded).toBe(HOSTS);
    expect(end.hosts.map((x) => x.hostId).sort()).toEqual([...hosts].sort());
    expect(end.hosts.every((x) => x.state === 'succeeded' && x.attempts === 1 && x.step === 'verify')).toBe(true);
    expect(end.runs).toBeGreaterThanOrEqual(3);

    // Each run's continue-as-new input, as Temporal stored it.
    const runs: { runId: string; bytes: number }[] = [];
    const resolved: unknown[] = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId = '${id}'` })) {
      const events = (await client.workflow.getHandle(id, wf.runId).fetchHistory()).events ?? [];
      const scheduled = events.find(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'resolveTargets',
      );
      const done = events.find(
        (e) => Number(e.activityTaskCompletedEventAttributes?.scheduledEventId) === Number(scheduled?.eventId),
      );
      const result = done?.activityTaskCompletedEventAttributes?.result?.payloads?.[0]?.data;
      if (scheduled && result) resolved.push(JSON.parse(Buffer.from(result).toString('utf8')));
      const can = events.find((e) => e.workflowExecutionContinuedAsNewEventAttributes);
      const payloads = can?.workflowExecutionContinuedAsNewEventAttributes?.input?.payloads ?? [];
      if (can) runs.push({ runId: wf.runId, bytes: payloads.reduce((n, p) => n + (p.data?.length ?? 0), 0) });
    }
    expect(runs).toHaveLength(end.runs);
    // The first run resolved its targets once, and kept no labels: the plan has no failure domains
    // (lean-targets), so the recorded result is the host ids, not every label of every host.
    expect(resolved).toHaveLength(1);
    expect(resolved[0]).toMatchObject({ hostIds: hosts, labels: {} });
    const largest = Math.max(...runs.map((r) => r.bytes));
    console.log(
      `${HOSTS} hosts, ${end.runs + 1} runs in ${wallS.toFixed(1)} s: continue-as-new input ${runs
        .map((r) => r.bytes)
        .sort((a, b) => a - b)
        .join(', ')} bytes`,
    );
    // The plan's host list and every host's status in ~90 bytes each would be over 12 KB here.
    expect(largest).toBeLessThan(6_000);
    const first = runs.at(-1);
    const second = runs.at(-2);
    if (first) await recordHistory(suite.config, id, 'compact-carried.run1', first.runId);
    if (second) await recordHistory(suite.config, id, 'compact-carried.run2', second.runId);
  });
});
