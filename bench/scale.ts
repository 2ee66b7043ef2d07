import { randomBytes } from 'node:crypto';
import { enrollHosts } from '../workers/dev/enroll.js';
import { startRollout } from '../workers/control/rollouts.js';
import { waitForHostsOnline } from '../workers/control/inventory.js';
import { SEARCH_ATTRIBUTES, hostWorkflowId } from '../schemas/names.js';
import pLimit from 'p-limit';
import type { HostState } from '../schemas/rollout.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { awaitRollout, hostHistoryLengths, rolloutRunEvents, settle, startFleet, type Harness } from './harness.js';
import { benchPlan, NO_WAIT } from './plans.js';
import {
  runTaskTimes,
  scrape,
  serverPace,
  summariseTasks,
  workflowTaskTimes,
  type ServerPace,
  type TaskSummary,
} from './pace.js';
import { loadAverage, ProcessMeter } from './proc.js';
import { round } from './stats.js';

export interface ScaleOptions {
  hosts: number;
  /** Fleet processes the hosts are split across: one process cannot open 10,000 connections quickly. */
  fleets: number;
  maxInFlight: number;
  presenceIntervalMs: number;
}

export interface ScaleRun {
  hosts: number;
  fleets: number;
  maxInFlight: number;
  steps: string[];
  /** Seconds to enrol every host (credentials, one nats-server reload, command consumers). */
  enrolS: number;
  /** Seconds until every host reported presence (each fleet process checks its hosts' consumers first). */
  fleetStartS: number;
  state: string;
  message?: string;
  counts: Record<HostState, number>;
  loadAverage: [number, number];
  wallS: number;
  hostsPerS: number;
  cpuS: Record<'controller' | 'fleets' | 'temporal' | 'nats' | 'total', number>;
  /** Peak RSS of each process; `fleets` is the sum of the fleet processes' peaks. */
  peakRssMb: Record<'controller' | 'fleets' | 'temporal' | 'nats', number>;
  rollout: {
    /** Runs of the rollout workflow: it continues as new before its history grows large. */
    runs: number;
    eventsPerRun: number[];
    totalEvents: number;
    eventsPerHost: number;
    /** Bytes of the state the last run carried and returned (JSON of its status), and of the plan. */
    statusBytes: number;
    planBytes: number;
  };
  /** Where the time went: the dev server's metrics over the rollout, and workflow tasks from histories. */
  pace: {
    server: ServerPace;
    /** The rollout's runs: its workflow tasks (one workflow's tasks run one at a time). */
    rollout: TaskSummary & { eventsPerS: number; byType: Record<string, number> };
    /** A sample of host workflows. */
    hosts: TaskSummary;
  };
  hostWorkflows: {
    /** Counted by Temporal's visibility: host workflows of this rollout that completed. */
    completed: number;
    /** History length of an evenly spaced sample of host workflows. */
    sampled: number;
    eventsMean: number;
    eventsMax: number;
  };
}

const STEPS = ['verify'] as const;
const HISTORY_SAMPLE = 200;
/** Host workflows whose histories are read for their workflow tasks. */
const PACE_SAMPLE = 50;

/**
 * 6. Scale: one rollout across a large SIMULATED fleet (10,000 hosts by default), one no-op step per
 * host, hosts split across several fleet processes. What counts is that it completes, how the
 * rollout's history stays bounded (continue-as-new, with every host's outcome carried), and what it
 * costs per host.
 */
export async function measureScale(h: Harness, o: ScaleOptions): Promise<ScaleRun> {
  const perFleet = Math.ceil(o.hosts / o.fleets);
  const parts = Array.from({ length: o.fleets }, (_, i) => ({
    prefix: `x${i + 1}`,
    hosts: Math.min(perFleet, o.hosts - i * perFleet),
  })).filter((p) => p.hosts > 0);
  const allIds = parts.flatMap((p) => simHostIds(p.hosts, p.prefix));

  h.say(`scale: enrolling ${allIds.length} hosts (one nats-server reload)`);
  let t0 = performance.now();
  await enrollHosts(h.home, allIds);
  const enrolS = (performance.now() - t0) / 1000;

  h.say(`scale: starting ${allIds.length} SIMULATED hosts in ${parts.length} fleet processes`);
  t0 = performance.now();
  const fleets = await Promise.all(
    parts.map((p) =>
      startFleet(
        h,
        `scale-${p.prefix}`,
        { hosts: p.hosts, prefix: p.prefix, stepMs: NO_WAIT, presenceIntervalMs: o.presenceIntervalMs },
        { waitOnline: false },
      ),
    ),
  );
  await waitForHostsOnline(h.nc, allIds, {
    timeoutMs: 1_800_000,
    intervalMs: 10_000,
    onProgress: (online, of) => h.say(`scale: ${online}/${of} hosts report presence`),
  });
  const fleetStartS = (performance.now() - t0) / 1000;
  try {
    const maxInFlight = Math.min(o.maxInFlight, allIds.length);
    const plan = benchPlan({
      name: `bench-scale-${allIds.length}`,
      hosts: allIds,
      steps: STEPS,
      canary: 0,
      batchSize: maxInFlight,
      maxInFlight,
    });
    const pids = {
      controller: h.controller.pid,
      temporal: h.stack.temporal.pid,
      nats: h.stack.nats.pid,
      ...Object.fromEntries(fleets.map((f, i) => [`fleet${i}`, f.pid])),
    };
    // Each process's own peak; the fleets' figure is the sum of their peaks, an upper bound.
    const meter = new ProcessMeter(pids, 2_000);
    const id = `bench-scale-${allIds.length}-${randomBytes(3).toString('hex')}`;
    h.say(`scale: rollout ${id} across ${allIds.length} hosts, ${maxInFlight} in flight, steps ${STEPS.join(',')}`);
    const loadAtStart = loadAverage();
    const metricsBefore = await scrape(h.temporalMetricsUrl);
    const started = performance.now();
    const status = await startRollout(h.client, h.config.taskQueue, plan, id)
      .then(() => awaitRollout(h, id, 7_200_000, { progressEveryMs: 60_000 }))
      .finally(() => meter.stop());
    const wallS = (performance.now() - started) / 1000;
    const metricsAfter = await scrape(h.temporalMetricsUrl);
    const loadAtEnd = loadAverage();
    const { cpuS: cpu, peakRssMb: peak } = meter.stop();
    const fleetKeys = fleets.map((_, i) => `fleet${i}`);
    const sum = (values: Record<string, number>) => fleetKeys.reduce((total, k) => total + (values[k] ?? NaN), 0);
    const cpuS = {
      controller: round(cpu.controller),
      fleets: round(sum(cpu)),
      temporal: round(cpu.temporal),
      nats: round(cpu.nats),
      total: 0,
    };
    cpuS.total = round(cpuS.controller + cpuS.fleets + cpuS.temporal + cpuS.nats);
    if (status.state !== 'completed') h.say(`scale: rollout ${id} ended ${status.state}: ${status.message ?? ''}`);

    const eventsPerRun = await rolloutRunEvents(h, status);
    // Visibility counts a host workflow a little after it closes.
    const completed = await settle(
      async () =>
        Number(
          (
            await h.client.workflow.count(
              `${SEARCH_ATTRIBUTES.rolloutId} = '${id}' AND WorkflowType = 'hostMaintenance' AND ExecutionStatus = 'Completed'`,
            )
          ).count,
        ),
      (n) => n >= status.counts.succeeded,
      120_000,
    );
    const step = Math.max(1, Math.floor(allIds.length / HISTORY_SAMPLE));
    const lengths = await hostHistoryLengths(
      h,
      allIds.filter((_, i) => i % step === 0),
    );
    const totalEvents = eventsPerRun.reduce((a, b) => a + b, 0);
    const rolloutRuns = await runTaskTimes(h.client, id);
    const rolloutByType: Record<string, number> = {};
    for (const r of rolloutRuns)
      for (const [k, v] of Object.entries(r.byType)) rolloutByType[k] = (rolloutByType[k] ?? 0) + v;
    const hostTasks = await pLimit(8).map(
      allIds.filter((_, i) => i % Math.max(1, Math.floor(allIds.length / PACE_SAMPLE)) === 0),
      async (hostId) =>
        workflowTaskTimes((await h.client.workflow.getHandle(hostWorkflowId(hostId)).fetchHistory()).events ?? []),
    );
    return {
      hosts: allIds.length,
      fleets: parts.length,
      maxInFlight,
      steps: [...STEPS],
      enrolS: round(enrolS, 1),
      fleetStartS: round(fleetStartS, 1),
      state: status.state,
      ...(status.state !== 'completed' && status.message !== undefined ? { message: status.message } : {}),
      counts: status.counts,
      loadAverage: [loadAtStart, loadAtEnd],
      wallS: round(wallS, 1),
      hostsPerS: round(allIds.length / wallS, 2),
      cpuS,
      peakRssMb: {
        controller: round(peak.controller, 0),
        fleets: round(sum(peak), 0),
        temporal: round(peak.temporal, 0),
        nats: round(peak.nats, 0),
      },
      rollout: {
        runs: eventsPerRun.length,
        eventsPerRun,
        totalEvents,
        eventsPerHost: round(totalEvents / allIds.length, 2),
        statusBytes: Buffer.byteLength(JSON.stringify(status)),
        planBytes: Buffer.byteLength(JSON.stringify(plan)),
      },
      pace: {
        server: serverPace(metricsBefore, metricsAfter),
        rollout: {
          ...summariseTasks(rolloutRuns),
          eventsPerS: round(totalEvents / wallS, 1),
          byType: rolloutByType,
        },
        hosts: summariseTasks(hostTasks),
      },
      hostWorkflows: {
        completed,
        sampled: lengths.length,
        eventsMean: round(lengths.reduce((a, b) => a + b, 0) / lengths.length, 1),
        eventsMax: Math.max(...lengths),
      },
    };
  } finally {
    await Promise.all(fleets.map((f) => f.stop()));
  }
}
