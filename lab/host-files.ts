import { existsSync } from 'node:fs';
import {
  access,
  chmod,
  constants,
  copyFile,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { hostPaths, LAB_NIC_PCI, uplinkNics } from '../activities/host/lab/layout.js';
import type { LabHost, LabState } from '../activities/host/lab/state.js';
import { RefitError } from '../schemas/errors.js';
import { PROXMOX_BOOT_TOOL, pveStandinWrapper } from './scripts.js';
import { confPath, LAB_NODE_MEMORY, labMeminfo, labVmConfig, pveDir } from './pve-standin.js';
import { GUEST_MEMORY_MB } from '../activities/host/lab/qemu.js';
import { repoRoot } from './host-package.js';
import { ifupdown2Unpacked } from './tools.js';

const HOOK_DIRS = ['if-pre-up.d', 'if-up.d', 'if-down.d', 'if-post-down.d'] as const;
/** The ifupdown hooks a lab host gets: Open vSwitch's (openvswitch-switch) and the Linux bridge's (bridge-utils). */
const HOOKS = new Set(['openvswitch', 'bridge']);

/**
 * /etc/network/interfaces as the Proxmox installer writes it: vmbr0 is a Linux bridge on the uplink. A
 * bonded host's file is the one of Proxmox VE's admin guide for a bonded bridge: vmbr0 on the Linux bond
 * bond0 (802.3ad, hashing by layer 3+4) over its two NICs. The lab's kernel has no bonding module, so
 * that bond never runs: the host boots unreachable until ovs-convert puts the bridge on an OVSBond.
 */
export function proxmoxInterfaces(lab: LabState, host: LabHost): string {
  const nics = uplinkNics(host).map((n) => `iface ${n.name} inet manual\n`);
  const bond = host.bond;
  return `auto lo
iface lo inet loopback

${nics.join('\n')}
${
  bond === undefined
    ? ''
    : `auto ${bond.name}
iface ${bond.name} inet manual
\tbond-slaves ${bond.members.map((m) => m.name).join(' ')}
\tbond-miimon 100
\tbond-mode 802.3ad
\tbond-xmit-hash-policy layer3+4

`
}auto vmbr0
iface vmbr0 inet static
\taddress ${host.address}
\tgateway ${lab.switch.address.split('/')[0]}
\tbridge-ports ${bond?.name ?? host.uplink}
\tbridge-stp off
\tbridge-fd 0

source /etc/network/interfaces.d/*
`;
}

/** Debian's /etc/default/grub as installed. */
export const DEBIAN_GRUB = `# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
# For full documentation of the options in this file, see:
#   info -f grub -n 'Simple configuration'

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=\`lsb_release -i -s 2> /dev/null || echo Debian\`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
`;

export class LabToolsMissingError extends RefitError {}

/**
 * A lab host's persistent files: its /etc (interfaces, grub, udev rules, ifupdown hooks), its OVS
 * database directory and its fake SR-IOV NIC. /etc/netns/<ns>/{network,default} point into <root>/etc,
 * which is how `ip netns exec` shows the host its own files over /etc.
 */
export async function writeHostFiles(lab: LabState, host: LabHost): Promise<void> {
  const p = hostPaths(host);
  const etc = path.join(host.root, 'etc');
  for (const dir of [
    ...HOOK_DIRS.map((d) => path.join(etc, 'network', d)),
    path.join(etc, 'network/interfaces.d'),
    path.join(etc, 'default'),
    path.join(etc, 'udev/rules.d'),
    p.run,
    path.dirname(p.ovsDb),
    path.dirname(p.cordoned),
    p.log,
    p.interfacesBackupDir,
    path.dirname(p.grubCfg),
    path.dirname(p.bootId),
    path.join(p.sys, 'class/net', host.nic, 'device'),
  ]) {
    await mkdir(dir, { recursive: true });
  }
  for (const dir of HOOK_DIRS) await copyHooks(path.join('/etc/network', dir), path.join(etc, 'network', dir));
  if (!existsSync(path.join(etc, 'network/if-pre-up.d/openvswitch'))) {
    throw new LabToolsMissingError(
      'the openvswitch-switch ifupdown hook (/etc/network/if-pre-up.d/openvswitch) is missing',
    );
  }
  if (!existsSync(path.join(etc, 'network/if-pre-up.d/bridge'))) {
    throw new LabToolsMissingError(
      'the bridge-utils ifupdown hook (/etc/network/if-pre-up.d/bridge) is missing: apt-get install bridge-utils',
    );
  }
  if (host.flavour === 'pve') {
    await installIfupdown2(host);
    await installBootTool(host);
    await installPveStandins(lab, host);
  }
  await writeFile(path.join(etc, 'network/interfaces'), proxmoxInterfaces(lab, host));
  await writeFile(path.join(etc, 'default/grub'), DEBIAN_GRUB);
  const device = path.join(p.sys, 'class/net', host.nic, 'device');
  if (host.totalVfs > 0) {
    await writeFile(path.join(device, 'sriov_totalvfs'), `${host.totalVfs}\n`);
    await writeFile(path.join(device, 'sriov_numvfs'), '0\n');
    // As a PCI device's uevent in sysfs: refit persists VFs by this address.
    await writeFile(path.join(device, 'uevent'), `DRIVER=igb\nPCI_SLOT_NAME=${LAB_NIC_PCI}\n`);
  }
  // Only network/ and default/ are shown to the host over /etc: `ip netns exec` binds every entry
  // of /etc/netns/<ns>, and a directory this machine lacks (udev/ here) would fail to bind.
  await rm(p.etc, { recursive: true, force: true });
  await mkdir(p.etc, { recursive: true });
  for (const dir of ['network', 'default']) await symlink(path.join(etc, dir), path.join(p.etc, dir));
}

/** The Proxmox VE commands refit runs that cannot be installed here: the lab's stand-ins (lab/pve-standin.ts). */
export const PVE_STANDINS = ['qm', 'pvesh', 'ha-manager'] as const;

/** The stand-ins' program: dist/lab/pve-standin-main.js of this checkout (built by `npm run build`). */
export function pveStandinMain(): string {
  const main = path.join(repoRoot(), 'dist/lab/pve-standin-main.js');
  if (!existsSync(main))
    throw new LabToolsMissingError(
      `${main} is missing (the pve lab hosts' qm, pvesh and ha-manager): run npm run build`,
    );
  return main;
}

/**
 * A `pve` host is a node of the lab's Proxmox cluster: qm, pvesh and ha-manager in <root>/sbin (first
 * on its PATH) run the stand-ins for this node, /etc/pve links to the cluster's configuration (the
 * lab's pmxcfs, shared by every pve host), and <root>/proc/meminfo says how much memory the node has.
 */
async function installPveStandins(lab: LabState, host: LabHost): Promise<void> {
  const p = hostPaths(host);
  const main = pveStandinMain();
  await mkdir(p.sbin, { recursive: true });
  for (const name of PVE_STANDINS) {
    const file = path.join(p.sbin, name);
    await writeFile(
      file,
      pveStandinWrapper({
        program: name,
        node: host.id,
        root: host.root,
        labDir: lab.labDir,
        main,
        nodeBin: process.execPath,
      }),
      { mode: 0o755 },
    );
    await chmod(file, 0o755);
  }
  await mkdir(path.join(pveDir(lab.labDir), 'nodes', host.id, 'qemu-server'), { recursive: true });
  await rm(path.join(host.root, 'etc/pve'), { recursive: true, force: true });
  await symlink(pveDir(lab.labDir), path.join(host.root, 'etc/pve'));
  await mkdir(path.dirname(labMeminfo(host)), { recursive: true });
  const kb = LAB_NODE_MEMORY / 1024;
  await writeFile(labMeminfo(host), `MemTotal:       ${kb} kB\nMemFree:        ${kb} kB\nMemAvailable:   ${kb} kB\n`);
}

/** Each VM of a pve host gets its configuration in the cluster's /etc/pve, as `qm create` leaves it. */
export async function writePveConfigs(lab: LabState): Promise<void> {
  const pve = new Set(lab.hosts.filter((h) => h.flavour === 'pve').map((h) => h.id));
  for (const vm of lab.vms.filter((v) => pve.has(v.home))) {
    const file = confPath(lab.labDir, vm.home, vm.vmid);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, labVmConfig(vm, GUEST_MEMORY_MB));
  }
}

/** The programs of ifupdown2; it runs as whichever its name says. */
const IFUPDOWN2_PROGRAMS = ['ifup', 'ifdown', 'ifreload', 'ifquery'] as const;

/**
 * A `pve` host's ifupdown2: <root>/usr/share/ifupdown2 links to the unpacked package (so the driver
 * finds it where Proxmox VE looks), <root>/sbin/{ifup,ifdown,ifreload,ifquery} link to its program and
 * come first on the host's PATH (lab/bin/host-exec), and its configuration keeps its state in the
 * host's own /run instead of the /var/tmp/network every lab host would share.
 */
/**
 * A `pve` host boots as Proxmox VE on ZFS with UEFI: systemd-boot, kept by proxmox-boot-tool (the lab's
 * stand-in) from /etc/kernel/cmdline onto one ESP.
 */
async function installBootTool(host: LabHost): Promise<void> {
  const p = hostPaths(host);
  await mkdir(path.dirname(p.kernelCmdline), { recursive: true });
  await writeFile(p.kernelCmdline, 'root=ZFS=rpool/ROOT/pve-1 boot=zfs\n');
  await writeFile(p.bootUuids, 'E014-501F\n');
  await mkdir(p.sbin, { recursive: true });
  await writeFile(path.join(p.sbin, 'proxmox-boot-tool'), PROXMOX_BOOT_TOOL, { mode: 0o755 });
  await chmod(path.join(p.sbin, 'proxmox-boot-tool'), 0o755);
}

async function installIfupdown2(host: LabHost): Promise<void> {
  const unpacked = ifupdown2Unpacked();
  const program = path.join(unpacked, 'usr/share/ifupdown2/__main__.py');
  if (
    !(await access(program, constants.X_OK).then(
      () => true,
      () => false,
    ))
  )
    throw new LabToolsMissingError(
      `ifupdown2 is not unpacked in ${unpacked} (pve lab hosts need it): run scripts/setup.sh as root`,
    );
  const p = hostPaths(host);
  await mkdir(path.dirname(p.ifupdown2), { recursive: true });
  await rm(p.ifupdown2, { force: true });
  await symlink(path.join(unpacked, 'usr/share/ifupdown2'), p.ifupdown2);
  await mkdir(p.sbin, { recursive: true });
  for (const name of IFUPDOWN2_PROGRAMS) {
    await rm(path.join(p.sbin, name), { force: true });
    await symlink(path.join(p.ifupdown2, 'ifupdown2'), path.join(p.sbin, name));
  }
  const conf = path.join(host.root, 'etc/network/ifupdown2');
  await mkdir(conf, { recursive: true });
  const packaged = path.join(unpacked, 'etc/network/ifupdown2');
  const main = await readFile(path.join(packaged, 'ifupdown2.conf'), 'utf8');
  await writeFile(
    path.join(conf, 'ifupdown2.conf'),
    main.replace(/^state_dir=.*$/m, 'state_dir=/run/network/ifupdown2/'),
  );
  await copyFile(path.join(packaged, 'addons.conf'), path.join(conf, 'addons.conf'));
}

async function copyHooks(from: string, to: string): Promise<void> {
  const names = existsSync(from) ? await readdir(from) : [];
  for (const name of names.filter((n) => HOOKS.has(n))) {
    const source = path.join(from, name);
    const target = path.join(to, name);
    await rm(target, { force: true });
    if ((await lstat(source)).isSymbolicLink()) await symlink(await readlink(source), target);
    else await copyFile(source, target);
  }
}
