import { randomBytes } from 'node:crypto';
import { startRollout } from '../workers/control/rollouts.js';
import { awaitRollout, hostHistoryLengths, rolloutRunEvents, startFleet, type Harness } from './harness.js';
import { FIVE_STEPS, NO_WAIT, benchPlan } from './plans.js';
import { loadAverage, ProcessMeter } from './proc.js';
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
    const meter = new ProcessMeter(pids);
    const id = `bench-n${n}-${randomBytes(3).toString('hex')}`;
    h.say(`throughput: rollout ${id} across ${n} hosts, ${maxInFlight} in flight`);
    const loadAtStart = loadAverage();
    const started = performance.now();
    const status = await startRollout(h.client, h.config.taskQueue, plan, id)
      .then(() => awaitRollout(h, id, Math.max(600_000, n * 3_000)))
      .finally(() => meter.stop());
    const wallS = (performance.now() - started) / 1000;
    const loadAtEnd = loadAverage();
    const { cpuS: cpu, peakRssMb: peak } = meter.stop();
    const cpuS = {
      controller: round(cpu.controller),
      fleet: round(cpu.fleet),
      temporal: round(cpu.temporal),
      nats: round(cpu.nats),
      total: 0,
    };
    cpuS.total = round(cpuS.controller + cpuS.fleet + cpuS.temporal + cpuS.nats);
    if (status.state !== 'completed') h.say(`throughput: rollout ${id} ended ${status.state}: ${status.message ?? ''}`);

    const hostLengths = await hostHistoryLengths(h, fleet.info.hostIds);
    // A large rollout continues as new; its history is the sum over its runs.
    const runEvents = await rolloutRunEvents(h, status);
    const rolloutLength = runEvents.reduce((a, b) => a + b, 0);
    const rolloutRuns = runEvents.length;
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
        controller: round(peak.controller, 0),
        fleet: round(peak.fleet, 0),
        temporal: round(peak.temporal, 0),
        nats: round(peak.nats, 0),
      },
      fleetRssPerHostMb: round(peak.fleet / n),
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
