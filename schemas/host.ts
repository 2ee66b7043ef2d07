import { z } from 'zod';
import { HostId, InterfaceName, Labels, VmName } from './common.js';

export const DRIVERS = ['sim', 'lab', 'linux'] as const;
export const Driver = z.enum(DRIVERS);
export type Driver = z.infer<typeof Driver>;

export const BridgeType = z.enum(['linux', 'ovs', 'none', 'unknown']);

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
  vms: z.array(z.object({ name: VmName, state: z.string(), sriov: z.boolean().default(false) })),
  cordoned: z.boolean(),
  capacity: z.object({ vmSlots: z.number().int().nonnegative(), vmsRunning: z.number().int().nonnegative() }),
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
  labels: Labels,
  facts: HostFacts,
  /** The command the host is running now, if any. */
  busyWith: z.object({ commandId: z.string(), kind: z.string() }).optional(),
  reportedAt: z.iso.datetime(),
  intervalMs: z.number().int().positive(),
});
export type HostPresence = z.infer<typeof HostPresence>;

/** A host is online while its presence is younger than three intervals. */
export function isOnline(p: HostPresence, now = Date.now()): boolean {
  return now - Date.parse(p.reportedAt) < 3 * p.intervalMs;
}
