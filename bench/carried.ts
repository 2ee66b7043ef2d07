import { modelCarried } from '../workflows/carried-model.js';
import { round } from './stats.js';

export interface CarriedRun {
  hosts: number;
  failed: number;
  racks: number;
  /** KB of the continue-as-new input as carried before decision 0024, and compact. */
  beforeKb: number;
  compactKb: number;
  /** Milliseconds to build the modelled state and encode it both ways. */
  ms: number;
}

/**
 * What a rollout carries through continue-as-new, modelled at `hosts` SIMULATED hosts (no Temporal:
 * the rollout's own state machine driven to the end, serialised as Temporal's JSON converter does);
 * workflows/carried.test.ts holds the same model to its bound.
 */
export function measureCarried(hosts: number): CarriedRun {
  const t0 = performance.now();
  const m = modelCarried(hosts);
  return {
    hosts,
    failed: m.failed,
    racks: m.racks,
    beforeKb: round(m.beforeBytes / 1024, 1),
    compactKb: round(m.compactBytes / 1024, 1),
    ms: round(performance.now() - t0, 0),
  };
}
