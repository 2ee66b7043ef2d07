import { z } from 'zod';
import { HostId } from './common.js';
import { STEP_PARAMS, StepKind, StepMode, StepOutcome, StepState } from './steps.js';

/**
 * A command id is stable across retries of the activity that sends it:
 * `<workflowId>/<runId>/<activityId>`. It is the JetStream message id and the host's idempotency key.
 */
export const CommandId = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

/**
 * The version of the command contract: the command, status, cancel and confirmation messages between
 * controller and agent. Raised when a change would make an agent of the previous version misread a
 * command. The rule (docs/upgrading.md): a controller of contract N writes commands an agent of N or
 * N-1 takes; an agent takes N and N-1 and answers any other version failed at once.
 */
export const COMMAND_CONTRACT_VERSION = 5;
/**
 * Versions: 1, the first; 2, ovs-convert and sriov-enable take `baselineTargets`; 3, drain takes
 * `nonMigratable`; 4, verify takes `health` (commandForContract strips what an older agent does not know);
 * 5, a command of a run of steps names the step it follows (`after`; decision 0037). An agent of 4 is
 * sent a run one step at a time, each once the one before succeeded.
 */
/** The contract versions an agent of this release takes: its own and the one before. */
export const SUPPORTED_CONTRACT_VERSIONS: readonly number[] = [
  COMMAND_CONTRACT_VERSION - 1,
  COMMAND_CONTRACT_VERSION,
].filter((v) => v >= 1);
/** A command without a contract version comes from a controller older than versioning: contract 1. */
export const ContractVersion = z.number().int().positive().max(1_000_000);

const commandFields = {
  commandId: CommandId,
  /** The contract version the command was written for (absent: 1). */
  contractVersion: ContractVersion.optional(),
  hostId: HostId,
  mode: StepMode.default('apply'),
  rolloutId: z.string().min(1).max(200),
  workflowId: z.string().min(1).max(300),
  /** Result of the apply being reverted, when mode is revert. */
  applied: StepState.optional(),
  /**
   * Contract 5: the command of the step before this one in its run. The host runs this one only once
   * that one has succeeded, and answers it failed, never run, when that one failed or was cancelled.
   */
  after: CommandId.optional(),
  issuedAt: z.iso.datetime(),
};

const commandOf = <K extends StepKind>(kind: K) =>
  z.strictObject({ ...commandFields, kind: z.literal(kind), params: STEP_PARAMS[kind] });

/** Sent by the controller on `refit.cmd.<hostId>`: one step, its params those of its kind. */
export const StepCommand = z.discriminatedUnion('kind', [
  commandOf('drain'),
  commandOf('undrain'),
  commandOf('ovs-convert'),
  commandOf('ovs-bond'),
  commandOf('sriov-enable'),
  commandOf('reboot'),
  commandOf('verify'),
  commandOf('nic-tuning'),
  commandOf('net-health'),
  commandOf('vxlan-tunnel'),
]);
export type StepCommand = z.output<typeof StepCommand>;

/**
 * A step command as the host takes it from its queue: all checked but the params, which the host
 * checks against the kind before it runs the step (prepareStep), so that bad ones fail the step with
 * every problem named instead of being dropped as an unreadable message.
 */
export const ReceivedCommand = z.strictObject({
  ...commandFields,
  kind: StepKind,
  params: z.record(z.string(), z.unknown()),
});
export type ReceivedCommand = z.output<typeof ReceivedCommand>;

export const CommandState = z.enum(['accepted', 'running', 'succeeded', 'failed', 'cancelled']);
export type CommandState = z.infer<typeof CommandState>;
export const TERMINAL_STATES: ReadonlySet<CommandState> = new Set(['succeeded', 'failed', 'cancelled']);

export const StepError = z.object({
  /** Error class name; the controller turns it into the Temporal failure type. */
  type: z.string(),
  message: z.string(),
});
export type StepError = z.infer<typeof StepError>;

/** How far a running command is. */
export const CommandProgress = z.object({
  pct: z.number().min(0).max(100),
  message: z.string(),
  /**
   * The host waits for the controller to confirm it still reaches it (ovs-convert, after the switch);
   * the controller, having heard this, answers on `refit.confirm.<hostId>`.
   */
  awaitingConfirmation: z.boolean().optional(),
});
export type CommandProgress = z.infer<typeof CommandProgress>;

/**
 * A step kind as a status names it: one of this version's kinds, or, when a host refuses a command
 * of a kind it does not know (from a newer controller, or forged), that kind, so that the refusal
 * reaches whoever waits.
 */
export const StatusKind = z.string().regex(/^[a-z][a-z0-9-]{0,63}$/, 'must be a step kind (a-z, 0-9, "-")');

/** The status of one command, kept in the results bucket under `<hostId>.<commandKey>`. */
export const CommandStatus = z.object({
  commandId: CommandId,
  hostId: HostId,
  kind: StatusKind,
  mode: StepMode,
  state: CommandState,
  progress: CommandProgress.optional(),
  outcome: StepOutcome.optional(),
  error: StepError.optional(),
  /** How many times the host started this command (more than one only after a host worker restart). */
  starts: z.number().int().nonnegative(),
  bootId: z.string(),
  updatedAt: z.iso.datetime(),
});
export type CommandStatus = z.infer<typeof CommandStatus>;

/** Sent on the core subject `refit.cancel.<hostId>`; the running step stops at a safe point. */
export const CancelRequest = z.strictObject({ commandId: CommandId, reason: z.string().max(500).default('cancelled') });
export type CancelRequest = z.infer<typeof CancelRequest>;

/** The key of a command in the results bucket (NATS keys allow only a small alphabet). */
export function resultKey(hostId: string, commandId: string): string {
  return `${hostId}.${Buffer.from(commandId).toString('base64url')}`;
}

/** Sent on the core subject `refit.confirm.<hostId>` for a running command whose progress awaits it. */
export const ConfirmRequest = z.strictObject({ commandId: CommandId });
export type ConfirmRequest = z.infer<typeof ConfirmRequest>;

/**
 * The command as an agent of `version` takes it, without the keys its strict params do not know: for
 * contract 3, a verify without `health`; for 2, a drain without `nonMigratable`; for 1, no
 * `baselineTargets` (that host then measures only its gateway before a change, as before).
 */
export function commandForContract(command: StepCommand, version: number): StepCommand {
  if (version >= COMMAND_CONTRACT_VERSION) return command;
  // Contract 4 and older: no runs (the controller sends such an agent one step after another).
  const { after: _after, ...current } = command;
  const older = { ...current, contractVersion: version };
  if (version >= 4) return older;
  // Contract 3 and older: a verify without its counter check (withoutHealth says so in the outcome).
  if (older.kind === 'verify' && older.params.health !== undefined) {
    const { health: _health, ...params } = older.params;
    return commandForContract({ ...older, params }, version);
  }
  if (version >= 3) return older;
  // Contract 2 and older: a drain without its policy (such an agent live-migrates every VM it is given a
  // destination for; a VM left out by skip makes it fail naming the VM, one sent for shutdown fails to migrate).
  if (older.kind === 'drain' && older.params.nonMigratable !== undefined) {
    const { nonMigratable: _policy, ...params } = older.params;
    return commandForContract({ ...older, params }, version);
  }
  if (version >= 2) return older;
  if ((older.kind === 'ovs-convert' || older.kind === 'sriov-enable') && older.params.baselineTargets !== undefined) {
    const { baselineTargets: _targets, ...params } = older.params;
    return { ...older, params } as StepCommand;
  }
  return older;
}

/**
 * A verify an agent of contract 3 or older ran without the plan's net-health check (commandForContract
 * took it out): the outcome says so in its summary and audit, so a pass is never read as counters checked.
 */
export function withoutHealth(sent: StepCommand, outcome: StepOutcome, command: StepCommand): StepOutcome {
  if (command.kind !== 'verify' || command.params.health === undefined) return outcome;
  if (sent.kind === 'verify' && sent.params.health !== undefined) return outcome;
  const why = `the agent takes command contract ${sent.contractVersion ?? 1}; upgrade it to contract ${COMMAND_CONTRACT_VERSION}`;
  return {
    ...outcome,
    summary: `${outcome.summary}; net health NOT checked: ${why}`,
    after: { ...outcome.after, netHealth: { checked: false, why } },
  };
}
