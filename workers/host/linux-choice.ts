import { z } from 'zod';
import type { LinuxDriverOptions } from '../../activities/host/linux/driver.js';
import { PveNode } from '../../activities/host/linux/proxmox.js';
import { HostId } from '../../schemas/common.js';
import { UsageError } from '../../schemas/errors.js';
import { checkedSetting as checked } from '../../schemas/problems.js';

/** The linux driver's VM backend and Proxmox node names. */
export type LinuxChoice = Pick<LinuxDriverOptions, 'vmBackend' | 'pveNode' | 'pveNodes'>;

const VmBackend = z.enum(['auto', 'libvirt', 'proxmox']);

/** A setting as given, and where it came from (a flag or an environment variable), for its error. */
export interface GivenSetting {
  value: string;
  from: string;
}

/**
 * The linux driver's VM backend and Proxmox node names (`refit host --vm-backend/--pve-node/--pve-nodes`,
 * `refit-host`'s REFIT_VM_BACKEND, REFIT_PVE_NODE, REFIT_PVE_NODES), checked: a bad or hostile value is a
 * UsageError naming where it came from. `pveNodes` is `hostId=node,...`.
 */
export function linuxChoice(given: {
  vmBackend?: GivenSetting | undefined;
  pveNode?: GivenSetting | undefined;
  pveNodes?: GivenSetting | undefined;
}): LinuxChoice {
  const pveNodes: Record<string, string> = {};
  const nodes = given.pveNodes;
  for (const pair of (nodes?.value ?? '').split(',').filter((p) => p.trim() !== '')) {
    const from = nodes?.from ?? '--pve-nodes';
    const [id = '', node = '', ...extra] = pair.trim().split('=');
    if (extra.length > 0 || node === '') throw new UsageError(`${from} "${pair}": must be hostId=node`);
    pveNodes[checked(HostId, id, from)] = checked(PveNode, node, from);
  }
  return {
    vmBackend: given.vmBackend ? checked(VmBackend, given.vmBackend.value, given.vmBackend.from) : 'auto',
    ...(given.pveNode !== undefined ? { pveNode: checked(PveNode, given.pveNode.value, given.pveNode.from) } : {}),
    pveNodes,
  };
}
