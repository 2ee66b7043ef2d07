import type { Plan } from './plan.js';
import type { PlanStep, StepOutcome } from './steps.js';
import type { ActionSignature } from './operators.js';

/** A signature older or newer than this (against when the rollout received it) is refused. */
export const SIGNATURE_MAX_AGE_MS = 5 * 60_000;

export const ROLLOUT_STATES = ['waiting', 'running', 'paused', 'completed', 'failed', 'cancelled'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

export const HOST_STATES = ['pending', 'running', 'succeeded', 'failed', 'rolled-back', 'held', 'skipped'] as const;
export type HostState = (typeof HOST_STATES)[number];

export interface RolloutInput {
  rolloutId: string;
  plan: Plan;
  /** Who started it (user@host of the CLI). */
  startedBy: string;
  /** State carried across continue-as-new; absent on the first run. Compact since decision 0024. */
  carried?: RolloutCarried | CompactCarried;
  /** Continue as new past this many history events (default 10,000; tests set it low). */
  historyLimit?: number;
  /** The starting operator's signature of the start (action `start`, args `{ plan }`), verified by the rollout. */
  signedStart?: ActionSignature;
}

/** Everything a rollout knows, handed from one run to the next by continue-as-new. */
export interface RolloutCarried {
  status: RolloutStatus;
  /** Per host, the values of the plan's failure-domain labels. */
  domains: Record<string, Record<string, string>>;
  /** Failed hosts the operator already accepted by resuming after the budget was spent. */
  acceptedFailures: number;
  /** Waves whose gate (approval or pause) is behind us. */
  gatesPassed: number[];
  /** Nonces of signed actions taken, with when (ms): a signature is used once. */
  nonces?: Record<string, number>;
}

/**
 * `RolloutCarried` as continue-as-new hands it on (decision 0024, `workflows/carried.ts`): what grows
 * with the fleet is encoded compactly, so a run carries a few bytes a host instead of about 90.
 */
export interface CompactCarried extends Omit<RolloutCarried, 'status' | 'domains'> {
  encoding: 'compact-1';
  status: Omit<RolloutStatus, 'hosts' | 'waves'> & { waves: Omit<RolloutStatus['waves'][number], 'hosts'>[] };
  hosts: {
    /** Host ids in the status's order; a run of numbered ids is `[prefix, first, count, width]`. */
    ids: (string | [string, number, number, number])[];
    /** Each host's state, as runs of one letter (`s9998f2`). */
    states: string;
    /** Each host's wave, as `[wave, count]` runs. */
    waves: [number, number][];
    /** By host index, what a host has beyond what its state implies (null: a field it lacks). */
    extra: Record<number, Partial<HostStatus>>;
    /** Per failure-domain label of the plan, its values and each host's (as `[value index, count]` runs). */
    domains: { label: string; values: string[]; codes: [number, number][] }[];
  };
  /** The plan's named hosts, which the carried plan leaves out. */
  planHosts?: (string | [string, number, number, number])[];
}

/** Who asked for an operator action, and why. Carried into the audit trail. */
export interface OperatorAction {
  by: string;
  reason?: string;
  /** The operator's signature of this action (`refit` sends one when it has the operator's key). */
  signature?: ActionSignature;
  /** Who the rollout found asked: set by the rollout itself after checking the signature, never taken from the sender. */
  identity?: ActionIdentity;
}

/** A verified operator (enrolled name and the key that verified), or an action that came without a signature. */
export type ActionIdentity = { signed: true; operator: string; key: string } | { signed: false };
export interface HostAction extends OperatorAction {
  hostId: string;
}

export interface HostMaintenanceInput {
  rolloutId: string;
  hostId: string;
  steps: PlanStep[];
  onHostFailure: Plan['onHostFailure'];
  /** The rollout's workflow id, which the host signals nothing to; kept for the audit trail. */
  parentId?: string;
  /** Hosts of the same wave: a drain sends no VM there. */
  avoidHosts?: string[];
}

export interface StepRecord {
  index: number;
  kind: PlanStep['kind'];
  mode: 'apply' | 'revert';
  state: 'running' | 'succeeded' | 'failed';
  outcome?: StepOutcome;
  error?: string;
}

export interface HostMaintenanceResult {
  hostId: string;
  state: Extract<HostState, 'succeeded' | 'failed' | 'rolled-back' | 'held'>;
  steps: StepRecord[];
  error?: string;
}

export interface HostStatus {
  hostId: string;
  state: HostState;
  /** The step running now, or the last one the host reached. */
  step: string | null;
  /** Its wave; -1 for an offline host skipped or failed when targets resolved (in no wave). */
  wave: number;
  error?: string;
  /** How many times the host was started in this rollout (more than one after retry-host). */
  attempts: number;
  /** Why a pending host does not start yet (busy in another campaign, fleet-wide limit, offline). */
  waitingFor?: string;
  /** The host was found offline: when targets resolved, or when its turn came (see `onOffline`). */
  offline?: HostOffline;
  /** What became of the host, in one word (`hostFate`); `refit rollout status` fills it in. */
  fate?: HostFate;
}

export interface HostOffline {
  /** When the rollout first found the host offline. */
  since: string;
  /** Found offline when the targets were resolved (not only when its turn came). */
  atResolution?: boolean;
  /** `onOffline: wait`: when waiting for it ends; set when its turn came and it was offline. */
  waitUntil?: string;
  /** When it was seen online again after being found offline. */
  back?: string;
}

export const HOST_FATES = [
  'pending',
  'waiting-offline',
  'running',
  'done',
  'done-after-offline',
  'failed',
  'rolled-back',
  'held',
  'skipped',
  'skipped-offline',
  'failed-offline',
  'waited-then-failed',
] as const;
/** What became of a host in a rollout: its state, told apart by whether it was offline. */
export type HostFate = (typeof HOST_FATES)[number];

/** What became of the host: `skipped-offline` and `waited-then-failed` rather than a bare skipped or failed. */
export function hostFate(h: Pick<HostStatus, 'state' | 'offline' | 'waitingFor'>): HostFate {
  const offlineNow = h.offline !== undefined && h.offline.back === undefined;
  switch (h.state) {
    case 'succeeded':
      return h.offline?.back !== undefined ? 'done-after-offline' : 'done';
    case 'skipped':
      return offlineNow ? 'skipped-offline' : 'skipped';
    case 'failed':
      if (!offlineNow) return 'failed';
      return h.offline?.waitUntil !== undefined ? 'waited-then-failed' : 'failed-offline';
    case 'pending':
      return offlineNow && h.offline?.waitUntil !== undefined ? 'waiting-offline' : 'pending';
    default:
      return h.state;
  }
}

/** Answer of the rollout's `status` query; `refit rollout status --json` prints this. */
export interface RolloutStatus {
  id: string;
  name: string;
  state: RolloutState;
  startedBy: string;
  /** Set when the start was signed and verified: then startedBy is this operator. */
  starter?: { operator: string; key: string };
  startedAt: string;
  /** Named hosts that were not present in the inventory. */
  missingHosts: string[];
  waves: { index: number; hosts: string[]; state: 'pending' | 'running' | 'done' }[];
  hosts: HostStatus[];
  counts: Record<HostState, number>;
  failureBudget: { maxFailedHosts: number; failed: number };
  message?: string;
  /** Named hosts left out because their facts do not match the plan's filter. */
  excludedHosts: { hostId: string; reason: string }[];
  /** The wave hosts are being started from. */
  currentWave: number;
  paused: { reason: string; by: string; at: string } | null;
  pendingApproval: { gate: string; wave: number; since: string } | null;
  approvals: { gate: string; wave: number; by: string; at: string }[];
  cancelled: { by: string; at: string; reason?: string } | null;
  /** When the rollout waits for a maintenance window: when the next one opens. */
  nextWindowAt: string | null;
  /** How many times this rollout continued as new. */
  runs: number;
}
