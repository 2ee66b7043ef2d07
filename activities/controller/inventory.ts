import { setTimeout as sleep } from 'node:timers/promises';
import { isOnline, type HostPresence, type ReceivedPresence } from '../../schemas/host.js';
import type { Plan } from '../../schemas/plan.js';
import type { PlanStep } from '../../schemas/steps.js';
import type { TargetResolution } from '../../schemas/activities.js';
import { RefitError } from '../../schemas/errors.js';

/**
 * The hosts a plan names, plus the hosts that carry every label of its selector, less those whose
 * facts do not match its filter; only hosts that report presence are selected (by when the server
 * stored it: see isOnline). Named hosts that do not are returned as missing, never dropped. Hosts
 * that reported once but are offline now, and that the plan names or its selector matches (facts
 * as they last reported them), are returned as offline, so the rollout can wait for them, skip or
 * fail them as its plan says.
 */
export function selectTargets(
  inventory: readonly ReceivedPresence[],
  targets: Plan['targets'],
  now = Date.now(),
): TargetResolution {
  const known = new Map(inventory.map((p) => [p.hostId, p]));
  const isUp = (hostId: string) => {
    const p = known.get(hostId);
    return p !== undefined && isOnline(p, now);
  };
  const matched = new Set<string>();
  for (const hostId of targets.hosts ?? []) if (known.has(hostId)) matched.add(hostId);
  if (targets.selector) {
    const wanted = Object.entries(targets.selector);
    for (const p of known.values()) {
      if (wanted.every(([k, v]) => p.labels[k] === v)) matched.add(p.hostId);
    }
  }
  const named = new Set(targets.hosts ?? []);
  const excluded: { hostId: string; reason: string }[] = [];
  for (const hostId of [...matched]) {
    const reason = factMismatch(known.get(hostId), targets.facts);
    if (!reason) continue;
    matched.delete(hostId);
    // A named host left out is reported; a selected one simply does not match.
    if (named.has(hostId))
      excluded.push({ hostId, reason: isUp(hostId) ? reason : `${reason} (last report; offline)` });
  }
  // Named hosts keep the plan's order (the operator picks the canary by naming it first); hosts
  // found by the selector follow, sorted.
  const ordered = [
    ...(targets.hosts ?? []).filter((h) => matched.has(h)),
    ...[...matched].filter((h) => !named.has(h)).sort(),
  ];
  const hostIds = ordered.filter(isUp);
  const offline = ordered.filter((h) => !isUp(h));
  // As before offline hosts were told apart: every named host that does not report now.
  const missing = (targets.hosts ?? []).filter((h) => !isUp(h));
  const labels = Object.fromEntries(ordered.map((h) => [h, known.get(h)?.labels ?? {}]));
  return { hostIds, missing, excluded, labels, offline };
}

/** Those of `hostIds` that do not report presence now (never reported, or fell silent). */
export function offlineAmong(
  inventory: readonly ReceivedPresence[],
  hostIds: readonly string[],
  now = Date.now(),
): string[] {
  const online = new Set(inventory.filter((p) => isOnline(p, now)).map((p) => p.hostId));
  return hostIds.filter((h) => !online.has(h));
}

export function factMismatch(p: HostPresence | undefined, facts: Plan['targets']['facts']): string | undefined {
  if (!p || !facts) return undefined;
  const f = p.facts;
  if (facts.bridge && f.bridge.type !== facts.bridge) return `bridge is ${f.bridge.type}, plan wants ${facts.bridge}`;
  const sriov = f.sriov.numVfs > 0 ? 'enabled' : 'disabled';
  if (facts.sriov && sriov !== facts.sriov) return `SR-IOV is ${sriov}, plan wants ${facts.sriov}`;
  if (facts.cordoned !== undefined && f.cordoned !== facts.cordoned)
    return f.cordoned ? 'host is cordoned' : 'host is not cordoned';
  return undefined;
}

export class NoDestinationError extends RefitError {
  /** Other hosts may report or make room soon (it is not that the VMs cannot move at all). */
  transient = true;
}

/**
 * Where each VM of a host goes when it is drained: hosts that report, are not cordoned, are not in
 * `avoid` (the same wave: they are about to be drained too) and have free VM slots, the emptiest
 * first. Only hosts a VM can live-migrate to at all: the same driver (a sim host is no destination
 * for a real VM, nor a libvirt host for a lab one) and the same `cluster` label (live migration stays
 * inside a cluster; hosts without the label are one cluster). VMs with SR-IOV functions cannot be
 * live-migrated; they make the drain fail.
 */
export function chooseDestinations(
  inventory: readonly ReceivedPresence[],
  hostId: string,
  avoid: readonly string[],
  now = Date.now(),
): Record<string, string> {
  const source = inventory.find((p) => p.hostId === hostId);
  if (!source) throw new NoDestinationError(`host ${hostId} does not report presence; its VMs are unknown`);
  const pinned = source.facts.vms.filter((vm) => vm.sriov).map((vm) => vm.name);
  if (pinned.length > 0) {
    const err = new NoDestinationError(`VMs with SR-IOV functions cannot be live-migrated: ${pinned.join(', ')}`);
    err.transient = false;
    throw err;
  }
  const free = new Map(
    inventory
      .filter((p) => p.hostId !== hostId && !avoid.includes(p.hostId) && isOnline(p, now) && !p.facts.cordoned)
      .filter((p) => p.driver === source.driver && p.labels['cluster'] === source.labels['cluster'])
      .map((p) => [p.hostId, p.facts.capacity.vmSlots - p.facts.capacity.vmsRunning] as const)
      .filter(([, slots]) => slots > 0),
  );
  const destinations: Record<string, string> = {};
  for (const vm of source.facts.vms) {
    const best = [...free.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0];
    if (!best)
      throw new NoDestinationError(
        `no host has room for VM ${vm.name} (all others are cordoned, full, silent, in the same wave, or of another driver or cluster)`,
      );
    destinations[vm.name] = best[0];
    free.set(best[0], best[1] - 1);
    if (best[1] - 1 === 0) free.delete(best[0]);
  }
  return destinations;
}

/**
 * chooseDestinations over the inventory as `read` gives it, asked again every `intervalMs` while no
 * host can take the VMs, for up to `timeoutMs`: right after nats-server or the fleet restarted, every
 * other host's presence is a few seconds old, and a moment later they report again. A drain that
 * cannot happen at all (VMs with SR-IOV functions) fails at once.
 */
export async function waitForDestinations(
  read: () => readonly ReceivedPresence[],
  hostId: string,
  avoid: readonly string[],
  { timeoutMs, intervalMs = 500 }: { timeoutMs: number; intervalMs?: number },
): Promise<Record<string, string>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return chooseDestinations(read(), hostId, avoid);
    } catch (err) {
      if (!(err instanceof NoDestinationError) || !err.transient || Date.now() >= deadline) throw err;
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}

/** A drain destination a plan names that is no host of the inventory (or is the drained host itself). */
export interface UnknownDestination {
  /** Where in the plan: `steps[0].params.destinations.web-1`. */
  path: string;
  vm: string;
  destination: string;
}

/**
 * The drain destinations of `steps` that name no host of the inventory: a VM sent there would go
 * to a host refit does not know (a typo, a decommissioned host, one not enrolled). `drained` is the
 * host being drained, when known: its own VMs cannot go to itself.
 */
export function unknownDestinations(
  steps: readonly PlanStep[],
  inventory: ReadonlySet<string>,
  drained?: string,
): UnknownDestination[] {
  return steps.flatMap((step, i) =>
    step.kind !== 'drain'
      ? []
      : Object.entries(step.params.destinations)
          .filter(([, destination]) => !inventory.has(destination) || destination === drained)
          .map(([vm, destination]) => ({ path: `steps[${i}].params.destinations.${vm}`, vm, destination })),
  );
}
