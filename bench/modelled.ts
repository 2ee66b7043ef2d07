import { randomBytes } from 'node:crypto';
import pLimit from 'p-limit';
import { startRollout } from '../workers/control/rollouts.js';
import { hostWorkflowId } from '../schemas/names.js';
import { PRESENCE_INTERVAL_MS } from '../schemas/host.js';
import type { StepKind } from '../schemas/steps.js';
import { awaitRollout, startFleet, type Harness } from './harness.js';
import { CAMPAIGN_STEPS, benchPlan } from './plans.js';
import { percentiles, round } from './stats.js';

/**
 * How long the campaign's steps take on a real hypervisor (three VMs each), in milliseconds:
 * live migration ~40 s per VM, an OVS switch-over, update-grub, a reboot of a server (BIOS, NIC
 * option ROMs, kernel) of three minutes, 100 hping3 packets at 10 per second.
 */
export const REAL_STEP_MS: Readonly<Record<StepKind, number>> = {
  drain: 3 * 40_000,
  'ovs-convert': 30_000,
  /** Not in the modelled campaign: the bond's switch-over and LACP settling. */
  'ovs-bond': 20_000,
  'sriov-enable': 45_000,
  reboot: 5_000,
  verify: 10_000,
  undrain: 3 * 40_000,
  'nic-tuning': 5_000,
  'net-health': 10_000,
  'vxlan-tunnel': 5_000,
};
export const REAL_REBOOT_DOWN_MS = 180_000;
/** One host's ideal time through the campaign, in real time. */
export const REAL_HOST_MS = CAMPAIGN_STEPS.reduce((a, k) => a + REAL_STEP_MS[k], 0) + REAL_REBOOT_DOWN_MS;

export interface ModelledRun {
  /** Real durations are divided by this. */
  compression: number;
  hosts: number;
  canary: number;
  maxInFlight: number;
  /** One host's modelled step time, compressed. */
  hostIdealMs: number;
  /** Waves × one host's time: what the rollout would take with zero orchestration cost. */
  idealCriticalPathMs: number;
  wallMs: number;
  overheadMs: number;
  /** Overhead against the compressed critical path: an upper bound, since the overhead does not shrink with compression. */
  overheadPctCompressed: number;
  /** The same overhead against the real (uncompressed) critical path. */
  overheadPctReal: number;
  /** Each host workflow's time beyond its ideal. */
  perHostOverheadMs: { p50: number; p99: number; max: number };
  perStepOverheadMs: number;
  state: string;
}

/** 4. The campaign with durations modelled on real ones, time-compressed; what orchestration adds. */
export async function measureModelled(
  h: Harness,
  o: { compression: number; hosts: number; maxInFlight: number },
): Promise<ModelledRun> {
  const stepMs = Object.fromEntries(Object.entries(REAL_STEP_MS).map(([k, ms]) => [k, ms / o.compression])) as Record<
    StepKind,
    number
  >;
  const rebootPauseMs = REAL_REBOOT_DOWN_MS / o.compression;
  const fleet = await startFleet(h, `model${o.compression}`, {
    hosts: o.hosts,
    prefix: `m${o.compression}`,
    stepMs,
    rebootPauseMs,
    presenceIntervalMs: PRESENCE_INTERVAL_MS,
  });
  try {
    const canary = 1;
    const maxInFlight = Math.min(o.maxInFlight, o.hosts);
    const plan = benchPlan({
      name: `bench-model-${o.compression}`,
      hosts: fleet.info.hostIds,
      steps: CAMPAIGN_STEPS,
      canary,
      batchSize: maxInFlight,
      maxInFlight,
    });
    const hostIdealMs = REAL_HOST_MS / o.compression;
    // Waves of maxInFlight hosts after the canary: each wave takes one host's time.
    const rounds = Math.min(canary, o.hosts) + Math.ceil((o.hosts - Math.min(canary, o.hosts)) / maxInFlight);
    const idealCriticalPathMs = rounds * hostIdealMs;
    const id = `bench-model-${o.compression}-${randomBytes(3).toString('hex')}`;
    h.say(
      `modelled: ${id}, ${o.hosts} hosts, real durations ÷ ${o.compression}, ideal ${(idealCriticalPathMs / 1000).toFixed(1)} s`,
    );
    const started = performance.now();
    await startRollout(h.client, h.config.taskQueue, plan, id);
    const status = await awaitRollout(h, id, Math.max(600_000, idealCriticalPathMs * 5));
    const wallMs = performance.now() - started;
    const spans = await pLimit(16).map(fleet.info.hostIds, async (hostId) => {
      const d = await h.client.workflow.getHandle(hostWorkflowId(hostId)).describe();
      return (d.closeTime?.getTime() ?? NaN) - d.startTime.getTime() - hostIdealMs;
    });
    const perHost = percentiles(spans);
    const overheadMs = wallMs - idealCriticalPathMs;
    return {
      compression: o.compression,
      hosts: o.hosts,
      canary,
      maxInFlight,
      hostIdealMs: round(hostIdealMs),
      idealCriticalPathMs: round(idealCriticalPathMs),
      wallMs: round(wallMs),
      overheadMs: round(overheadMs),
      overheadPctCompressed: round((100 * overheadMs) / idealCriticalPathMs, 2),
      overheadPctReal: round((100 * overheadMs) / (idealCriticalPathMs * o.compression), 3),
      perHostOverheadMs: { p50: round(perHost.p50), p99: round(perHost.p99), max: round(Math.max(...spans)) },
      perStepOverheadMs: round(perHost.p50 / CAMPAIGN_STEPS.length),
      state: status.state,
    };
  } finally {
    await fleet.stop();
  }
}
