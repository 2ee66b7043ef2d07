import type { StepCall, StepMode, StepOutcome } from './steps.js';
import type { Plan } from './plan.js';
import type { AuditRecordInput, AuditRecorded } from './audit.js';
import type { VerifyActionRequest, VerifyActionResult } from './operators.js';
import type { NotificationRequest, NotificationResult } from './notify.js';

/** One step for one host, its params as the loaded plan holds them (checked, defaults filled in). */
export type DispatchRequest = StepCall & {
  rolloutId: string;
  hostId: string;
  mode: StepMode;
  /** The outcome being undone, for mode revert. */
  applied?: Record<string, unknown>;
  /** For drain: hosts VMs must not go to (the same wave). */
  avoidHosts?: string[];
};

/**
 * A run of one host's consecutive steps, applied in one activity (decision 0037): each step is still
 * its own command, with its own id, journal entry, statuses and audit events on the host.
 */
export interface DispatchRunRequest {
  rolloutId: string;
  hostId: string;
  /** The steps in plan order, each with its index in the plan. */
  steps: (StepCall & { index: number })[];
  /** For a drain: hosts VMs must not go to (the same wave). */
  avoidHosts?: string[];
  /**
   * The host workflow's own audit events that this run writes (decision 0040), each with its `data`:
   * `started` (`host.started`) before any of its commands is sent, `succeeded` (`host.succeeded`)
   * once every step of the run succeeded, unless the workflow cancelled it (no longer asked for: an
   * abort the activity has not heard of yet must still roll the host back). Their ids are
   * {@link hostAuditEventId}'s, so the workflow writing either itself stores it only once.
   */
  hostAudit?: { started?: Record<string, unknown>; succeeded?: Record<string, unknown> };
}

/**
 * The event id of a host workflow run's `host.started` (`started`) or its end (`end`, whichever end it
 * has): the same whether the workflow or one of its dispatch activities writes it, so it is stored once.
 */
export function hostAuditEventId(workflowId: string, runId: string, which: 'started' | 'end'): string {
  return `${workflowId}/${runId}/host.${which}`;
}

/** How one step of a run ended; a run stops at the first that did not succeed. */
export type RunStepResult =
  | { index: number; state: 'succeeded'; outcome: StepOutcome }
  | {
      index: number;
      state: 'failed' | 'cancelled';
      /** As the step's own dispatch would have failed: `<kind> failed on <host>: <the host's reason>`. */
      error: string;
      /** The failure's type (StepFailed, or the host's error class for a cancel). */
      errorType: string;
    };

/**
 * The steps of a run that ended, in order: all of them, or up to the first that failed or was
 * cancelled, or fewer when the workflow cancelled the run between two steps (the rest never started).
 */
export interface DispatchRunResult {
  steps: RunStepResult[];
  /** The workflow cancelled the run: the host was asked to stop; a step it finished anyway is in `steps`. */
  cancelled?: boolean;
  /** The run wrote `host.succeeded` (it was asked to, and every step succeeded): the host is done. */
  ended?: boolean;
}

export interface AwaitRebootRequest {
  hostId: string;
  bootIdBefore: string;
  /** Epoch milliseconds by which the host must be back. */
  deadlineMs: number;
}

export interface AwaitRebootResult {
  bootIdAfter: string;
  waitedMs: number;
}

export interface TargetResolution {
  hostIds: string[];
  /** Named hosts that are not present (never reported, or offline). */
  missing: string[];
  /** Named hosts whose facts do not match the plan's filter. */
  excluded: { hostId: string; reason: string }[];
  /** Labels of each selected host, for failure domains; empty where `domains` holds them (see resolveTargets). */
  labels: Record<string, Record<string, string>>;
  /**
   * Since `lean-targets`: the failure-domain labels asked for, by key: its values, and for each host of
   * `[...hostIds, ...offline]`, in that order, the index of its value (-1: no such label). About five
   * bytes a host instead of every label's key and value with the host's id.
   */
  domains?: Record<string, { values: string[]; of: number[] }>;
  /**
   * Hosts the plan names or its selector matches (facts by their last report) that reported once but
   * are offline now; not in `hostIds`. Named ones are in `missing` too, as before `onOffline`.
   * Absent in results recorded before it.
   */
  offline?: string[];
}

/** The controller-side activities, as the workflows see them (`import type` only). */
export interface ControllerActivities {
  dispatchStep(req: DispatchRequest): Promise<StepOutcome>;
  /** A run of a host's steps, applied one after another in one activity; every step's result. */
  dispatchRun(req: DispatchRunRequest): Promise<DispatchRunResult>;
  awaitReboot(req: AwaitRebootRequest): Promise<AwaitRebootResult>;
  /**
   * The plan's targets against the inventory. With `labelKeys` (the plan's failure-domain labels),
   * only those labels, in `domains` (`labels` empty): the result is recorded in the rollout's first
   * history, and every label of every host by name made it the rollout's size ceiling
   * (docs/BENCHMARKS.md). Without it (workflows before `lean-targets`), every label in `labels`.
   */
  resolveTargets(targets: Plan['targets'], labelKeys?: string[]): Promise<TargetResolution>;
  /** Those of these hosts that do not report presence now. */
  findOffline(req: { hostIds: string[] }): Promise<string[]>;
  acquireLease(req: { hostId: string; rolloutId: string; limit: number }): Promise<boolean>;
  releaseLease(req: { hostId: string }): Promise<void>;
  /** Store one audit event (rollout or host transition) on its chain; returns where. */
  recordAudit(input: AuditRecordInput): Promise<AuditRecorded>;
  /** Check an operator action's signature against the enrolled operators' keys. */
  verifyOperatorAction(req: VerifyActionRequest): Promise<VerifyActionResult>;
  /** Send one notification to one webhook (signed), audited as delivered or, after the last try, failed. */
  sendNotification(req: NotificationRequest): Promise<NotificationResult>;
}

/** Failure types of the step activities that retrying cannot fix; each is thrown as `ApplicationFailure.nonRetryable`. */
export const NON_RETRYABLE_STEP_ERRORS = ['StepFailed', 'RebootTimeout', 'InvalidStep'];
