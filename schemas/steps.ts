import { z } from 'zod';
import { durationWithin, InterfaceName, IPv4, millisWithin, TrafficTarget, VmName, HostId } from './common.js';
import { MAX_VMS_PER_HOST } from './host.js';

/** The step catalogue. Each kind has parameters (in the plan) and a result (from the host). */
export const STEP_KINDS = [
  'drain',
  'ovs-convert',
  'ovs-bond',
  'sriov-enable',
  'reboot',
  'verify',
  'undrain',
  'nic-tuning',
  'net-health',
  'vxlan-tunnel',
] as const;
export const StepKind = z.enum(STEP_KINDS);
export type StepKind = z.infer<typeof StepKind>;

/** Apply runs the step; revert undoes what a completed apply did. */
export const StepMode = z.enum(['apply', 'revert']);
export type StepMode = z.infer<typeof StepMode>;

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/**
 * How long a host waits for the controller's confirmation after switching to OVS. Below a few
 * seconds the controller cannot hear it in time; beyond a quarter of an hour a host cut off by its
 * new network stays cut off that long.
 */
export const CONFIRM_WITHIN = { min: 5 * SECOND, max: 15 * MINUTE } as const;
/** How long the controller waits for a rebooted host to come back. */
export const REBOOT_TIMEOUT = { min: 10 * SECOND, max: 2 * HOUR } as const;
/** How long an OVS bond may take to have every member enabled (and LACP negotiated) before ovs-bond puts the old file back. */
export const BOND_SETTLE_WITHIN = { min: SECOND, max: 5 * MINUTE } as const;
/** How long one step may take on its host before the controller gives up on it. */
export const STEP_TIMEOUT = { min: SECOND, max: 24 * HOUR } as const;

export const NON_MIGRATABLE = ['refuse', 'shutdown', 'skip'] as const;
export const NonMigratable = z.enum(NON_MIGRATABLE);
export type NonMigratable = z.infer<typeof NonMigratable>;

export const DrainParams = z.strictObject({
  /** Where each VM goes; chosen by the controller. A VM without a destination goes wherever the driver picks. */
  destinations: z
    .record(VmName, HostId)
    .refine((d) => Object.keys(d).length <= MAX_VMS_PER_HOST, `at most ${MAX_VMS_PER_HOST} VMs`)
    .default({}),
  /**
   * What to do with VMs that cannot be live-migrated (a passed-through device: Proxmox `hostpciN`, libvirt
   * `<hostdev>`): `refuse` (the default: the step fails naming them), `shutdown` (shut down, migrate
   * offline, start on the destination) or `skip` (leave them running; the host is not drained and a later
   * reboot refuses). Absent means refuse, and is what an agent of contract 2 is sent.
   */
  nonMigratable: NonMigratable.optional(),
});
export const UndrainParams = z.strictObject({});
/**
 * Targets the host measures before it changes anything, so that a later verify compares with a
 * baseline from before the change; a loaded plan fills them from its later verify steps' targets sent
 * from the host (a VM's are elsewhere, drained, while its host changes).
 */
const BaselineTargets = z.array(TrafficTarget).max(100).optional();

export const OvsConvertParams = z.strictObject({
  bridge: InterfaceName.default('vmbr0'),
  /** The physical uplink; by default the Linux bridge's single port. */
  uplink: InterfaceName.optional(),
  /** VLAN tag of the host's internal port; untagged traffic on the uplink is mapped to it (native-untagged). */
  hostVlan: z.number().int().min(1).max(4094).default(1),
  /**
   * VLAN tag of the VMs' NICs on the converted bridge (Proxmox `tag=` of their netN, libvirt `<vlan>`,
   * the running tap's OVS tag), set as part of the conversion and taken off by its revert; VMs that
   * undrain brings back get it too. Absent: `hostVlan`, so the VMs stay on the untagged network of the
   * uplink they had on the Linux bridge. An agent older than the key refuses it.
   */
  vmVlan: z.number().int().min(1).max(4094).optional(),
  /** How long the host waits for the controller to confirm it can still reach it before it reverts by itself. */
  confirmWithin: durationWithin(CONFIRM_WITHIN.min, CONFIRM_WITHIN.max).default(60_000),
  baselineTargets: BaselineTargets,
});
/** Open vSwitch's bond modes (ovs-vswitchd.conf.db(5), Port bond_mode). */
export const OvsBondMode = z.enum(['active-backup', 'balance-slb', 'balance-tcp']);
export type OvsBondMode = z.infer<typeof OvsBondMode>;
/** Port `lacp`: `active` sends LACPDUs, `passive` only answers, `off` runs none. */
export const LacpMode = z.enum(['active', 'passive', 'off']);
export type LacpMode = z.infer<typeof LacpMode>;
/** Port `other_config:lacp-time` (a Linux bond's `lacp_rate`): fast is a LACPDU a second, slow one in 30. */
export const LacpTime = z.enum(['fast', 'slow']);
export type LacpTime = z.infer<typeof LacpTime>;

export const OvsBondParams = z.strictObject({
  bridge: InterfaceName.default('vmbr0'),
  /** The bond: a Linux bond under the OVS bridge, which becomes an OVSBond of the same name and members. */
  bond: InterfaceName.default('bond0'),
  /** Default from the Linux bond: 802.3ad by layer3+4 → balance-tcp, by layer2(+3) → balance-slb, active-backup → active-backup. */
  mode: OvsBondMode.optional(),
  /** Default: active for balance-tcp and for a Linux 802.3ad bond, off otherwise. */
  lacp: LacpMode.optional(),
  /** Default: the Linux bond's lacp rate, or slow. */
  lacpTime: LacpTime.optional(),
  settleWithin: durationWithin(BOND_SETTLE_WITHIN.min, BOND_SETTLE_WITHIN.max).default(30_000),
});
/** What `ip link set <nic> vf <n> ...` sets on one VF; what is left out stays as the driver has it. */
export const VfSettings = z.strictObject({
  vlan: z.number().int().min(0).max(4094).optional(),
  mac: z
    .string()
    .regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, 'must be a MAC address such as 52:54:00:12:34:56')
    .refine((m) => (parseInt(m.slice(0, 2), 16) & 1) === 0, 'must be a unicast MAC address')
    .optional(),
  spoofchk: z.boolean().optional(),
  trust: z.boolean().optional(),
});
export type VfSettings = z.infer<typeof VfSettings>;

export const SriovEnableParams = z
  .strictObject({
    nic: InterfaceName,
    vfs: z.number().int().min(1).max(256),
    iommu: z.enum(['intel', 'amd']).default('intel'),
    /** VLAN tag set on every VF after the reboot (`ip link set <nic> vf <n> vlan <tag>`); 0 clears the tag. */
    vfVlan: z.number().int().min(0).max(4094).optional(),
    /**
     * VF settings set now where the VFs run, after the reboot otherwise, and at every boot: under `all`
     * for every VF, under a VF's number for that one (over `all`). Optional: without it VFs keep the
     * driver's settings.
     */
    vfSettings: z.record(z.string(), VfSettings).optional(),
    baselineTargets: BaselineTargets,
  })
  .superRefine((p, ctx) => {
    for (const [key, settings] of Object.entries(p.vfSettings ?? {})) {
      if (!/^(all|0|[1-9]\d{0,2})$/.test(key))
        ctx.addIssue({ code: 'custom', path: ['vfSettings', key], message: 'must be "all" or a VF number' });
      else if (key !== 'all' && Number(key) >= p.vfs)
        ctx.addIssue({ code: 'custom', path: ['vfSettings', key], message: `there are VFs 0 to ${p.vfs - 1} only` });
      if (key === 'all' && settings.mac !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['vfSettings', 'all', 'mac'],
          message: 'one MAC address on every VF: give each VF its own under its number',
        });
    }
    const allVlan = p.vfSettings?.all?.vlan;
    if (p.vfVlan !== undefined && allVlan !== undefined && allVlan !== p.vfVlan)
      ctx.addIssue({
        code: 'custom',
        path: ['vfSettings', 'all', 'vlan'],
        message: `vfVlan says ${p.vfVlan}: give the VLAN of every VF once`,
      });
  });
export const RebootParams = z.strictObject({
  /** How long the controller waits for a new boot id and a passing health check. */
  timeout: durationWithin(REBOOT_TIMEOUT.min, REBOOT_TIMEOUT.max).default(600_000),
});
/** The counters net-health compares; a limit the plan leaves out is not checked (errors and overruns: 0). */
export const HEALTH_COUNTERS = [
  'rxDropped',
  'txDropped',
  'rxErrors',
  'txErrors',
  'rxOverruns',
  'tcpRetransmits',
] as const;
export type HealthCounter = (typeof HEALTH_COUNTERS)[number];
const CounterLimit = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** How long net-health watches the counters. */
export const HEALTH_WINDOW = { min: SECOND, max: HOUR } as const;
/** The largest increase of each counter over the window that still passes. */
const HealthLimits = z
  .strictObject({
    rxDropped: CounterLimit,
    txDropped: CounterLimit,
    rxErrors: CounterLimit.default(0),
    txErrors: CounterLimit.default(0),
    rxOverruns: CounterLimit.default(0),
    tcpRetransmits: CounterLimit,
  })
  .partial({ rxDropped: true, txDropped: true, tcpRetransmits: true })
  .prefault({});
/** Default: every interface of the host but lo. */
const HealthInterfaces = z.array(InterfaceName).min(1).max(64).optional();
export const NetHealthParams = z.strictObject({
  interfaces: HealthInterfaces,
  window: durationWithin(HEALTH_WINDOW.min, HEALTH_WINDOW.max).default(10_000),
  max: HealthLimits,
});
/**
 * net-health inside verify: the same counters and limits, read before verify's first probe and after
 * its last, so the window is the traffic check itself (command contract 4).
 */
export const VerifyHealth = z.strictObject({ interfaces: HealthInterfaces, max: HealthLimits });
export type VerifyHealth = z.output<typeof VerifyHealth>;
export const VerifyParams = z.strictObject({
  targets: z.array(TrafficTarget).min(1).max(100),
  /** Packets per target. */
  count: z.number().int().min(1).max(100_000).default(100),
  /** Send from this VM's namespace instead of the host (lab). */
  fromVm: VmName.optional(),
  maxLossPct: z.number().min(0).max(100).default(1),
  maxRttMs: z.number().positive().max(60_000).optional(),
  /** Fail when loss or average latency is worse than the baseline by more than this factor. */
  maxRegression: z.number().min(1).max(1_000).default(1.5),
  /** Latency within this many ms of the baseline is never a regression (jitter, busy hosts). */
  rttToleranceMs: z.number().nonnegative().max(60_000).default(5),
  /**
   * Also fail when the host's drop, error or overrun counters or its TCP retransmissions grow by more
   * than net-health's limits while the traffic check runs. Optional: without it no counter is read.
   */
  health: VerifyHealth.optional(),
});

const onOff = z.boolean();
/** One interface's settings; what the plan leaves out stays as it is. */
export const NicSettings = z
  .strictObject({
    name: InterfaceName,
    /** `ethtool -K`: TCP/generic segmentation, generic/large receive, rx/tx checksumming. */
    offloads: z
      .strictObject({ tso: onOff, gso: onOff, gro: onOff, lro: onOff, rx: onOff, tx: onOff })
      .partial()
      .optional(),
    /** `ethtool -G`: descriptors per ring. */
    rings: z
      .strictObject({ rx: z.number().int().min(1).max(65_536), tx: z.number().int().min(1).max(65_536) })
      .partial()
      .optional(),
    /** `ethtool -L`: queue counts. */
    channels: z
      .strictObject({
        combined: z.number().int().min(1).max(4_096),
        rx: z.number().int().min(1).max(4_096),
        tx: z.number().int().min(1).max(4_096),
      })
      .partial()
      .optional(),
    txqueuelen: z.number().int().min(0).max(1_000_000).optional(),
    mtu: z.number().int().min(68).max(65_535).optional(),
  })
  .refine(
    (s) =>
      Object.keys(s.offloads ?? {}).length + Object.keys(s.rings ?? {}).length + Object.keys(s.channels ?? {}).length >
        0 ||
      s.txqueuelen !== undefined ||
      s.mtu !== undefined,
    'names no setting to change (offloads, rings, channels, txqueuelen, mtu)',
  );
export type NicSettings = z.output<typeof NicSettings>;
export const NicTuningParams = z.strictObject({
  interfaces: z
    .array(NicSettings)
    .min(1)
    .max(32)
    .refine((l) => new Set(l.map((i) => i.name)).size === l.length, 'names an interface twice'),
});

/** Bytes VXLAN over IPv4 adds to a frame: outer IPv4 (20), UDP (8), VXLAN (8) and the inner Ethernet header (14). */
export const VXLAN_IPV4_OVERHEAD = 50;

const vxlanFields = {
  type: z.enum(['ovs', 'linux']),
  /** The OVS port, or the Linux device. */
  name: InterfaceName,
  vni: z.number().int().min(1).max(16_777_215),
  remote: IPv4,
  /** This host's tunnel address (the source of the encapsulated packets); by default the kernel's choice. */
  local: IPv4.optional(),
  dstPort: z.number().int().min(1).max(65_535).default(4789),
  /** The device the encapsulated packets leave by; its MTU less 50 is what the tunnel carries. */
  underlay: InterfaceName,
  /** `ovs`: the OVS bridge the port joins. */
  bridge: InterfaceName.optional(),
  /** `ovs`: the access VLAN of the tunnel port on the bridge (VMs of that tag reach the other end). */
  tag: z.number().int().min(1).max(4094).optional(),
  /** `linux`: an address on the tunnel device, e.g. 192.168.100.2/24. */
  address: z.cidrv4().optional(),
  /** `linux`: the device's MTU; at most, and by default, the underlay's MTU less 50. */
  mtu: z.number().int().min(576).max(65_485).optional(),
  /**
   * Prove the tunnel: pings across it with the don't-fragment bit at the largest payload that must
   * fit (tunnel MTU − 28) must come back, and one byte more must not.
   */
  check: z.strictObject({ address: IPv4, fromVm: VmName.optional() }).optional(),
};
type VxlanKey = keyof typeof vxlanFields;

/**
 * One end of a point-to-point VXLAN tunnel, as a host makes it: an Open vSwitch port of type vxlan on
 * an OVS bridge (`type: ovs`) or a kernel `vxlan` device (`type: linux`). The UDP destination port is
 * always set (Linux's own default is 8472, not the IANA 4789).
 */
export const VxlanEnd = z.strictObject(vxlanFields).superRefine((p, ctx) => {
  const wrong = (key: keyof typeof p, why: string) =>
    p[key] !== undefined && ctx.addIssue({ code: 'custom', path: [key], message: why });
  if (p.type === 'ovs') {
    if (p.bridge === undefined)
      ctx.addIssue({ code: 'custom', path: ['bridge'], message: 'type ovs needs the OVS bridge' });
    wrong('address', 'only a linux vxlan device carries an address; put a VM or an internal port on the tag instead');
    wrong('mtu', 'an OVS tunnel port has no MTU of its own; its VMs must stay at the underlay MTU less 50');
  } else {
    wrong('bridge', 'only an ovs tunnel joins a bridge');
    wrong('tag', 'only an ovs tunnel port takes a VLAN tag');
  }
  if (p.local !== undefined && p.local === p.remote)
    ctx.addIssue({ code: 'custom', path: ['remote'], message: 'must differ from local' });
});
export type VxlanEnd = z.output<typeof VxlanEnd>;

/** What one host's entry under `hosts` sets: any parameter of an end, over the step's own. */
const VxlanHostEntry = z
  .strictObject(
    Object.fromEntries(
      Object.entries(vxlanFields).map(([k, v]) => [k, k === 'dstPort' ? z.number().int().min(1).max(65_535) : v]),
    ) as { [K in VxlanKey]: K extends 'dstPort' ? z.ZodNumber : (typeof vxlanFields)[K] },
  )
  .partial();

/**
 * vxlan-tunnel's params: one end (every host of the plan makes the same), or both ends of one tunnel
 * in one step: what they share at the top, each host's own (`local`, `remote`, `type`, …) under
 * `hosts.<host id>`. A host without an entry is refused: at plan time when the plan names its hosts,
 * when the rollout starts otherwise, and by the controller before anything is sent.
 */
export const VxlanTunnelParams = z
  .strictObject({
    ...VxlanHostEntry.shape,
    hosts: z
      .record(HostId, VxlanHostEntry)
      .refine((h) => Object.keys(h).length >= 1 && Object.keys(h).length <= 64, 'one entry per host, 1 to 64')
      .optional(),
  })
  .superRefine((p, ctx) => {
    const ends = p.hosts === undefined ? [[undefined, {}] as const] : Object.entries(p.hosts);
    const { hosts: _hosts, ...common } = p;
    for (const [hostId, own] of ends) {
      const end = VxlanEnd.safeParse({ ...common, ...own });
      if (end.success) continue;
      for (const issue of end.error.issues) {
        const key = issue.path[0];
        const inEntry = hostId !== undefined && typeof key === 'string' && key in own;
        ctx.addIssue({
          code: 'custom',
          path: inEntry ? ['hosts', hostId, ...issue.path] : issue.path,
          message: hostId === undefined || inEntry ? issue.message : `${issue.message} (for host ${hostId})`,
        });
      }
    }
  });
export type VxlanTunnelParams = z.output<typeof VxlanTunnelParams>;

/** The end a host makes: the step's params with its entry under `hosts` over them; undefined when it has none. */
export function vxlanEndFor(params: VxlanTunnelParams, hostId: string | undefined): VxlanEnd | undefined {
  const { hosts, ...common } = params;
  if (hosts === undefined) return VxlanEnd.parse(common);
  const own = hostId === undefined ? undefined : hosts[hostId];
  return own === undefined ? undefined : VxlanEnd.parse({ ...common, ...own });
}

/** Params as a step command carries them: a loaded plan's, its durations already in milliseconds. */
export const STEP_PARAMS = {
  drain: DrainParams,
  undrain: UndrainParams,
  // A host takes shorter confirmation waits than a plan (its tests use a second or two), never longer ones.
  'ovs-convert': OvsConvertParams.extend({ confirmWithin: millisWithin(1, CONFIRM_WITHIN.max).default(60_000) }),
  'ovs-bond': OvsBondParams.extend({
    settleWithin: millisWithin(1, BOND_SETTLE_WITHIN.max).default(30_000),
  }),
  'sriov-enable': SriovEnableParams,
  reboot: RebootParams.extend({ timeout: millisWithin(1, REBOOT_TIMEOUT.max).default(600_000) }),
  verify: VerifyParams,
  'nic-tuning': NicTuningParams,
  'net-health': NetHealthParams.extend({
    window: millisWithin(HEALTH_WINDOW.min, HEALTH_WINDOW.max).default(10_000),
  }),
  'vxlan-tunnel': VxlanTunnelParams,
} as const satisfies Record<StepKind, z.ZodType>;

export type StepParams<K extends StepKind> = z.output<(typeof STEP_PARAMS)[K]>;

/**
 * A step's kind with parameters checked for that kind, defaults filled in: what a loaded plan holds,
 * the controller sends and the host's driver runs, with the type of its kind's schema all the way.
 */
export type StepCall = { [K in StepKind]: { kind: K; params: StepParams<K> } }[StepKind];

const StepTimeout = durationWithin(STEP_TIMEOUT.min, STEP_TIMEOUT.max);

/** One step of a plan: `{ kind, params, timeout }`, with parameters checked for that kind. */
export const PlanStep = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('drain'), params: DrainParams.prefault({}), timeout: StepTimeout.optional() }),
  z.strictObject({ kind: z.literal('undrain'), params: UndrainParams.prefault({}), timeout: StepTimeout.optional() }),
  z.strictObject({
    kind: z.literal('ovs-convert'),
    params: OvsConvertParams.prefault({}),
    timeout: StepTimeout.optional(),
  }),
  z.strictObject({ kind: z.literal('ovs-bond'), params: OvsBondParams.prefault({}), timeout: StepTimeout.optional() }),
  z.strictObject({ kind: z.literal('sriov-enable'), params: SriovEnableParams, timeout: StepTimeout.optional() }),
  z.strictObject({ kind: z.literal('reboot'), params: RebootParams.prefault({}), timeout: StepTimeout.optional() }),
  z.strictObject({ kind: z.literal('verify'), params: VerifyParams, timeout: StepTimeout.optional() }),
  z.strictObject({ kind: z.literal('nic-tuning'), params: NicTuningParams, timeout: StepTimeout.optional() }),
  z.strictObject({
    kind: z.literal('net-health'),
    params: NetHealthParams.prefault({}),
    timeout: StepTimeout.optional(),
  }),
  z.strictObject({ kind: z.literal('vxlan-tunnel'), params: VxlanTunnelParams, timeout: StepTimeout.optional() }),
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

/** The vxlan-tunnel steps with ends per host that have none for one of these hosts. */
export function missingTunnelEnds(
  steps: readonly { kind: string; params: unknown }[],
  hostIds: readonly string[],
): { index: number; hostId: string }[] {
  return steps.flatMap((step, index) => {
    const hosts = step.kind === 'vxlan-tunnel' ? (step.params as VxlanTunnelParams).hosts : undefined;
    return hosts === undefined
      ? []
      : hostIds.filter((h) => hosts[h] === undefined).map((hostId) => ({ index, hostId }));
  });
}
