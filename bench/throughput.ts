import { randomBytes } from 'node:crypto';
import { startRollout } from '../cli/rollout.js';
import { hostWorkflowId } from '../schemas/names.js';
import { awaitRollout, mapLimit, startFleet, type Harness } from './harness.js';
import { FIVE_STEPS, NO_WAIT, benchPlan } from './plans.js';
import { cpuBetween, loadAverage, RssWatcher, sampleProcess } from './proc.js';
import { round } from './stats.js';

export interface ThroughputRun {
  hosts: number;
  maxInFlight: number;
  hostSteps: number;
  /** Seconds until all N simulated hosts reported presence (not part of the rollout's time). */
  fleetStartS: number;
  state: string;
  /** Why the rollout did not complete, when it did not. */
  message?: string;
  /** 1-minute load average of the machine when the rollout started and when it ended. */
  loadAverage: [number, number];
  wallS: number;
  hostStepsPerS: number;
  wallMsPerHostStep: number;
  /** CPU seconds during the rollout, by process; the fleet's include its /bin/true children. */
  cpuS: Record<'controller' | 'fleet' | 'temporal' | 'nats' | 'total', number>;
  cpuMsPerHostStep: number;
  peakRssMb: Record<'controller' | 'fleet' | 'temporal' | 'nats', number>;
  fleetRssPerHostMb: number;
  /** Temporal history events: the rollout's (all its runs), and each host workflow's. */
  historyEvents: { rollout: number; rolloutRuns: number; hostMean: number; hostMax: number; perHostAll: number };
}

/**
 * Hosts in flight, which is also the wave size: at most `max` and about half the fleet (rounded up),
 * so that every wave of a fleet of two or more has hosts outside it to drain its VMs to.
 */
export function hostsInFlight(n: number, max: number): number {
  return Math.max(1, Math.min(max, Math.ceil(n / 2)));
}

/** 2. One rollout of N simulated hosts × 5 steps, each step running /bin/true on its host. */
export async function measureThroughput(
  h: Harness,
  n: number,
  o: { maxInFlight: number; presenceIntervalMs: number },
): Promise<ThroughputRun> {
  const t0 = performance.now();
  const fleet = await startFleet(h, `n${n}`, {
    hosts: n,
    prefix: `t${n}`,
    stepMs: NO_WAIT,
    stepCommand: ['/bin/true'],
    presenceIntervalMs: o.presenceIntervalMs,
  });
  const fleetStartS = (performance.now() - t0) / 1000;
  try {
    const maxInFlight = hostsInFlight(n, o.maxInFlight);
    const plan = benchPlan({
      name: `bench-n${n}`,
      hosts: fleet.info.hostIds,
      steps: FIVE_STEPS,
      canary: 0,
      batchSize: maxInFlight,
      maxInFlight,
    });
    const pids = {
      controller: h.controller.pid,
      fleet: fleet.pid,
      temporal: h.stack.temporal.pid,
      nats: h.stack.nats.pid,
    };
    const rss = new RssWatcher(pids);
    const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, sampleProcess(pid)]));
    const id = `bench-n${n}-${randomBytes(3).toString('hex')}`;
    h.say(`throughput: rollout ${id} across ${n} hosts, ${maxInFlight} in flight`);
    const loadAtStart = loadAverage();
    const started = performance.now();
    await startRollout(h.client, h.config.taskQueue, plan, id);
    const status = await awaitRollout(h, id, Math.max(600_000, n * 3_000));
    const wallS = (performance.now() - started) / 1000;
    const loadAtEnd = loadAverage();
    const after = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, sampleProcess(pid)]));
    const peak = rss.stop();
    const cpu = (k: keyof typeof pids) => round(cpuBetween(before[k], after[k]));
    const cpuS = {
      controller: cpu('controller'),
      fleet: cpu('fleet'),
      temporal: cpu('temporal'),
      nats: cpu('nats'),
      total: 0,
    };
    cpuS.total = round(cpuS.controller + cpuS.fleet + cpuS.temporal + cpuS.nats);
    if (status.state !== 'completed') h.say(`throughput: rollout ${id} ended ${status.state}: ${status.message ?? ''}`);

    const hostLengths = await mapLimit(fleet.info.hostIds, 16, async (hostId) =>
      Number((await h.client.workflow.getHandle(hostWorkflowId(hostId)).describe()).historyLength),
    );
    // A large rollout continues as new; its history is the sum over its runs.
    let rolloutLength = 0;
    let rolloutRuns = 0;
    for await (const run of h.client.workflow.list({ query: `WorkflowId = '${id}'` })) {
      rolloutLength += run.historyLength;
      rolloutRuns++;
    }
    const hostSum = hostLengths.reduce((a, b) => a + b, 0);
    const hostSteps = n * FIVE_STEPS.length;
    return {
      hosts: n,
      maxInFlight,
      hostSteps,
      fleetStartS: round(fleetStartS, 1),
      state: status.state,
      ...(status.state !== 'completed' && status.message !== undefined ? { message: status.message } : {}),
      loadAverage: [loadAtStart, loadAtEnd],
      wallS: round(wallS),
      hostStepsPerS: round(hostSteps / wallS, 1),
      wallMsPerHostStep: round((wallS * 1000) / hostSteps),
      cpuS,
      cpuMsPerHostStep: round((cpuS.total * 1000) / hostSteps),
      peakRssMb: {
        controller: round(peak.controller ?? NaN, 0),
        fleet: round(peak.fleet ?? NaN, 0),
        temporal: round(peak.temporal ?? NaN, 0),
        nats: round(peak.nats ?? NaN, 0),
      },
      fleetRssPerHostMb: round((peak.fleet ?? NaN) / n),
      historyEvents: {
        rollout: rolloutLength,
        rolloutRuns,
        hostMean: round(hostSum / n, 1),
        hostMax: Math.max(...hostLengths),
        perHostAll: round((hostSum + rolloutLength) / n, 1),
      },
    };
  } finally {
    await fleet.stop();
  }
}
