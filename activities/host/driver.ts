import type { Logger } from 'pino';
import type { StepCommand, StepError, StepMode } from '../../schemas/command.js';
import type { Driver, HostFacts } from '../../schemas/host.js';
import { STEP_PARAMS, type StepKind, type StepOutcome, type StepParams } from '../../schemas/steps.js';
import { problemText } from '../../schemas/problems.js';

/** A command whose parameters have been checked against its kind, with defaults applied. */
export type PreparedStep = {
  [K in StepKind]: { kind: K; mode: StepMode; params: StepParams<K>; command: StepCommand };
}[StepKind];

export interface StepContext {
  /** Aborted when the operator cancels the command or the worker shuts down; honour it at safe points. */
  signal: AbortSignal;
  progress(pct: number, message: string): void;
  log: Logger;
  /** The journal shows this command was started before and never finished: the worker restarted mid-step. */
  recovering: boolean;
  /** Tell the audit trail what the step did; stored before the step is reported done. Absent outside a host worker. */
  audit?: (note: StepAuditNote) => void;
}

/** For the audit trail: each program a step ran, or a step's own event such as the OVS confirmation. */
export type StepAuditNote =
  | {
      type: 'step.command';
      argv: readonly string[];
      exitCode: number;
      durationMs: number;
      stdout?: string;
      stderr?: string;
    }
  | { type: 'ovs.confirmed' | 'ovs.auto-reverted'; data: Record<string, unknown> };

/** Where a host's steps actually happen: a real host, a lab namespace or a simulation. */
export interface HostDriver {
  readonly kind: Driver;
  /** Throws HostDownError while the host is rebooting: no presence is published then. */
  facts(): Promise<HostFacts>;
  runStep(step: PreparedStep, ctx: StepContext): Promise<StepOutcome>;
  /** Runs after the result is stored and the command acknowledged, e.g. the reboot itself. */
  afterReported?(step: PreparedStep, outcome: StepOutcome): Promise<void>;
}

/** The step ran and failed. */
export class StepFailedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StepFailedError';
  }
}

export class StepCancelledError extends Error {
  constructor(message = 'cancelled', options?: ErrorOptions) {
    super(message, options);
    this.name = 'StepCancelledError';
  }
}

/** The host lacks what the step needs (no SR-IOV NIC, too few VFs): retrying cannot help. */
export class UnsupportedHardwareError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UnsupportedHardwareError';
  }
}

export class InvalidStepParamsError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'InvalidStepParamsError';
  }
}

/** The host is rebooting; it has no facts to report until it is back. */
export class HostDownError extends Error {
  constructor(message = 'host is down', options?: ErrorOptions) {
    super(message, options);
    this.name = 'HostDownError';
  }
}

/** The worker is stopping; the step is left unfinished and resumes when the worker comes back. */
export class WorkerStoppingError extends Error {
  constructor(message = 'host worker is stopping', options?: ErrorOptions) {
    super(message, options);
    this.name = 'WorkerStoppingError';
  }
}

/**
 * How a failed step is reported in its CommandStatus. Whatever the error, the controller fails the
 * step for good (StepFailed): the host answers the same command id from its journal, so only a new
 * command (a new campaign) runs the step again.
 */
export function toStepError(err: unknown): StepError {
  if (err instanceof Error) return { type: err.name, message: err.message };
  return { type: 'Error', message: String(err) };
}

/** Check a command's parameters against its kind; throws InvalidStepParamsError with every problem. */
export function prepareStep(command: StepCommand): PreparedStep {
  const parsed = STEP_PARAMS[command.kind].safeParse(command.params);
  if (!parsed.success) {
    const problems = problemText(parsed.error, '(params)');
    throw new InvalidStepParamsError(`invalid ${command.kind} params: ${problems}`, { cause: parsed.error });
  }
  return { kind: command.kind, mode: command.mode, params: parsed.data, command } as PreparedStep;
}

/** Throws the reason of an aborted signal as a typed error, for use at a step's safe points. */
export function throwIfAborted(signal: AbortSignal): void {
  if (!signal.aborted) return;
  const reason: unknown = signal.reason;
  if (reason instanceof Error) throw reason;
  throw new StepCancelledError(typeof reason === 'string' ? reason : 'cancelled');
}
