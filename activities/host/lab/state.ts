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
});
export type LabHost = z.infer<typeof LabHost>;

export const LabVm = z.object({
  name: VmName,
  vmid: z.number().int().min(100),
  ns: NsName,
  address: z.string(),
  /** The host it was created on; undrain brings it back there. */
  home: HostId,
  /** The host end of its veth (Proxmox's name for a VM's first NIC). */
  port: InterfaceName,
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
