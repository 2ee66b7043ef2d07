import { leanTargets, selectTargets } from '../activities/controller/inventory.js';
import type { ReceivedPresence } from '../schemas/host.js';
import { modelCarried } from '../workflows/carried-model.js';
import { simHostIds, simLabels } from '../workers/sim/fleet.js';
import { round } from './stats.js';

/** Temporal refuses a payload above this by default (`limit.blobSize.error`). */
export const TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024;

export interface CarriedRun {
  hosts: number;
  failed: number;
  racks: number;
  /** KB of the continue-as-new input as carried before decision 0024, and compact. */
  beforeKb: number;
  compactKb: number;
  /**
   * The fleet-sized payloads of a rollout's first run, for `hosts` SIMULATED hosts named in the plan
   * with the sim's labels: the plan (the workflow's input) and resolveTargets' result: every host's id
   * and its failure-domain label (`rack`, as the model's plan limits), as recorded since `lean-targets`;
   * `resolvedAllKb` with all the sim's labels, as recorded before. KB.
   */
  firstRun: { planKb: number; resolvedKb: number; resolvedAllKb?: number };
  /** Hosts at which the largest of these payloads reaches Temporal's 2 MB (each grows linearly with the fleet). */
  ceilingHosts: { carried: number; plan: number; resolved: number };
  /** Milliseconds to build the modelled state and encode it both ways. */
  ms: number;
}

/**
 * What a rollout carries through continue-as-new, modelled at `hosts` SIMULATED hosts (no Temporal:
 * the rollout's own state machine driven to the end, serialised as Temporal's JSON converter does);
 * workflows/carried.test.ts holds the same model to its bound. Beside it, the payloads of the first
 * run that grow with the fleet, which set the ceiling now.
 */
export function measureCarried(hosts: number): CarriedRun {
  const t0 = performance.now();
  const m = modelCarried(hosts);
  const ms = performance.now() - t0;
  const ids = simHostIds(hosts, 'x1');
  const now = Date.now();
  const inventory = ids.map(
    (hostId, i) =>
      ({
        hostId,
        labels: simLabels(i),
        receivedAt: new Date(now).toISOString(),
        intervalMs: 60_000,
      }) as unknown as ReceivedPresence,
  );
  const resolvedAll = selectTargets(inventory, { hosts: ids }, now);
  const resolvedAllBytes = JSON.stringify(resolvedAll).length;
  const resolvedBytes = JSON.stringify(leanTargets(resolvedAll, ['rack'])).length;
  const planBytes = JSON.stringify({ ...m.plan, targets: { hosts: ids } }).length;
  const at2Mb = (bytes: number) => Math.floor((TEMPORAL_PAYLOAD_LIMIT / bytes) * hosts);
  return {
    hosts,
    failed: m.failed,
    racks: m.racks,
    beforeKb: round(m.beforeBytes / 1024, 1),
    compactKb: round(m.compactBytes / 1024, 1),
    firstRun: {
      planKb: round(planBytes / 1024, 1),
      resolvedKb: round(resolvedBytes / 1024, 1),
      resolvedAllKb: round(resolvedAllBytes / 1024, 1),
    },
    ceilingHosts: { carried: at2Mb(m.compactBytes), plan: at2Mb(planBytes), resolved: at2Mb(resolvedBytes) },
    ms: round(ms, 0),
  };
}
