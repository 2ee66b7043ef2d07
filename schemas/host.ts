import { z } from 'zod';
import { HostId, InterfaceName, Labels, VmName } from './common.js';

export const DRIVERS = ['sim', 'lab', 'linux'] as const;
export const Driver = z.enum(DRIVERS);
export type Driver = z.infer<typeof Driver>;

export const BridgeType = z.enum(['linux', 'ovs', 'none', 'unknown']);

/**
 * More VMs than one hypervisor runs; the controller takes no higher claim. A host that said a
 * billion free slots would otherwise receive every VM of every drain.
 */
export const MAX_VMS_PER_HOST = 1_000;
const VmCount = z.number().int().nonnegative().max(MAX_VMS_PER_HOST);
/** Bytes of memory: at most 64 TiB, more than one hypervisor holds (a claim beyond is refused, not believed). */
const MemoryBytes = z
  .number()
  .int()
  .nonnegative()
  .max(64 * 2 ** 40);

/**
 * One VM as its host reports it. `memoryBytes` (its configured maximum) and `passthrough` (the devices
 * that pin it to this host: Proxmox `hostpciN`, libvirt `<hostdev>`) are optional, like every field added
 * to the facts: an older agent's presence stays valid. A VM with a passed-through device is `sriov: true`.
 */
export const VmFacts = z.object({
  name: VmName,
  state: z.string().max(64),
  sriov: z.boolean().default(false),
  memoryBytes: MemoryBytes.optional(),
  passthrough: z.array(z.string().max(64)).max(32).optional(),
});
export type VmFacts = z.infer<typeof VmFacts>;

/**
 * Programs refit's steps need that a minimal install lacks, found (true) or not on the host.
 * Optional: an older agent reports none, and nothing is assumed missing then.
 */
export const HostTools = z.object({ hping3: z.boolean().optional() });
export type HostTools = z.infer<typeof HostTools>;

export const HostFacts = z.object({
  bootId: z.string().min(1),
  bridge: z.object({ name: InterfaceName.optional(), type: BridgeType, ports: z.array(z.string()).default([]) }),
  sriov: z.object({
    nic: InterfaceName.optional(),
    supported: z.boolean(),
    totalVfs: z.number().int().nonnegative(),
    numVfs: z.number().int().nonnegative(),
    iommu: z.boolean(),
  }),
  vms: z.array(VmFacts).max(MAX_VMS_PER_HOST),
  cordoned: z.boolean(),
  /** VM slots: the placement's fallback where a host or its VMs report no memory. */
  capacity: z.object({ vmSlots: VmCount, vmsRunning: VmCount }),
  tools: HostTools.optional(),
  /**
   * The host's memory (Linux: MemTotal and MemAvailable of /proc/meminfo; Proxmox: the node's maxmem and
   * maxmem - mem in /cluster/resources) and CPUs; optional, so an older agent's presence stays valid.
   */
  memory: z.object({ totalBytes: MemoryBytes, freeBytes: MemoryBytes }).optional(),
  cpus: z.number().int().positive().max(100_000).optional(),
});
export type HostFacts = z.infer<typeof HostFacts>;

/** How often a host publishes its presence unless told otherwise. */
export const PRESENCE_INTERVAL_MS = 3_000;

/** Published by each host worker into the hosts bucket every few seconds. */
export const HostPresence = z.object({
  hostId: HostId,
  driver: Driver,
  /** True for the sim driver: nothing on this host is real. */
  simulated: z.boolean(),
  agentVersion: z.string(),
  /**
   * The command contract version the agent speaks (it also takes the one before). Optional, like every
   * field added to presence: an older agent's presence stays valid.
   */
  contractVersion: z.number().int().positive().optional(),
  /** Unique to one start of one agent (a new one at each start). */
  instanceId: z.string().max(64).optional(),
  /**
   * When this agent last found its presence key written by another agent: two agents run with the
   * same host id. The agent clears it after three intervals without another writer.
   */
  duplicateSeenAt: z.iso.datetime().optional(),
  labels: Labels,
  facts: HostFacts,
  /** The command the host is running now, if any. */
  busyWith: z.object({ commandId: z.string(), kind: z.string() }).optional(),
  reportedAt: z.iso.datetime(),
  intervalMs: z.number().int().positive(),
});
export type HostPresence = z.infer<typeof HostPresence>;

/** The longest presence interval the controller believes: a host cannot stay online by claiming an hour. */
export const MAX_PRESENCE_INTERVAL_MS = 60_000;

/**
 * Presence as read from the hosts bucket: `receivedAt` is when the NATS server stored the entry
 * (its own timestamp), the one time a host cannot choose. Whoever reads the bucket sets it.
 */
export type ReceivedPresence = HostPresence & { receivedAt?: string };

/**
 * A host is online while the server stored its presence less than three intervals ago (its interval,
 * at most a minute). The host's own `reportedAt` is not trusted: a presence without `receivedAt` is
 * never online.
 */
export function isOnline(p: ReceivedPresence, now = Date.now()): boolean {
  if (p.receivedAt === undefined) return false;
  return now - Date.parse(p.receivedAt) < 3 * Math.min(p.intervalMs, MAX_PRESENCE_INTERVAL_MS);
}

/** Why a presence stored under `key` cannot be taken, if it cannot: each host writes only its own key. */
export function presenceKeyProblem(key: string, p: HostPresence): string | undefined {
  return p.hostId === key ? undefined : `stored under host ${key}'s key but names host ${p.hostId}`;
}
