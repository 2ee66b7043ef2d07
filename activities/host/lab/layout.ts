import path from 'node:path';
import { LEGACY_SRIOV_RULES_FILE, SRIOV_RULES_FILE } from '../linux/sriov.js';
import type { LabFlavour, LabGuestImage, LabHost, LabState, LabVm, LabVmKind } from './state.js';

export const LAB_NETWORK = '10.77.0.0/16';
export const SWITCH_ADDRESS = '10.77.0.1';
export const DEFAULT_PREFIX = 'rf-';
/** Every lab host's uplink and SR-IOV NIC, as in examples/ovs-sriov.yaml. */
export const LAB_UPLINK = 'ens6';
/** A bonded lab host's bond (in its file) and its second NIC. */
export const LAB_BOND = 'bond0';
export const LAB_BOND_SECOND = 'ens7';
/**
 * The switch's Open vSwitch, in the switch namespace, holding the partner bond of every bonded host
 * (`bond-h<n>`, LACP) and a veth (`rfsw-ovs` ↔ `rfsw-lnx`) to the switch's Linux bridge.
 */
export const SWITCH_OVS_BRIDGE = 'rfswb';
/** As an Intel 82576 (the NIC of the SR-IOV seed, 001_f590dfafc891b798.txt): 7 VFs per port. */
export const LAB_TOTAL_VFS = 7;
/** The PCI address of every lab host's NIC (in its fake sysfs uevent): slot 6, as its name ens6 says. */
export const LAB_NIC_PCI = '0000:00:06.0';
export const MAX_HOSTS = 50;
export const MAX_VMS_PER_HOST = 20;

export interface LabShape {
  labDir: string;
  hosts: number;
  vmsPerHost: number;
  prefix?: string;
  /** Hosts whose NIC has no SR-IOV (sriov_totalvfs absent), for failure tests: host ids. */
  noSriov?: readonly string[];
  /** Hosts whose uplink is a bond of two NICs with LACP to the switch: h<n>, as `--bond` names them (with or without hostPrefix). */
  bonds?: readonly string[];
  /** Each host's flavour (by host id, h<n>); the rest get `flavour` (default `debian`). */
  flavours?: Readonly<Record<string, LabFlavour>>;
  flavour?: LabFlavour;
  /** Host ids are <hostPrefix>h<n> (namespaces stay <prefix>h<n>); for tests sharing one NATS. */
  hostPrefix?: string;
  /** `qemu` (real guests, booted from `guest`) or `netns` (namespace VMs; the default of planLab). */
  vmKind?: LabVmKind;
  guest?: LabGuestImage;
}

/**
 * Names and addresses of a lab, computed: switch 10.77.0.1, host n at 10.77.0.(10+n)/16, VM m of
 * host n is vm<100n+m> at 10.77.n.m/16. Everything stays inside 10.77.0.0/16 and inside the lab's namespaces.
 */
export function planLab(shape: LabShape, now = new Date()): LabState {
  const prefix = shape.prefix ?? DEFAULT_PREFIX;
  const hosts: LabHost[] = [];
  const vms: LabVm[] = [];
  for (let n = 1; n <= shape.hosts; n++) {
    const id = `${shape.hostPrefix ?? ''}h${n}`;
    hosts.push({
      id,
      index: n,
      ns: `${prefix}h${n}`,
      root: path.join(shape.labDir, 'hosts', `h${n}`),
      address: `10.77.0.${10 + n}/16`,
      uplink: LAB_UPLINK,
      switchPort: `rfs-h${n}`,
      nic: LAB_UPLINK,
      totalVfs: shape.noSriov?.includes(id) ? 0 : LAB_TOTAL_VFS,
      vmSlots: Math.max(4, shape.vmsPerHost * 3),
      flavour: shape.flavours?.[`h${n}`] ?? shape.flavour ?? 'debian',
      ...(shape.bonds?.includes(`h${n}`)
        ? {
            bond: {
              name: LAB_BOND,
              members: [
                { name: LAB_UPLINK, switchPort: `rfs-h${n}` },
                { name: LAB_BOND_SECOND, switchPort: `rfs-h${n}b` },
              ],
            },
          }
        : {}),
    });
    for (let m = 1; m <= shape.vmsPerHost; m++) {
      const vmid = 100 * n + m;
      const hex = (x: number) => x.toString(16).padStart(2, '0');
      vms.push({
        name: `vm${vmid}`,
        vmid,
        ns: `${prefix}vm${vmid}`,
        address: `10.77.${n}.${m}/16`,
        home: id,
        ...(shape.vmKind === 'qemu'
          ? { port: `tap${vmid}i0`, kind: 'qemu' as const, mac: `52:54:00:77:${hex(n)}:${hex(m)}` }
          : { port: `veth${vmid}i0`, kind: 'netns' as const }),
      });
    }
  }
  return {
    version: 1,
    labDir: shape.labDir,
    prefix,
    createdAt: now.toISOString(),
    network: LAB_NETWORK,
    switch: { ns: `${prefix}sw`, bridge: 'rfsw0', address: `${SWITCH_ADDRESS}/16` },
    hosts,
    vms,
    ...(shape.vmKind === 'qemu' && shape.guest !== undefined ? { guest: shape.guest } : {}),
  };
}

/** Where a lab host's files are, seen from outside the host (the root namespace). */
export function hostPaths(host: LabHost) {
  const etc = `/etc/netns/${host.ns}`;
  return {
    etc,
    interfaces: path.join(etc, 'network/interfaces'),
    interfacesBackupDir: path.join(host.root, 'var/backups/refit'),
    grub: path.join(etc, 'default/grub'),
    sriovRules: path.join(host.root, 'etc/udev/rules.d', SRIOV_RULES_FILE),
    legacySriovRules: path.join(host.root, 'etc/udev/rules.d', LEGACY_SRIOV_RULES_FILE),
    /** Bound over /run inside the host: wiped at every lab reboot. */
    run: path.join(host.root, 'run'),
    ovsRun: path.join(host.root, 'run/openvswitch'),
    ovsDb: path.join(host.root, 'var/lib/openvswitch/conf.db'),
    log: path.join(host.root, 'var/log'),
    /** A `pve` host's log of its qm, pvesh and ha-manager stand-ins (lab/pve-standin.ts). */
    pveStandinLog: path.join(host.root, 'var/log/pve-standin.log'),
    cordoned: path.join(host.root, 'var/lib/refit/cordoned'),
    sys: path.join(host.root, 'sys'),
    grubCfg: path.join(host.root, 'boot/grub/grub.cfg'),
    /** A `pve` host boots with systemd-boot: /etc/kernel/cmdline, the ESP list, and the entry refresh writes. */
    kernelCmdline: path.join(host.root, 'etc/kernel/cmdline'),
    bootUuids: path.join(host.root, 'etc/kernel/proxmox-boot-uuids'),
    loaderEntry: path.join(host.root, 'boot/efi/loader/entries/proxmox-6.8.12-4-pve.conf'),
    /** One entry per active IOMMU, as the kernel makes them at boot. */
    sysIommu: path.join(host.root, 'sys/class/iommu'),
    /** A `pve` host's ifupdown2 (a link to the unpacked package) and the links on its PATH that run it. */
    ifupdown2: path.join(host.root, 'usr/share/ifupdown2'),
    sbin: path.join(host.root, 'sbin'),
    procCmdline: path.join(host.root, 'proc/cmdline'),
    bootId: path.join(host.root, 'proc/sys/kernel/random/boot_id'),
    /** Its QEMU guests' QMP sockets, pid files and serial consoles (`<vmid>.qmp|pid|console.log`), kept across reboots. */
    qemuServer: path.join(host.root, 'qemu-server'),
    /** Present while the host is rebooting: its agent reports nothing then. */
    down: path.join(host.root, 'down'),
  };
}
export type HostPaths = ReturnType<typeof hostPaths>;

/** The switch's Open vSwitch: database, sockets, pid files and logs (OVS_RUNDIR for its commands). */
export const switchOvsDir = (labDir: string) => path.join(labDir, 'switch');

/** The NICs a host's uplink is made of: the bond's members, or the one uplink. */
export const uplinkNics = (host: LabHost): { name: string; switchPort: string }[] =>
  host.bond?.members ?? [{ name: host.uplink, switchPort: host.switchPort }];

export function labBinDir(labDir: string): string {
  return path.join(labDir, 'bin');
}
