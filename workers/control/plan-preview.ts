import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { NatsConnection } from '@nats-io/transport-node';
import pLimit from 'p-limit';
import {
  chooseDestinations,
  factMismatch,
  selectTargets,
  unknownDestinations,
} from '../../activities/controller/inventory.js';
import { formatDuration } from '../../schemas/common.js';
import { isOnline, type ReceivedPresence } from '../../schemas/host.js';
import { SUBJECTS } from '../../schemas/names.js';
import type { Plan } from '../../schemas/plan.js';
import { PreviewReply, type PreviewRequest, type StepPreview } from '../../schemas/preview.js';
import { startDecision } from '../../schemas/windows.js';
import { missingTunnelEnds } from '../../schemas/steps.js';
import { planWaves, resolveCount } from '../../workflows/waves.js';

/** Why a host the plan names or its selector matches would not be worked on. */
export type LeftOutReason = 'offline' | 'facts' | 'cordoned' | 'busy' | 'not present' | 'not enrolled';

export interface LeftOut {
  hostId: string;
  reason: LeftOutReason;
  detail: string;
}

export interface DrainPreview {
  hostId: string;
  /** VM → the host it would go to. */
  vms: Record<string, string>;
  /**
   * Each destination's VM slots: free now, and free after this host's VMs alone arrived; and its memory
   * the same way where the destination reports it (bytes; VMs that report no size count as none).
   */
  destinations: {
    hostId: string;
    slots: number;
    freeBefore: number;
    freeAfter: number;
    memory?: { totalBytes: number; freeBefore: number; freeAfter: number };
  }[];
  error?: string;
}

export interface HostPreview {
  hostId: string;
  driver: string;
  simulated: boolean;
  steps: StepPreview[];
  /** No preview: the host did not answer, or could not preview. */
  error?: string;
}

export interface WindowOpening {
  opensAt: string;
  closesAt: string | null;
  /** The opening in each time zone the plan's weekly windows name. */
  local: { timeZone: string; opensAt: string }[];
}

/** What `refit rollout plan` shows: everything a rollout of this plan would do, started now. */
export interface PlanPreview {
  plan: { name: string; steps: string[] };
  /** Everything the rollout would work on could run: no problem below. */
  canRun: boolean;
  /** Every reason the plan cannot run as written (exit 2). */
  problems: string[];
  /** What the operator should know but does not stop it. */
  notes: string[];
  targets: PlanTargets;
  waves: { index: number; hosts: string[] }[];
  failureDomains: { label: string; max: number; domains: Record<string, string[]> }[];
  limits: {
    maxInFlight: number;
    fleetWide: number | null;
    failureBudget: number;
    onHostFailure: Plan['onHostFailure'];
    onBusyHost: Plan['onBusyHost'];
    onOffline: Plan['onOffline'];
    offlineWaitMs: number;
  };
  windows: WindowOpening[];
  drains: DrainPreview[];
  hosts: HostPreview[];
}

/** A host in another campaign now: its running maintenance workflow's rollout. */
export type BusyHosts = ReadonlyMap<string, string>;

/** A target that is offline now, and what the rollout would do with it under the plan's `onOffline`. */
export interface OfflineTarget {
  hostId: string;
  /** When its presence was last received. */
  lastReportedAt: string;
  fate: string;
}

export interface PlanTargets {
  /** Online targets, in the order the rollout takes them. */
  matched: string[];
  /** Offline targets: with `onOffline: wait` still in the waves (at the end), else settled at start. */
  offline: OfflineTarget[];
  /** Hosts named or matched that the rollout would not work on, and why (offline ones with skip or fail too). */
  leftOut: LeftOut[];
}

/** What becomes of a host that is offline when the rollout starts, as the plan's `onOffline` says. */
export function offlineFate(plan: Pick<Plan, 'onOffline' | 'offlineWait'>): string {
  if (plan.onOffline === 'skip') return 'skipped at start, counted as skipped (onOffline: skip)';
  if (plan.onOffline === 'fail') return 'failed at start, counts against the failure budget (onOffline: fail)';
  return `waits at the end of the waves; at its turn waited for up to ${formatDuration(plan.offlineWait)}, then failed (onOffline: wait)`;
}

/**
 * The targets a rollout started now would take, the way its resolveTargets activity takes them,
 * and each host the plan names or its selector matches that it would leave out, and why.
 */
export function resolvePlanTargets(
  plan: Plan,
  inventory: readonly ReceivedPresence[],
  busy: BusyHosts,
  enrolled: ReadonlySet<string> | undefined,
  now = Date.now(),
): PlanTargets {
  const resolved = selectTargets(inventory, plan.targets, now);
  const leftOut: LeftOut[] = [];
  const known = new Map(inventory.map((p) => [p.hostId, p]));
  for (const hostId of plan.targets.hosts ?? []) {
    if (known.has(hostId)) continue;
    if (enrolled !== undefined && !enrolled.has(hostId))
      leftOut.push({ hostId, reason: 'not enrolled', detail: 'no credentials; it has never reported' });
    else leftOut.push({ hostId, reason: 'not present', detail: 'it has never reported' });
  }
  const selector = Object.entries(plan.targets.selector ?? {});
  const named = new Set(plan.targets.hosts ?? []);
  for (const p of known.values()) {
    const matches = named.has(p.hostId) || (selector.length > 0 && selector.every(([k, v]) => p.labels[k] === v));
    if (!matches) continue;
    const mismatch = factMismatch(p, plan.targets.facts);
    if (mismatch === undefined) continue;
    const offline = isOnline(p, now) ? '' : ' (as last reported; offline)';
    leftOut.push({
      hostId: p.hostId,
      reason: p.facts.cordoned && /cordoned/.test(mismatch) ? 'cordoned' : 'facts',
      detail: `${mismatch}${offline}`,
    });
  }
  const offlineIds = resolved.offline ?? [];
  const fate = offlineFate(plan);
  const offline = offlineIds.map((hostId) => ({
    hostId,
    lastReportedAt: known.get(hostId)?.receivedAt ?? 'never',
    fate,
  }));
  if (plan.onOffline !== 'wait')
    for (const o of offline)
      leftOut.push({ hostId: o.hostId, reason: 'offline', detail: `last reported ${o.lastReportedAt}; ${o.fate}` });
  let matched = resolved.hostIds;
  for (const hostId of [...matched, ...offlineIds]) {
    const rollout = busy.get(hostId);
    if (rollout === undefined) continue;
    if (plan.onBusyHost === 'skip') {
      leftOut.push({ hostId, reason: 'busy', detail: `in rollout ${rollout}; skipped (onBusyHost: skip)` });
      matched = matched.filter((h) => h !== hostId);
    } else
      leftOut.push({
        hostId,
        reason: 'busy',
        detail: `in rollout ${rollout}; still a target, waited for (onBusyHost: wait)`,
      });
  }
  leftOut.sort((a, b) => a.hostId.localeCompare(b.hostId));
  return { matched, offline, leftOut };
}

/** The next `count` times a host of `hostMs` could start: each window's opening (or now, inside one) and its close. */
export function nextOpenings(plan: Plan, now: number, count = 3): WindowOpening[] {
  if (plan.windows.length === 0) return [];
  const zones = [...new Set(plan.windows.flatMap((w) => ('timeZone' in w ? [w.timeZone] : [])))];
  const openings: WindowOpening[] = [];
  let t = now;
  for (let i = 0; i < 4 * count && openings.length < count; i++) {
    const d = startDecision(plan.windows, t, plan.hostDuration);
    if (!d.start) {
      t = d.waitUntil;
      continue;
    }
    openings.push({
      opensAt: new Date(t).toISOString(),
      closesAt: d.closesAt === null ? null : new Date(d.closesAt).toISOString(),
      local: zones.map((timeZone) => ({ timeZone, opensAt: localTime(t, timeZone) })),
    });
    if (d.closesAt === null) break;
    t = d.closesAt;
  }
  return openings;
}

/** `Sat 2026-12-05 02:00 CET`, in `timeZone`. */
export function localTime(ms: number, timeZone: string): string {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-GB', {
      timeZone,
      weekday: 'short',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
      timeZoneName: 'short',
    })
      .formatToParts(ms)
      .map((p) => [p.type, p.value]),
  );
  return `${parts.weekday} ${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute} ${parts.timeZoneName}`;
}

/**
 * Where each host's VMs would go if it were drained now, the way the controller chooses them (not
 * to the same wave, by memory headroom where hosts report it, VM slots otherwise), with each
 * destination's free memory and VM slots before and after.
 */
export function drainPreviews(
  plan: Plan,
  inventory: readonly ReceivedPresence[],
  waves: readonly (readonly string[])[],
  now = Date.now(),
): DrainPreview[] {
  const drain = plan.steps.find((s) => s.kind === 'drain');
  if (drain?.kind !== 'drain') return [];
  const byHost = new Map(inventory.map((p) => [p.hostId, p]));
  return waves.flatMap((wave) =>
    wave.map((hostId): DrainPreview => {
      const fixed = drain.params.destinations;
      try {
        const vms =
          Object.keys(fixed).length > 0
            ? fixed
            : chooseDestinations(inventory, hostId, wave, now, drain.params.nonMigratable);
        const size = new Map((byHost.get(hostId)?.facts.vms ?? []).map((vm) => [vm.name, vm.memoryBytes ?? 0]));
        const arriving = new Map<string, { n: number; bytes: number }>();
        for (const [vm, to] of Object.entries(vms)) {
          const a = arriving.get(to) ?? { n: 0, bytes: 0 };
          arriving.set(to, { n: a.n + 1, bytes: a.bytes + (size.get(vm) ?? 0) });
        }
        const destinations = [...arriving].map(([to, { n, bytes }]) => {
          const facts = byHost.get(to)?.facts;
          const cap = facts?.capacity;
          const free = cap ? cap.vmSlots - cap.vmsRunning : 0;
          const mem = facts?.memory;
          return {
            hostId: to,
            slots: cap?.vmSlots ?? 0,
            freeBefore: free,
            freeAfter: free - n,
            ...(mem
              ? { memory: { totalBytes: mem.totalBytes, freeBefore: mem.freeBytes, freeAfter: mem.freeBytes - bytes } }
              : {}),
          };
        });
        return { hostId, vms, destinations };
      } catch (err) {
        return { hostId, vms: {}, destinations: [], error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
}

/** How long one host has to answer a preview request. */
export const PREVIEW_TIMEOUT_MS = 5_000;
const PREVIEWS_IN_FLIGHT = 64;

/**
 * Ask each host what the plan's steps would change on it (a read-only request over NATS; the host
 * reads its own files and changes nothing). A host that does not answer is said so, not waited for long.
 */
export async function requestPreviews(
  nc: NatsConnection,
  plan: Plan,
  hostIds: readonly string[],
  { timeoutMs = PREVIEW_TIMEOUT_MS, requestedBy = `${os.userInfo().username}@${os.hostname()}` } = {},
): Promise<HostPreview[]> {
  const requestId = `plan-${randomBytes(6).toString('hex')}`;
  const steps = plan.steps.map((s) => ({ kind: s.kind, params: { ...s.params } }));
  return pLimit(PREVIEWS_IN_FLIGHT).map(hostIds, async (hostId): Promise<HostPreview> => {
    const request: PreviewRequest = { requestId, hostId, plan: plan.name, requestedBy, steps };
    try {
      const msg = await nc.request(SUBJECTS.preview(hostId), JSON.stringify(request), { timeout: timeoutMs });
      const parsed = PreviewReply.safeParse(msg.json());
      if (!parsed.success)
        return unanswered(hostId, `its answer is not a preview: ${parsed.error.issues[0]?.message ?? ''}`);
      const { driver, simulated, steps: previews, error } = parsed.data;
      return { hostId, driver, simulated, steps: previews, ...(error !== undefined ? { error } : {}) };
    } catch (err) {
      const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      return unanswered(
        hostId,
        /no ?responders/i.test(text)
          ? 'no agent answers dry runs on this host (stopped, or older than dry runs)'
          : /timeout/i.test(text)
            ? `no answer within ${timeoutMs / 1000}s`
            : text,
      );
    }
  });
}

function unanswered(hostId: string, error: string): HostPreview {
  return { hostId, driver: 'unknown', simulated: false, steps: [], error };
}

export interface PreviewInputs {
  plan: Plan;
  inventory: readonly ReceivedPresence[];
  busy: BusyHosts;
  enrolled?: ReadonlySet<string>;
  /** Whoever asks holds an operator key, as `rollout start` of a four-eyes plan requires. */
  signingKey?: boolean;
  /** Each target's answer to the dry run (`requestPreviews`). */
  previews: (hostIds: readonly string[]) => Promise<HostPreview[]>;
  now?: number;
}

/** Everything `refit rollout plan` shows, and every reason the plan cannot run. */
export async function previewPlan({
  plan,
  inventory,
  busy,
  enrolled,
  signingKey = false,
  previews,
  now = Date.now(),
}: PreviewInputs): Promise<PlanPreview> {
  const targets = resolvePlanTargets(plan, inventory, busy, enrolled, now);
  const waved =
    plan.onOffline === 'wait' ? [...targets.matched, ...targets.offline.map((o) => o.hostId)] : targets.matched;
  const waves = planWaves(waved, plan.waves);
  const labelsOf = new Map(inventory.map((p) => [p.hostId, p.labels]));
  const failureDomains = Object.entries(plan.limits.perLabel).map(([label, max]) => {
    const domains: Record<string, string[]> = {};
    for (const h of waved) (domains[labelsOf.get(h)?.[label] ?? '(none)'] ??= []).push(h);
    return { label, max, domains };
  });
  const drains = drainPreviews(plan, inventory, waves, now);
  const hosts = await previews(targets.matched);
  const problems: string[] = [];
  const notes: string[] = [];
  if (waved.length === 0) problems.push('no host matches the targets');
  // What `rollout start` itself refuses, besides an invalid plan (refused before this runs).
  for (const u of unknownDestinations(plan.steps, new Set(inventory.map((p) => p.hostId))))
    problems.push(`${u.path}: ${u.destination} is not a host of the inventory`);
  for (const m of missingTunnelEnds(plan.steps, waved))
    problems.push(
      `steps[${m.index}].params.hosts: no entry for ${m.hostId}; each host needs its own end of the tunnel`,
    );
  if (plan.approvals.distinctFrom === 'starter' && !signingKey)
    problems.push(
      'this plan requires four eyes (approvals.distinctFrom: starter): start it signed with your operator key (REFIT_OPERATOR_KEY)',
    );
  for (const l of targets.leftOut) {
    if (l.reason === 'not present' || l.reason === 'not enrolled')
      problems.push(`${l.hostId} is named but ${l.detail}: the rollout would end failed`);
  }
  // As the rollout counts it: over every target, offline ones included.
  const budget = resolveCount(plan.failureBudget.maxFailedHosts, targets.matched.length + targets.offline.length);
  if (plan.onOffline === 'fail' && targets.offline.length > budget)
    notes.push(
      `${targets.offline.length} offline hosts would fail at start, more than the failure budget (${budget}): the rollout would stop on them`,
    );
  for (const d of drains) if (d.error) problems.push(`${d.hostId}: drain: ${d.error}`);
  for (const h of hosts) {
    if (h.error) notes.push(`${h.hostId}: no dry run: ${h.error}`);
    for (const s of h.steps) if (s.error) problems.push(`${h.hostId}: ${s.kind}: ${s.error}`);
  }
  return {
    plan: { name: plan.name, steps: plan.steps.map((s) => s.kind) },
    canRun: problems.length === 0,
    problems,
    notes,
    targets,
    waves: waves.map((hostIds, index) => ({ index, hosts: hostIds })),
    failureDomains,
    limits: {
      maxInFlight: plan.waves.maxInFlight,
      fleetWide: plan.limits.fleetWide ?? null,
      failureBudget: budget,
      onHostFailure: plan.onHostFailure,
      onBusyHost: plan.onBusyHost,
      onOffline: plan.onOffline,
      offlineWaitMs: plan.offlineWait,
    },
    windows: nextOpenings(plan, now),
    drains,
    hosts,
  };
}
