import { isOnline, type HostPresence } from '../../schemas/host.js';
import type { Plan } from '../../schemas/plan.js';
import type { TargetResolution } from './types.js';

/**
 * The hosts a plan names, plus the hosts that carry every label of its selector; only hosts that
 * report presence count. Named hosts that do not are returned as missing, never dropped.
 */
export function selectTargets(inventory: readonly HostPresence[], targets: Plan['targets'], now = Date.now()): TargetResolution {
  const online = new Map(inventory.filter((p) => isOnline(p, now)).map((p) => [p.hostId, p]));
  const selected = new Set<string>();
  const missing: string[] = [];
  for (const hostId of targets.hosts ?? []) {
    if (online.has(hostId)) selected.add(hostId);
    else missing.push(hostId);
  }
  if (targets.selector) {
    const wanted = Object.entries(targets.selector);
    for (const p of online.values()) {
      if (wanted.every(([k, v]) => p.labels[k] === v)) selected.add(p.hostId);
    }
  }
  return { hostIds: [...selected].sort(), missing };
}
