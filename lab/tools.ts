import { existsSync } from 'node:fs';
import path from 'node:path';
import type { LabGuestImage } from '../activities/host/lab/state.js';
import { toolCacheDir } from '../workers/dev/tools.js';

/**
 * Debian's ifupdown2 for the lab's `pve` hosts, unpacked by scripts/setup.sh (`apt-get download`,
 * `dpkg -x`) into the tool cache: it conflicts with ifupdown as a package, so it is never installed.
 */
export function ifupdown2Unpacked(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(toolCacheDir(env), 'ifupdown2');
}

/** Programs the lab runs, and where Debian installs them. */
const TOOLS = [
  'ip',
  'ifup',
  'ifdown',
  'hping3',
  'nstat',
  'ping',
  'ovsdb-server',
  'ovs-vswitchd',
  'ovs-vsctl',
  'ovsdb-tool',
  'brctl',
  'mount',
  'tc',
  'ethtool',
];
const HOOKS = ['/etc/network/if-pre-up.d/openvswitch', '/etc/network/if-pre-up.d/bridge'];

function onPath(tool: string): boolean {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  return dirs.some((d) => d !== '' && existsSync(path.join(d, tool)));
}

/** Why the lab cannot run here, or an empty list: root, the programs, the ifupdown hooks of OVS and bridge-utils. */
export function labPrerequisitesMissing(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (the lab makes network namespaces)');
  for (const tool of TOOLS) if (!onPath(tool)) missing.push(tool);
  for (const hook of HOOKS) if (!existsSync(hook)) missing.push(hook);
  if (!existsSync('/usr/share/openvswitch/vswitch.ovsschema')) missing.push('/usr/share/openvswitch/vswitch.ovsschema');
  if (!existsSync('/dev/net/tun')) missing.push('/dev/net/tun');
  return missing;
}

/** The lab's QEMU guest, built by scripts/setup-guest.sh: a Debian kernel and a busybox initramfs. */
export function guestImage(env: NodeJS.ProcessEnv = process.env): LabGuestImage {
  const dir = path.join(toolCacheDir(env), 'guest');
  return { kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img') };
}

/** What the lab's QEMU VMs need and is not here (empty when they can run). */
export function qemuMissing(env: NodeJS.ProcessEnv = process.env): string[] {
  const missing: string[] = [];
  if (!onPath('qemu-system-x86_64')) missing.push('qemu-system-x86_64 (Debian: qemu-system-x86)');
  const guest = guestImage(env);
  for (const file of [guest.kernel, guest.initrd]) if (!existsSync(file)) missing.push(file);
  return missing;
}
