import type { Logger } from 'pino';
import { StepCommand, type CommandProgress, type ReceivedCommand, type StepError } from '../../schemas/command.js';
import type { Driver, HostFacts } from '../../schemas/host.js';
import type { StepCall, StepOutcome } from '../../schemas/steps.js';
import type { StepPreview } from '../../schemas/preview.js';
import { formatPath } from '../../schemas/problems.js';
import { RefitError } from '../../schemas/errors.js';

export interface StepContext {
  /** Aborted when the operator cancels the command or the worker shuts down; honour it at safe points. */
  signal: AbortSignal;
  /** How far the step is; `awaitingConfirmation` asks the controller to confirm it still reaches the host. */
  progress(pct: number, message: string, flags?: Pick<CommandProgress, 'awaitingConfirmation'>): void;
  /**
   * Resolves when the controller confirms it still reaches this host, which it does for the running
   * command once its progress awaits that. Absent outside a host worker.
   */
  confirmed?: Promise<void>;
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
  /**
   * The current boot id alone, for the statuses of every command: cheaper than {@link facts} where
   * those look at the bridge, the NICs and the VMs. Throws HostDownError like facts.
   */
  bootId?(): Promise<string>;
  runStep(step: StepCommand, ctx: StepContext): Promise<StepOutcome>;
  /** Runs after the result is stored and the command acknowledged, e.g. the reboot itself. */
  afterReported?(step: StepCommand, outcome: StepOutcome): Promise<void>;
  /** What each step would change on this host, from its real state; changes nothing (a dry run). */
  preview?(steps: readonly StepCall[]): Promise<StepPreview[]>;
}

/** The step ran and failed. */
export class StepFailedError extends RefitError {}

export class StepCancelledError extends RefitError {
  constructor(message = 'cancelled', options?: ErrorOptions) {
    super(message, options);
  }
}

/** The host lacks what the step needs (no SR-IOV NIC, too few VFs): retrying cannot help. */
export class UnsupportedHardwareError extends RefitError {}

export class InvalidStepParamsError extends RefitError {}

/** The host is rebooting; it has no facts to report until it is back. */
export class HostDownError extends RefitError {
  constructor(message = 'host is down', options?: ErrorOptions) {
    super(message, options);
  }
}

/** The worker is stopping; the step is left unfinished and resumes when the worker comes back. */
export class WorkerStoppingError extends RefitError {
  constructor(message = 'host worker is stopping', options?: ErrorOptions) {
    super(message, options);
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

/**
 * Check a received command's parameters against its kind (the host's own check: it trusts no
 * sender), defaults filled in; throws InvalidStepParamsError naming every problem.
 */
export function prepareStep(received: ReceivedCommand): StepCommand {
  const parsed = StepCommand.safeParse(received);
  if (!parsed.success) {
    // Everything but the params was checked on receipt: each problem is inside them.
    const problems = parsed.error.issues
      .map(
        (i) => `${i.path[0] === 'params' ? formatPath(i.path.slice(1), '(params)') : formatPath(i.path)}: ${i.message}`,
      )
      .join('; ');
    throw new InvalidStepParamsError(`invalid ${received.kind} params: ${problems}`, { cause: parsed.error });
  }
  return parsed.data;
}

/** Throws the reason of an aborted signal as a typed error, for use at a step's safe points. */
export function throwIfAborted(signal: AbortSignal): void {
  if (!signal.aborted) return;
  const reason: unknown = signal.reason;
  if (reason instanceof Error) throw reason;
  throw new StepCancelledError(typeof reason === 'string' ? reason : 'cancelled');
}
