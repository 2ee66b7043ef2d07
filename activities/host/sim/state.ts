import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import type { HostFacts } from '../../../schemas/host.js';
import { readJsonFile, writeJsonAtomic } from '../../files.js';

/** Everything a simulated host is, persisted in its state dir so a restarted worker finds it again. */
export const SimState = z.object({
  version: z.literal(1),
  hostId: z.string(),
  bootId: z.string(),
  bridge: z.object({
    name: z.string(),
    type: z.enum(['linux', 'ovs']),
    uplink: z.string(),
    hostVlan: z.number().optional(),
    /** The OVS bond ovs-bond made the uplink (simulated: no members, no LACP partner). */
    ovsBond: z.object({ name: z.string(), mode: z.string(), lacp: z.string() }).optional(),
  }),
  nic: z.object({ name: z.string(), totalVfs: z.number().int().nonnegative() }),
  /** What the running kernel has. */
  running: z.object({ iommu: z.boolean(), numVfs: z.number().int().nonnegative() }),
  /** What the next boot applies: kernel command line and the persistent VF count. */
  bootConfig: z.object({ iommu: z.enum(['intel', 'amd']).nullable(), numVfs: z.number().int().nonnegative() }),
  vms: z.array(z.string()),
  /** VMs drained away, and the host each went to. */
  away: z.record(z.string(), z.string()),
  cordoned: z.boolean(),
  vmSlots: z.number().int().nonnegative(),
  /** Set by the reboot step; the reboot happens once its result is reported (or at the next start). */
  rebootPending: z.object({ commandId: z.string(), bootIdBefore: z.string() }).nullable(),
  /** The last reboot done, which step asked for it and the boot it left: a resumed step does not reboot again. */
  lastReboot: z.object({ commandId: z.string(), bootIdBefore: z.string() }).optional(),
  /** The command that last changed the host, per `<mode>:<kind>`: tells a recovered step it did the work. */
  appliedBy: z.record(z.string(), z.string()),
  /** How many times each step's change was actually applied (reverts under their stepLabel, `revert:<kind>`). */
  effects: z.record(z.string(), z.number().int().nonnegative()),
  /** Injected "once" failures that have already happened. */
  failedOnce: z.array(z.string()),
});
export type SimState = z.infer<typeof SimState>;

export interface SimHostShape {
  vms?: number;
  vmSlots?: number;
  totalVfs?: number;
}

export function initialSimState(hostId: string, shape: SimHostShape = {}): SimState {
  const vmCount = shape.vms ?? 3;
  return {
    version: 1,
    hostId,
    bootId: randomUUID(),
    // Shaped like the hosts of the OVS seed (000_15eae7ce64a05aed.txt: uplink ens6) and the SR-IOV seed
    // (001_f590dfafc891b798.txt: an Intel 82576, 7 VFs per port).
    bridge: { name: 'vmbr0', type: 'linux', uplink: 'ens6' },
    nic: { name: 'ens6', totalVfs: shape.totalVfs ?? 7 },
    running: { iommu: false, numVfs: 0 },
    bootConfig: { iommu: null, numVfs: 0 },
    vms: Array.from({ length: vmCount }, (_, i) => `${hostId}-vm${i + 1}`),
    away: {},
    cordoned: false,
    vmSlots: shape.vmSlots ?? Math.max(8, vmCount),
    rebootPending: null,
    appliedBy: {},
    effects: {},
    failedOnce: [],
  };
}

export function simStateFile(stateDir: string): string {
  return path.join(stateDir, 'sim-host.json');
}

export async function loadSimState(stateDir: string): Promise<SimState | undefined> {
  return readJsonFile(simStateFile(stateDir), SimState);
}

export async function saveSimState(stateDir: string, state: SimState): Promise<void> {
  await writeJsonAtomic(simStateFile(stateDir), state);
}

/** A boot: a new boot id, and only what was persisted comes back. VFs need the IOMMU on. */
export function bootSimHost(state: SimState): SimState {
  const iommu = state.bootConfig.iommu !== null;
  return {
    ...state,
    bootId: randomUUID(),
    running: { iommu, numVfs: iommu ? state.bootConfig.numVfs : 0 },
    rebootPending: null,
    ...(state.rebootPending !== null ? { lastReboot: state.rebootPending } : {}),
  };
}

export function simFacts(state: SimState): HostFacts {
  return {
    bootId: state.bootId,
    bridge: { name: state.bridge.name, type: state.bridge.type, ports: [state.bridge.uplink] },
    sriov: {
      nic: state.nic.name,
      supported: state.nic.totalVfs > 0,
      totalVfs: state.nic.totalVfs,
      numVfs: state.running.numVfs,
      iommu: state.running.iommu,
    },
    vms: state.vms.map((name) => ({ name, state: 'running', sriov: false })),
    cordoned: state.cordoned,
    capacity: { vmSlots: state.vmSlots, vmsRunning: state.vms.length },
  };
}

/** The part of the state a step's before/after shows in the audit trail. */
export function simObservation(state: SimState): Record<string, unknown> {
  return {
    simulated: true,
    bootId: state.bootId,
    bridge: {
      name: state.bridge.name,
      type: state.bridge.type,
      ...(state.bridge.ovsBond !== undefined ? { ovsBond: state.bridge.ovsBond } : {}),
    },
    sriov: { running: state.running, bootConfig: state.bootConfig },
    vms: [...state.vms],
    cordoned: state.cordoned,
    ...(state.rebootPending !== null ? { rebootPending: { bootIdBefore: state.rebootPending.bootIdBefore } } : {}),
  };
}
