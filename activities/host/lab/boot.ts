import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { iommuActive } from '../linux/boot-config.js';
import type { VfSettings } from '../../../schemas/steps.js';
import { parseSriovRules, pciAddressFromUevent, type VfState } from '../linux/sriov.js';
import { announceHost, attachVmPort, fixBridgeMac, hostLinks, runningBridge } from './attach.js';
import { hostRunner, rootRunner } from './exec.js';
import { hostPaths, uplinkNics } from './layout.js';
import { startOvs, stopOvs } from './ovs-daemons.js';
import { setGuestRunning } from './qemu.js';
import type { LabHost, LabState } from './state.js';

const BASE_CMDLINE = 'BOOT_IMAGE=/boot/vmlinuz-lab root=/dev/vda1 ro';

/**
 * Take a lab host down as a power cycle would: its Open vSwitch stops, every runtime network object
 * (bridges, OVS ports and taps, addresses, routes, ifupdown state, VFs) is gone. What is left: its
 * persistent files and its "hardware": the uplink (or the bond's NICs) and the veths of the VMs it hosts.
 */
export async function shutdownHost(lab: LabState, host: LabHost): Promise<void> {
  const p = hostPaths(host);
  await writeFile(p.down, `${new Date().toISOString()}\n`);
  const links = await hostLinks(lab, host);
  // QEMU guests still on the host are paused (QMP `stop`) while it is down and resumed at boot: a
  // rollout drains a host before its reboot; this keeps a lab reboot of a host with guests fast.
  for (const vm of guestsAmong(lab, links)) await setGuestRunning(host, vm, false);
  await stopOvs(host);
  const ns = ['ip', '-n', host.ns];
  const nics = new Set(uplinkNics(host).map((n) => n.name));
  const hardware = new Set([...nics, ...lab.vms.map((v) => v.port)]);
  for (const link of links) {
    if (link.name === 'lo') {
      await rootRunner([...ns, 'link', 'set', 'dev', 'lo', 'down']);
    } else if (hardware.has(link.name)) {
      if (link.master !== undefined) await rootRunner([...ns, 'link', 'set', 'dev', link.name, 'nomaster']);
      await rootRunner([...ns, 'link', 'set', 'dev', link.name, 'down']);
      await rootRunner([...ns, 'addr', 'flush', 'dev', link.name]);
      if (nics.has(link.name)) await resetUplink(host, link.name);
    } else {
      await rootRunner([...ns, 'link', 'delete', 'dev', link.name]).catch(() => undefined);
    }
  }
  await rm(p.run, { recursive: true, force: true });
  await mkdir(p.run, { recursive: true });
  await resetVfs(host);
}

/**
 * A power cycle resets a NIC to its driver's defaults: the uplink (a veth) gets the settings `ip link
 * add … type veth` gives one (captured: test/fixtures/captured/ethtool-*-veth.*), so that only what
 * the host persisted (nic-tuning) comes back at boot.
 */
async function resetUplink(host: LabHost, nic: string): Promise<void> {
  const exec = ['ip', 'netns', 'exec', host.ns];
  await rootRunner(['ip', '-n', host.ns, 'link', 'set', 'dev', nic, 'mtu', '1500', 'txqueuelen', '1000']);
  await rootRunner([...exec, 'ethtool', '-L', nic, 'rx', '1', 'tx', '1']);
  await rootRunner([...exec, 'ethtool', '-K', nic, 'rx', 'on', 'tx', 'on', 'tso', 'on', 'gso', 'on', 'gro', 'off']);
}

/**
 * Boot a lab host from what was persisted: a new boot id, the kernel command line that update-grub
 * generated, VFs only as the persisted udev rules say (and only with the IOMMU on), its Open vSwitch
 * on its persistent database, the network from /etc/network/interfaces with Debian's real `ifup -a`,
 * then its VMs plugged back in.
 */
export async function bootHost(lab: LabState, host: LabHost): Promise<{ bootId: string; cmdline: string }> {
  const p = hostPaths(host);
  const bootId = randomUUID();
  await mkdir(path.dirname(p.bootId), { recursive: true });
  await writeFile(p.bootId, `${bootId}\n`);
  const cmdline = await kernelCmdline(host);
  await writeFile(p.procCmdline, `${cmdline}\n`);
  await setIommu(host, labKernelIommu(cmdline));
  await applyPersistedVfs(host);
  await startOvs(lab, host);
  // As networking.service does before ifup: ifupdown2 takes its lock in /run/network and will not run without it.
  await mkdir(path.join(p.run, 'network'), { recursive: true });
  // A host whose network config is broken still boots; it is just not reachable, as on real hardware.
  const ifup = await hostRunner(lab, host)(['ifup', '-a']).catch((err: unknown) => ({ failed: String(err) }));
  const note =
    'failed' in ifup ? `ifup -a failed: ${ifup.failed}` : `ifup -a: ok${ifup.stderr ? `\n${ifup.stderr}` : ''}`;
  await writeFile(path.join(p.log, 'boot.log'), `${new Date().toISOString()} boot ${bootId}\n${cmdline}\n${note}\n`, {
    flag: 'a',
  });
  const links = await hostLinks(lab, host);
  await fixBridgeMac(lab, host, links);
  const bridge = await runningBridge(lab, host, links);
  const vmPorts = new Set(lab.vms.map((v) => v.port));
  for (const link of links.filter((l) => vmPorts.has(l.name))) await attachVmPort(lab, host, link.name, bridge);
  for (const vm of guestsAmong(lab, links)) await setGuestRunning(host, vm, true);
  await announceHost(lab, host);
  await rm(p.down, { force: true });
  return { bootId, cmdline };
}

/** The QEMU guests whose tap is among these links. */
const guestsAmong = (lab: LabState, links: { name: string }[]) =>
  lab.vms.filter((v) => v.kind === 'qemu' && links.some((l) => l.name === v.port));

export async function rebootHost(lab: LabState, host: LabHost): Promise<{ bootId: string; cmdline: string }> {
  await shutdownHost(lab, host);
  return bootHost(lab, host);
}

/**
 * The lab's hardware is Intel (the NIC of the seed is an Intel 82576) and its kernel Debian's, whose
 * Intel IOMMU is off unless the command line says `intel_iommu=on`.
 */
const labKernelIommu = (cmdline: string) => cmdline.split(/\s+/).includes('intel_iommu=on');

/** What the kernel makes at boot: /sys/class/iommu/dmar0 while the IOMMU is on, nothing otherwise. */
async function setIommu(host: LabHost, on: boolean): Promise<void> {
  const dir = hostPaths(host).sysIommu;
  await rm(dir, { recursive: true, force: true });
  await mkdir(on ? path.join(dir, 'dmar0') : dir, { recursive: true });
}

/**
 * The command line the host boots with: a `pve` host boots with systemd-boot, from the `options` of
 * the loader entry `proxmox-boot-tool refresh` wrote from /etc/kernel/cmdline; a `debian` host from
 * the `linux` line of the generated grub.cfg. Without either, the kernel boots with the base options.
 */
async function kernelCmdline(host: LabHost): Promise<string> {
  if (host.flavour === 'pve') {
    const entry = await readFile(hostPaths(host).loaderEntry, 'utf8').catch(() => '');
    const options = /^options\s+(.*)$/m.exec(entry)?.[1]?.trim() ?? 'root=ZFS=rpool/ROOT/pve-1 boot=zfs';
    return `initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img-6.8.12-4-pve ${options}`;
  }
  const cfg = await readFile(hostPaths(host).grubCfg, 'utf8').catch(() => '');
  const line = cfg.split('\n').find((l) => /^\s*linux\s/.test(l));
  const options = line
    ?.trim()
    .split(/\s+/)
    .slice(2)
    .filter((w) => !['root=/dev/vda1', 'ro'].includes(w)) ?? ['quiet'];
  return [BASE_CMDLINE, ...options].join(' ');
}

const deviceDir = (host: LabHost) => path.join(hostPaths(host).sys, 'class/net', host.nic, 'device');

async function resetVfs(host: LabHost): Promise<void> {
  const dir = deviceDir(host);
  if (!existsSync(path.join(dir, 'sriov_numvfs'))) return;
  await writeFile(path.join(dir, 'sriov_numvfs'), '0\n');
  for (const entry of await readdir(dir))
    if (/^virtfn\d+$/.test(entry)) await rm(path.join(dir, entry), { recursive: true, force: true });
}

/**
 * What the persisted udev rules do at boot on real hardware: when the NIC at the rules' PCI address
 * appears (only with the IOMMU on), create its VFs, then set each VF's settings. Rules an older refit
 * wrote match the NIC's name, which the lab's NIC has from the start.
 */
async function applyPersistedVfs(host: LabHost): Promise<void> {
  const p = hostPaths(host);
  const text = await readFile(p.sriovRules, 'utf8').catch(() => readFile(p.legacySriovRules, 'utf8').catch(() => ''));
  const rules = parseSriovRules(text);
  if (rules === undefined || !(await iommuActive(p.sysIommu))) return;
  const pci = pciAddressFromUevent(await readFile(path.join(deviceDir(host), 'uevent'), 'utf8').catch(() => ''));
  if (rules.pci !== undefined ? rules.pci !== pci : rules.nic !== host.nic) return;
  await setLabVfs(host, rules.numVfs, rules.vfs);
}

/** A fresh VF as an Intel 82576 reports it: no MAC yet, no VLAN, spoof checking on, not trusted. */
const NEW_VF: Required<VfSettings> = { vlan: 0, mac: '00:00:00:00:00:00', spoofchk: true, trust: false };

/** The fake NIC's VFs: sriov_numvfs and one virtfn<n>/ per VF holding its settings. Refuses more than sriov_totalvfs. */
export async function setLabVfs(
  host: LabHost,
  count: number,
  settings: Record<number, VfSettings> = {},
): Promise<void> {
  const dir = deviceDir(host);
  const total = Number((await readFile(path.join(dir, 'sriov_totalvfs'), 'utf8').catch(() => '0')).trim());
  if (count > total) throw new Error(`${host.nic}: ${count} VFs asked, sriov_totalvfs is ${total}`);
  await resetVfs(host);
  for (let vf = 0; vf < count; vf++) {
    await mkdir(path.join(dir, `virtfn${vf}`), { recursive: true });
    await writeLabVf(path.join(dir, `virtfn${vf}`), { ...NEW_VF, ...settings[vf] });
  }
  await writeFile(path.join(dir, 'sriov_numvfs'), `${count}\n`);
}

/** Set what `ip link set <pf> vf <n> ...` sets, in the VF's directory; what is left out stays. */
export async function writeLabVf(dir: string, settings: VfSettings): Promise<void> {
  if (!existsSync(dir)) throw new Error(`no such VF: ${path.basename(dir)}`);
  const onOff = (b: boolean) => (b ? 'on' : 'off');
  if (settings.vlan !== undefined) await writeFile(path.join(dir, 'vlan'), `${settings.vlan}\n`);
  if (settings.mac !== undefined) await writeFile(path.join(dir, 'mac'), `${settings.mac.toLowerCase()}\n`);
  if (settings.spoofchk !== undefined) await writeFile(path.join(dir, 'spoofchk'), `${onOff(settings.spoofchk)}\n`);
  if (settings.trust !== undefined) await writeFile(path.join(dir, 'trust'), `${onOff(settings.trust)}\n`);
}

/** A VF as `ip -j link show <pf>` would report it, from its directory. */
export async function readLabVf(dir: string): Promise<VfState> {
  const read = (file: string) =>
    readFile(path.join(dir, file), 'utf8').then(
      (t) => t.trim(),
      () => undefined,
    );
  const flag = (t: string | undefined) => (t === undefined ? undefined : t === 'on');
  return {
    vlan: Number((await read('vlan')) ?? 0),
    mac: await read('mac'),
    spoofchk: flag(await read('spoofchk')),
    trust: flag(await read('trust')),
  };
}
