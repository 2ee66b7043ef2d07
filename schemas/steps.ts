import { z } from 'zod';
import { Duration, InterfaceName, Millis, TrafficTarget, VmName, HostId } from './common.js';

/** The step catalogue. Each kind has parameters (in the plan) and a result (from the host). */
export const STEP_KINDS = ['drain', 'ovs-convert', 'sriov-enable', 'reboot', 'verify', 'undrain'] as const;
export const StepKind = z.enum(STEP_KINDS);
export type StepKind = z.infer<typeof StepKind>;

/** Apply runs the step; revert undoes what a completed apply did. */
export const StepMode = z.enum(['apply', 'revert']);
export type StepMode = z.infer<typeof StepMode>;

export const DrainParams = z.strictObject({
  /** Where each VM goes; chosen by the controller. A VM without a destination goes wherever the driver picks. */
  destinations: z.record(VmName, HostId).default({}),
});
export const UndrainParams = z.strictObject({});
export const OvsConvertParams = z.strictObject({
  bridge: InterfaceName.default('vmbr0'),
  /** The physical uplink; by default the Linux bridge's single port. */
  uplink: InterfaceName.optional(),
  /** VLAN tag of the host's internal port; untagged traffic on the uplink is mapped to it (native-untagged). */
  hostVlan: z.number().int().min(1).max(4094).default(1),
  /** How long the host waits for the controller to confirm it can still reach it before it reverts by itself. */
  confirmWithin: Duration.default(60_000),
});
export const SriovEnableParams = z.strictObject({
  nic: InterfaceName,
  vfs: z.number().int().min(1).max(256),
  iommu: z.enum(['intel', 'amd']).default('intel'),
  /** VLAN tag set on every VF after the reboot (`ip link set <nic> vf <n> vlan <tag>`); 0 clears the tag. */
  vfVlan: z.number().int().min(0).max(4094).optional(),
});
export const RebootParams = z.strictObject({
  /** How long the controller waits for a new boot id and a passing health check. */
  timeout: Duration.default(600_000),
});
export const VerifyParams = z.strictObject({
  targets: z.array(TrafficTarget).min(1),
  /** Packets per target. */
  count: z.number().int().min(1).max(100_000).default(100),
  /** Send from this VM's namespace instead of the host (lab). */
  fromVm: VmName.optional(),
  maxLossPct: z.number().min(0).max(100).default(1),
  maxRttMs: z.number().positive().optional(),
  /** Fail when loss or average latency is worse than the baseline by more than this factor. */
  maxRegression: z.number().min(1).default(1.5),
  /** Latency within this many ms of the baseline is never a regression (jitter, busy hosts). */
  rttToleranceMs: z.number().nonnegative().default(5),
});

/** Params as a step command carries them: a loaded plan's, its durations already in milliseconds. */
export const STEP_PARAMS = {
  drain: DrainParams,
  undrain: UndrainParams,
  'ovs-convert': OvsConvertParams.extend({ confirmWithin: Millis.default(60_000) }),
  'sriov-enable': SriovEnableParams,
  reboot: RebootParams.extend({ timeout: Millis.default(600_000) }),
  verify: VerifyParams,
} as const satisfies Record<StepKind, z.ZodType>;

export type StepParams<K extends StepKind> = z.output<(typeof STEP_PARAMS)[K]>;

/**
 * A step's kind with parameters checked for that kind, defaults filled in: what a loaded plan holds,
 * the controller sends and the host's driver runs, with the type of its kind's schema all the way.
 */
export type StepCall = { [K in StepKind]: { kind: K; params: StepParams<K> } }[StepKind];

/** One step of a plan: `{ kind, params, timeout }`, with parameters checked for that kind. */
export const PlanStep = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('drain'), params: DrainParams.prefault({}), timeout: Duration.optional() }),
  z.strictObject({ kind: z.literal('undrain'), params: UndrainParams.prefault({}), timeout: Duration.optional() }),
  z.strictObject({
    kind: z.literal('ovs-convert'),
    params: OvsConvertParams.prefault({}),
    timeout: Duration.optional(),
  }),
  z.strictObject({ kind: z.literal('sriov-enable'), params: SriovEnableParams, timeout: Duration.optional() }),
  z.strictObject({ kind: z.literal('reboot'), params: RebootParams.prefault({}), timeout: Duration.optional() }),
  z.strictObject({ kind: z.literal('verify'), params: VerifyParams, timeout: Duration.optional() }),
]);
export type PlanStep = z.output<typeof PlanStep>;

/** State observed on the host before and after a step, for the audit trail. */
export const StepState = z.record(z.string(), z.unknown());

export const TrafficStats = z.object({
  target: z.string(),
  transmitted: z.number().int().nonnegative(),
  received: z.number().int().nonnegative(),
  lossPct: z.number().min(0).max(100),
  rttMinMs: z.number().nonnegative().optional(),
  rttAvgMs: z.number().nonnegative().optional(),
  rttMaxMs: z.number().nonnegative().optional(),
});
export type TrafficStats = z.infer<typeof TrafficStats>;

/** What a step returns. `changed` is false when the host was already in the desired state. */
export const StepOutcome = z.object({
  changed: z.boolean(),
  summary: z.string(),
  before: StepState.default({}),
  after: StepState.default({}),
  /** The running kernel lacks what the step configured; a reboot step must follow. */
  rebootRequired: z.boolean().optional(),
  /** The boot id when the step ran (reboot records the one it leaves). */
  bootId: z.string().optional(),
  traffic: z.array(TrafficStats).optional(),
  /** The host recovered this step after its worker restarted mid-step. */
  recovered: z.boolean().optional(),
});
export type StepOutcome = z.infer<typeof StepOutcome>;
