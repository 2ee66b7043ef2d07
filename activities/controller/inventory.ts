import { isOnline, type HostPresence } from '../../schemas/host.js';
import type { Plan } from '../../schemas/plan.js';
import type { TargetResolution } from './types.js';

/**
 * The hosts a plan names, plus the hosts that carry every label of its selector, less those whose
 * facts do not match its filter; only hosts that report presence count. Named hosts that do not
 * are returned as missing, never dropped.
 */
export function selectTargets(
  inventory: readonly HostPresence[],
  targets: Plan['targets'],
  now = Date.now(),
): TargetResolution {
  const online = new Map(inventory.filter((p) => isOnline(p, now)).map((p) => [p.hostId, p]));
  const selected = new Set<string>();
  const missing: string[] = [];
  const excluded: { hostId: string; reason: string }[] = [];
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
  const named = new Set(targets.hosts ?? []);
  for (const hostId of [...selected]) {
    const reason = factMismatch(online.get(hostId), targets.facts);
    if (!reason) continue;
    selected.delete(hostId);
    // A named host left out is reported; a selected one simply does not match.
    if (named.has(hostId)) excluded.push({ hostId, reason });
  }
  // Named hosts keep the plan's order (the operator picks the canary by naming it first); hosts
  // found by the selector follow, sorted.
  const hostIds = [
    ...(targets.hosts ?? []).filter((h) => selected.has(h)),
    ...[...selected].filter((h) => !named.has(h)).sort(),
  ];
  const labels = Object.fromEntries(hostIds.map((h) => [h, online.get(h)?.labels ?? {}]));
  return { hostIds, missing, excluded, labels };
}

function factMismatch(p: HostPresence | undefined, facts: Plan['targets']['facts']): string | undefined {
  if (!p || !facts) return undefined;
  const f = p.facts;
  if (facts.bridge && f.bridge.type !== facts.bridge) return `bridge is ${f.bridge.type}, plan wants ${facts.bridge}`;
  const sriov = f.sriov.numVfs > 0 ? 'enabled' : 'disabled';
  if (facts.sriov && sriov !== facts.sriov) return `SR-IOV is ${sriov}, plan wants ${facts.sriov}`;
  if (facts.cordoned !== undefined && f.cordoned !== facts.cordoned)
    return f.cordoned ? 'host is cordoned' : 'host is not cordoned';
  return undefined;
}
