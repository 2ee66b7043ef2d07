import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Confirmation, HostEnv, VfControl } from '../linux/host-env.js';
import { ifName } from '../linux/names.js';
import { pciAddressFromUevent, type VfState } from '../linux/sriov.js';
import { controllerConfirmation } from '../linux/confirm.js';
import { ovsPortVmNics, type VmNicBackend } from '../linux/vm-nics.js';
import { announceHost, attachVmPort, fixBridgeMac, hostLinks, reachableFromSwitch, runningBridge } from './attach.js';
import { readLabVf, setLabVfs, writeLabVf } from './boot.js';
import { hostRunner, labUpdateGrubScript, vmRunner } from './exec.js';
import { hostPaths } from './layout.js';
import { vmsOn } from './migrate.js';
import { labVm, type LabHost, type LabState } from './state.js';

/**
 * The fake NIC under <root>/sys: the same files a real one has (sriov_totalvfs, sriov_numvfs, a uevent
 * with its PCI address), plus virtfn<n>/{vlan,mac,spoofchk,trust} holding what `ip link set <pf> vf <n>`
 * would set on each VF.
 */
export function labVfControl(host: LabHost): VfControl {
  const device = path.join(hostPaths(host).sys, 'class/net', host.nic, 'device');
  const read = (file: string) =>
    readFile(path.join(device, file), 'utf8').then(
      (t) => Number(t.trim()),
      () => undefined,
    );
  const pci = async () => pciAddressFromUevent(await readFile(path.join(device, 'uevent'), 'utf8').catch(() => ''));
  const states = async (): Promise<Record<number, VfState>> => {
    const out: Record<number, VfState> = {};
    for (const entry of existsSync(device) ? await readdir(device) : []) {
      const m = /^virtfn(\d+)$/.exec(entry);
      if (m !== null) out[Number(m[1])] = await readLabVf(path.join(device, entry));
    }
    return out;
  };
  return {
    totalVfs: async (nic) => (nic === host.nic ? read('sriov_totalvfs') : undefined),
    numVfs: async (nic) => (nic === host.nic ? ((await read('sriov_numvfs')) ?? 0) : 0),
    setNumVfs: async (nic, count) => setLabVfs(host, nic === host.nic ? count : 0),
    pciAddress: async (nic) => (nic === host.nic ? pci() : undefined),
    nicAt: async (address) => ((await pci()) === address ? ifName(host.nic) : undefined),
    vfStates: async () => states(),
    setVf: async (_nic, vf, settings) => writeLabVf(path.join(device, `virtfn${vf}`), settings),
  };
}

/** 'probe': the host answers packets sent from the lab switch; 'controller': the controller's own word over NATS. */
export type LabConfirmation = 'probe' | 'controller' | Confirmation;

/**
 * How a lab host learns it is still reachable after ovs-convert's switch: packets from the switch
 * (where the controller would be) stand in for the controller, or the controller confirms itself.
 */
export function labConfirmation(lab: LabState, host: LabHost, mode: LabConfirmation): Confirmation {
  if (typeof mode === 'function') return mode;
  if (mode === 'controller') return controllerConfirmation;
  const address = host.address.split('/')[0] as string;
  return async ({ deadline, signal }) => {
    while (Date.now() < deadline && !signal.aborted) {
      if (await reachableFromSwitch(lab, address, 3).catch(() => false)) return true;
      await sleep(500, undefined, { signal }).catch(() => undefined);
    }
    return false;
  };
}

/** The lab's VMs are taps (or veths) on the host's bridge: their VLAN is the OVS port's tag, as on plain OVS. */
export function labVmNics(lab: LabState, host: LabHost): VmNicBackend {
  return ovsPortVmNics(hostRunner(lab, host), async () =>
    (await vmsOn(lab, host.id)).map((v) => ({ vm: v.name, port: v.port })),
  );
}

/** A lab host as the linux steps see it: commands inside its namespace, files under its lab dir. */
export function labHostEnv(lab: LabState, host: LabHost, stateDir: string, confirm: LabConfirmation): HostEnv {
  const p = hostPaths(host);
  return {
    run: hostRunner(lab, host),
    paths: {
      interfaces: p.interfaces,
      backupDir: p.interfacesBackupDir,
      grub: p.grub,
      sriovRules: p.sriovRules,
      legacySriovRules: p.legacySriovRules,
      procCmdline: p.procCmdline,
      bootId: p.bootId,
      stateDir,
      ifupdown2: p.ifupdown2,
      kernelCmdline: p.kernelCmdline,
      sysIommu: p.sysIommu,
    },
    vfs: labVfControl(host),
    grubUpdate: [labUpdateGrubScript(lab), host.root],
    datapathType: 'netdev',
    confirm: labConfirmation(lab, host, confirm),
    runInVm: (vm) => vmRunner(labVm(lab, vm)),
    vmNics: async () => labVmNics(lab, host),
    afterBridgeSwitch: async () => {
      const links = await hostLinks(lab, host);
      await fixBridgeMac(lab, host, links);
      const bridge = await runningBridge(lab, host, links);
      for (const vm of await vmsOn(lab, host.id)) await attachVmPort(lab, host, vm.port, bridge);
      await announceHost(lab, host);
    },
  };
}
