import { setTimeout as sleep } from 'node:timers/promises';
import { isOnline, type HostPresence, type ReceivedPresence, type VmFacts } from '../../schemas/host.js';
import type { Plan } from '../../schemas/plan.js';
import type { NonMigratable, PlanStep } from '../../schemas/steps.js';
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

/**
 * The resolution with only the labels the rollout uses (its failure-domain keys), indexed in
 * `domains` instead of by host in `labels` (see TargetResolution.domains).
 */
export function leanTargets(resolved: TargetResolution, keys: readonly string[]): TargetResolution {
  const order = [...resolved.hostIds, ...(resolved.offline ?? [])];
  const domains: NonNullable<TargetResolution['domains']> = {};
  for (const key of keys) {
    const values: string[] = [];
    const index = new Map<string, number>();
    const of = order.map((hostId) => {
      const value = resolved.labels[hostId]?.[key];
      if (value === undefined) return -1;
      if (!index.has(value)) index.set(value, values.push(value) - 1);
      return index.get(value) as number;
    });
    domains[key] = { values, of };
  }
  return { ...resolved, labels: {}, domains };
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

/** Memory as an operator reads it: GiB with one decimal. */
export const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

/** What a destination can still take: memory where it and the VM report it, else VM slots. */
interface Room {
  hostId: string;
  freeBytes: number | undefined;
  slots: number;
}

const fits = (room: Room, vm: VmFacts) =>
  room.freeBytes !== undefined && vm.memoryBytes !== undefined ? room.freeBytes >= vm.memoryBytes : room.slots > 0;

/** Most headroom first: free memory where reported (hosts that report it before those that do not), then slots. */
const byHeadroom = (a: Room, b: Room) =>
  (b.freeBytes ?? -1) - (a.freeBytes ?? -1) || b.slots - a.slots || a.hostId.localeCompare(b.hostId);

/** The VMs of a host that cannot be live-migrated (a passed-through device), with their devices. */
export function nonMigratableVms(vms: readonly VmFacts[]): string[] {
  return vms
    .filter((vm) => vm.sriov)
    .map((vm) => (vm.passthrough?.length ? `${vm.name} (${vm.passthrough.join(', ')})` : vm.name));
}

/**
 * Where each VM of a host goes when it is drained: hosts that report, are not cordoned, are not in
 * `avoid` (the same wave: they are about to be drained too) and have room, the most headroom first.
 * Room is memory where the destination reports its free memory and the VM its size (the largest VMs
 * are placed first), VM slots otherwise (older agents, VMs of unknown size). Only hosts a VM can
 * live-migrate to at all: the same driver (a sim host is no destination for a real VM, nor a libvirt
 * host for a lab one) and the same `cluster` label (live migration stays inside a cluster; hosts
 * without the label are one cluster). VMs with passed-through devices (`sriov`) cannot be
 * live-migrated: under `refuse` they make the drain fail naming them, under `skip` they get no
 * destination (they stay), under `shutdown` they are placed like the others (they move offline).
 */
export function chooseDestinations(
  inventory: readonly ReceivedPresence[],
  hostId: string,
  avoid: readonly string[],
  now = Date.now(),
  nonMigratable: NonMigratable = 'refuse',
): Record<string, string> {
  const source = inventory.find((p) => p.hostId === hostId);
  if (!source) throw new NoDestinationError(`host ${hostId} does not report presence; its VMs are unknown`);
  const pinned = nonMigratableVms(source.facts.vms);
  if (pinned.length > 0 && nonMigratable === 'refuse') {
    const err = new NoDestinationError(
      `VMs with passed-through devices (SR-IOV functions) cannot be live-migrated: ${pinned.join(', ')} ` +
        `(the drain's nonMigratable is refuse; shutdown moves them offline, skip leaves them and the host undrained)`,
    );
    err.transient = false;
    throw err;
  }
  const rooms: Room[] = inventory
    .filter((p) => p.hostId !== hostId && !avoid.includes(p.hostId) && isOnline(p, now) && !p.facts.cordoned)
    .filter((p) => p.driver === source.driver && p.labels['cluster'] === source.labels['cluster'])
    .map((p) => ({
      hostId: p.hostId,
      freeBytes: p.facts.memory?.freeBytes,
      slots: p.facts.capacity.vmSlots - p.facts.capacity.vmsRunning,
    }));
  const moving = source.facts.vms
    .filter((vm) => !(vm.sriov && nonMigratable === 'skip'))
    .sort((a, b) => (b.memoryBytes ?? 0) - (a.memoryBytes ?? 0) || a.name.localeCompare(b.name));
  const destinations: Record<string, string> = {};
  for (const vm of moving) {
    const best = rooms.filter((r) => fits(r, vm)).sort(byHeadroom)[0];
    if (!best) {
      const most = [...rooms].sort(byHeadroom)[0];
      const size = vm.memoryBytes === undefined ? '' : ` (${gib(vm.memoryBytes)})`;
      const widest =
        most === undefined
          ? 'all others are cordoned, silent, in the same wave, or of another driver or cluster'
          : `most headroom: ${most.hostId} with ${most.freeBytes !== undefined ? `${gib(most.freeBytes)} free` : `${most.slots} free VM slots`}`;
      throw new NoDestinationError(`no host has room for VM ${vm.name}${size} (${widest})`);
    }
    destinations[vm.name] = best.hostId;
    if (best.freeBytes !== undefined && vm.memoryBytes !== undefined) best.freeBytes -= vm.memoryBytes;
    best.slots -= 1;
  }
  return destinations;
}

/**
 * chooseDestinations over the inventory as `read` gives it, asked again every `intervalMs` while no
 * host can take the VMs, for up to `timeoutMs`: right after nats-server or the fleet restarted, every
 * other host's presence is a few seconds old, and a moment later they report again. A drain that
 * cannot happen at all (VMs with passed-through devices under `refuse`) fails at once.
 */
export async function waitForDestinations(
  read: () => readonly ReceivedPresence[],
  hostId: string,
  avoid: readonly string[],
  {
    timeoutMs,
    intervalMs = 500,
    nonMigratable = 'refuse',
  }: { timeoutMs: number; intervalMs?: number; nonMigratable?: NonMigratable },
): Promise<Record<string, string>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return chooseDestinations(read(), hostId, avoid, Date.now(), nonMigratable);
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
