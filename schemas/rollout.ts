import type { Plan } from './plan.js';
import type { PlanStep, StepOutcome } from './steps.js';
import type { ActionSignature } from './operators.js';

export const ROLLOUT_STATES = ['waiting', 'running', 'paused', 'completed', 'failed', 'cancelled'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

export const HOST_STATES = ['pending', 'running', 'succeeded', 'failed', 'rolled-back', 'held', 'skipped'] as const;
export type HostState = (typeof HOST_STATES)[number];

export interface RolloutInput {
  rolloutId: string;
  plan: Plan;
  /** Who started it (user@host of the CLI). */
  startedBy: string;
  /** State carried across continue-as-new; absent on the first run. */
  carried?: RolloutCarried;
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
  wave: number;
  error?: string;
  /** How many times the host was started in this rollout (more than one after retry-host). */
  attempts: number;
  /** Why a pending host does not start yet (busy in another campaign, fleet-wide limit). */
  waitingFor?: string;
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
