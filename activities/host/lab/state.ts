import path from 'node:path';
import { z } from 'zod';
import { readJsonFile, writeJsonAtomic } from '../../files.js';
import { HostId, InterfaceName, VmName } from '../../../schemas/common.js';
import { RefitError } from '../../../schemas/errors.js';

/** Network namespace names the lab makes: the prefix, then sw, h<n> or vm<id>. */
export const LabPrefix = z.string().regex(/^rf-([a-z0-9]{1,8}-)?$/, 'must be "rf-" or "rf-<tag>-"');
const NsName = z.string().regex(/^rf-[a-z0-9-]{1,40}$/);

export const LabFlavour = z.enum(['debian', 'pve']);
export type LabFlavour = z.infer<typeof LabFlavour>;

export const LabHost = z.object({
  id: HostId,
  index: z.number().int().min(1),
  ns: NsName,
  /** The host's own files: etc/ (seen as /etc/netns/<ns>), run/, var/, fake sys/ and proc/. */
  root: z.string(),
  /** Host address in CIDR notation, e.g. 10.77.0.11/16. */
  address: z.string(),
  uplink: InterfaceName,
  /** The uplink's peer in the switch namespace. */
  switchPort: InterfaceName,
  /** The NIC with SR-IOV (the uplink, as on a real hypervisor). */
  nic: InterfaceName,
  totalVfs: z.number().int().nonnegative(),
  vmSlots: z.number().int().nonnegative(),
  /**
   * `debian`: classic ifupdown (`ifup`), GRUB. `pve`: shaped like Proxmox VE 7/8, ifupdown2 (`ifreload -a`)
   * unpacked privately and put first on the host's PATH. Labs from before flavours are all `debian`.
   */
  flavour: LabFlavour.default('debian'),
  /**
   * A bonded uplink (`refit lab up --bond h1`): the NIC and a second one (`ens7`), each a veth to the
   * switch, declared in the host's file as the Linux bond `name` (802.3ad, layer3+4). The switch side
   * of the members is one OVS bond with LACP. Absent: one uplink on the switch's Linux bridge.
   */
  bond: z
    .object({
      name: InterfaceName,
      members: z.array(z.object({ name: InterfaceName, switchPort: InterfaceName })).min(2),
    })
    .optional(),
});
export type LabHost = z.infer<typeof LabHost>;

/**
 * `qemu`: a real QEMU guest (TCG) on a tap in its host's bridge, live-migrated over the lab network
 * with QMP. `netns`: a network namespace on a veth, moved between hosts (labs from before QEMU, and
 * the fast contract tests that say so).
 */
export const LabVmKind = z.enum(['netns', 'qemu']);
export type LabVmKind = z.infer<typeof LabVmKind>;

/** The guest every QEMU VM of a lab boots: built by scripts/setup-guest.sh into the tool cache. */
export const LabGuestImage = z.object({ kernel: z.string(), initrd: z.string() });
export type LabGuestImage = z.infer<typeof LabGuestImage>;

export const LabVm = z.object({
  name: VmName,
  vmid: z.number().int().min(100),
  ns: NsName,
  address: z.string(),
  /** The host it was created on; undrain brings it back there. */
  home: HostId,
  /** The host end of its NIC: `tap<vmid>i0` for a QEMU guest, `veth<vmid>i0` for a namespace VM (Proxmox's names). */
  port: InterfaceName,
  kind: LabVmKind.default('netns'),
  /** A QEMU guest's NIC MAC, kept across migrations. */
  mac: z
    .string()
    .regex(/^52:54:00(:[0-9a-f]{2}){3}$/)
    .optional(),
});
export type LabVm = z.infer<typeof LabVm>;

export const LabState = z.object({
  version: z.literal(1),
  labDir: z.string(),
  prefix: LabPrefix,
  createdAt: z.iso.datetime(),
  network: z.string(),
  switch: z.object({ ns: NsName, bridge: InterfaceName, address: z.string() }),
  hosts: z.array(LabHost),
  vms: z.array(LabVm),
  /** Where the lab's QEMU VMs boot from (absent when it has none). */
  guest: LabGuestImage.optional(),
});
export type LabState = z.infer<typeof LabState>;

export const labStateFile = (labDir: string) => path.join(labDir, 'state.json');

export class LabNotFoundError extends RefitError {}

export async function loadLab(labDir: string): Promise<LabState> {
  const state = await readJsonFile(labStateFile(labDir), LabState);
  if (state === undefined) throw new LabNotFoundError(`no lab in ${labDir} (run \`refit lab up\`)`);
  return state;
}

export async function saveLab(state: LabState): Promise<void> {
  await writeJsonAtomic(labStateFile(state.labDir), state);
}

export function labHost(lab: LabState, hostId: string): LabHost {
  const host = lab.hosts.find((h) => h.id === hostId);
  if (host === undefined)
    throw new LabNotFoundError(`no host ${hostId} in the lab (hosts: ${lab.hosts.map((h) => h.id).join(', ')})`);
  return host;
}

export function labVm(lab: LabState, name: string): LabVm {
  const vm = lab.vms.find((v) => v.name === name);
  if (vm === undefined) throw new LabNotFoundError(`no VM ${name} in the lab`);
  return vm;
}
