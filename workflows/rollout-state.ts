import type { TargetResolution } from '../schemas/activities.js';
import type { Plan } from '../schemas/plan.js';
import {
  HOST_STATES,
  hostFate,
  type HostFate,
  type HostState,
  type HostStatus,
  type RolloutCarried,
  type RolloutInput,
  type RolloutStatus,
} from '../schemas/rollout.js';
import type { HostPatch } from './operator.js';
import { planWaves, resolveCount } from './waves.js';

/** Host states that count against the failure budget. */
export const FAILED_STATES: ReadonlySet<HostState> = new Set<HostState>(['failed', 'rolled-back', 'held']);

/** What a rollout knows before its targets are resolved: no hosts yet, nothing carried. */
export function newRollout(input: RolloutInput, startedAtMs: number): RolloutCarried {
  const status: RolloutStatus = {
    id: input.rolloutId,
    name: input.plan.name,
    state: 'waiting',
    message: 'resolving targets from the inventory',
    startedBy: input.startedBy,
    startedAt: new Date(startedAtMs).toISOString(),
    missingHosts: [],
    excludedHosts: [],
    waves: [],
    hosts: [],
    counts: Object.fromEntries(HOST_STATES.map((s) => [s, 0])) as Record<HostState, number>,
    failureBudget: { maxFailedHosts: 0, failed: 0 },
    currentWave: 0,
    paused: null,
    pendingApproval: null,
    approvals: [],
    cancelled: null,
    nextWindowAt: null,
    runs: 0,
  };
  return { status, domains: {}, acceptedFailures: 0, gatesPassed: [] };
}

/**
 * A resolved host's label: from `domains` (lean-targets: by index, in the order hostIds then offline)
 * or, in results recorded before it, from `labels`.
 */
export function targetLabels(targets: TargetResolution): (hostId: string, key: string) => string | undefined {
  const { domains } = targets;
  if (domains === undefined) return (hostId, key) => targets.labels[hostId]?.[key];
  const position = new Map([...targets.hostIds, ...(targets.offline ?? [])].map((h, i) => [h, i]));
  return (hostId, key) => {
    const d = domains[key];
    const i = position.get(hostId);
    return d === undefined || i === undefined ? undefined : d.values[d.of[i] ?? -1];
  };
}

/**
 * Cut the resolved hosts into waves, each host pending, with its failure-domain labels. With
 * `offlineAt` (a rollout that keeps offline targets), hosts found offline then are targets too: with
 * `onOffline: wait` they follow the online ones in the waves; with `skip` or `fail` they are settled
 * at once, in no wave (wave -1).
 */
export function addTargets(
  carried: RolloutCarried,
  plan: Plan,
  targets: TargetResolution,
  byHost: Map<string, HostStatus>,
  offlineAt?: number,
): void {
  const { status } = carried;
  const offline = offlineAt === undefined ? [] : (targets.offline ?? []);
  const offlineSet = new Set(offline);
  const excluded = new Set(targets.excluded.map((e) => e.hostId));
  status.missingHosts =
    offlineAt === undefined ? targets.missing : targets.missing.filter((h) => !offlineSet.has(h) && !excluded.has(h));
  status.excludedHosts = targets.excluded;
  const policy = plan.onOffline ?? 'wait';
  const waved = policy === 'wait' ? [...targets.hostIds, ...offline] : targets.hostIds;
  status.failureBudget.maxFailedHosts = resolveCount(
    plan.failureBudget.maxFailedHosts,
    targets.hostIds.length + offline.length,
  );
  const domainLabels = Object.keys(plan.limits.perLabel);
  const labelOf = targetLabels(targets);
  const since = offlineAt === undefined ? '' : new Date(offlineAt).toISOString();
  const add = (hostId: string, wave: number): HostStatus => {
    const host: HostStatus = { hostId, state: 'pending', step: null, wave, attempts: 0 };
    if (offlineSet.has(hostId)) host.offline = { since, atResolution: true };
    status.hosts.push(host);
    byHost.set(hostId, host);
    status.counts.pending += 1;
    carried.domains[hostId] = Object.fromEntries(domainLabels.map((l) => [l, labelOf(hostId, l) ?? '(none)']));
    return host;
  };
  planWaves(waved, plan.waves).forEach((hosts, index) => {
    status.waves.push({ index, hosts, state: 'pending' });
    for (const hostId of hosts) add(hostId, index);
  });
  if (policy !== 'wait') {
    const state = policy === 'skip' ? 'skipped' : 'failed';
    for (const hostId of offline)
      patchHost(status, add(hostId, -1), {
        state,
        error: `offline when targets resolved; ${state} as the plan says (onOffline: ${policy})`,
      });
  }
  delete status.message;
}

/** Change a host (an absent value removes the field), keeping the counts and the failure budget in step. */
export function patchHost(status: RolloutStatus, host: HostStatus, patch: HostPatch): void {
  status.counts[host.state] -= 1;
  for (const [key, value] of Object.entries(patch) as [keyof HostStatus, unknown][]) {
    if (value === undefined) delete host[key];
    else (host as unknown as Record<string, unknown>)[key] = value;
  }
  status.counts[host.state] += 1;
  // From the counts, not a pass over every host: at 100,000 hosts that pass made each change O(hosts).
  status.failureBudget.failed = [...FAILED_STATES].reduce((n, state) => n + status.counts[state], 0);
}

/** The end of a rollout: cancelled, completed when every host succeeded or was skipped, otherwise failed and why. */
export function conclude(status: RolloutStatus): void {
  const allSucceeded =
    status.hosts.every((h) => h.state === 'succeeded' || h.state === 'skipped') && status.missingHosts.length === 0;
  status.state = status.cancelled ? 'cancelled' : allSucceeded && status.counts.succeeded > 0 ? 'completed' : 'failed';
  if (status.state === 'failed' && !status.message) {
    status.message =
      status.missingHosts.length > 0
        ? `hosts not present: ${status.missingHosts.join(', ')}`
        : status.hosts.length === 0
          ? 'no host matched the targets'
          : 'some hosts did not succeed';
  }
  status.paused = null;
  const skippedOffline = status.hosts.filter((h) => h.state === 'skipped' && h.offline && !h.offline.back);
  if (status.state === 'completed' && skippedOffline.length > 0)
    status.message = `skipped as the plan says, being offline: ${skippedOffline.map((h) => h.hostId).join(', ')}`;
}

/** Each host that was found offline, and what became of it (`hostFate`): for the audit trail. */
export function offlineFates(status: RolloutStatus): Record<string, HostFate> {
  return Object.fromEntries(status.hosts.filter((h) => h.offline).map((h) => [h.hostId, hostFate(h)]));
}
