import { SWITCH_ADDRESS } from './layout.js';
import { attachVmPort, detachVmPort, runningBridge } from './attach.js';
import { rootRunner, vmRunner } from './exec.js';
import { hpingArgv } from '../linux/hping.js';
import { labHost, labVm, type LabHost, type LabState, type LabVm } from './state.js';
import { RefitError } from '../../../schemas/errors.js';

export class VmNotFoundError extends RefitError {}

/** Where each VM is now: the host whose namespace holds the host end of its veth. */
export async function locateVms(lab: LabState): Promise<Map<string, string>> {
  const where = new Map<string, string>();
  const ports = new Map(lab.vms.map((v) => [v.port, v.name]));
  for (const host of lab.hosts) {
    const listed = await rootRunner(['ip', '-n', host.ns, '-o', 'link', 'show']).catch(() => ({ stdout: '' }));
    for (const line of listed.stdout.split('\n')) {
      const name = /^\d+:\s+([^:@]+)/.exec(line)?.[1];
      const vm = name === undefined ? undefined : ports.get(name);
      if (vm !== undefined) where.set(vm, host.id);
    }
  }
  return where;
}

/** The VMs on one host: whose veth is in its namespace (one `ip link` there, not a scan of the lab). */
export async function vmsOn(lab: LabState, hostId: string): Promise<LabVm[]> {
  const host = labHost(lab, hostId);
  const listed = await rootRunner(['ip', '-n', host.ns, '-o', 'link', 'show']);
  const names = new Set(listed.stdout.split('\n').map((line) => /^\d+:\s+([^:@]+)/.exec(line)?.[1]));
  return lab.vms.filter((v) => names.has(v.port));
}

/**
 * Live-migrate a lab VM: its veth moves to the destination host's namespace and bridge (Linux or
 * OVS) with the VM's addresses untouched, then the VM announces itself as QEMU does after a
 * migration, so the switch learns where it went. Returns false when it was there already.
 */
export async function migrateVm(
  lab: LabState,
  vmName: string,
  toHostId: string,
): Promise<{ moved: boolean; from: string; to: string }> {
  const vm = labVm(lab, vmName);
  const to = labHost(lab, toHostId);
  const fromId = (await locateVms(lab)).get(vm.name);
  if (fromId === undefined) throw new VmNotFoundError(`${vm.name} is on no lab host`);
  if (fromId === to.id) return { moved: false, from: fromId, to: to.id };
  const from = labHost(lab, fromId);
  // Look at both bridges first: between detach and announce the VM is unreachable, so that window
  // holds only the four commands that move it.
  const [fromBridge, toBridge] = await Promise.all([runningBridge(lab, from), runningBridge(lab, to)]);
  await detachVmPort(lab, from, vm.port, fromBridge);
  await rootRunner(['ip', '-n', from.ns, 'link', 'set', 'dev', vm.port, 'netns', to.ns]);
  await attachVmPort(lab, to, vm.port, toBridge);
  await announce(vm);
  return { moved: true, from: from.id, to: to.id };
}

/** One packet from the VM to the lab switch: the switch's bridge learns the VM's new port from it. */
async function announce(vm: LabVm): Promise<void> {
  await vmRunner(vm)(hpingArgv({ address: SWITCH_ADDRESS, count: 1 }), { okExitCodes: [1] });
}

export type { LabHost };
