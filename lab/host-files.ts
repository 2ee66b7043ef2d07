import { existsSync } from 'node:fs';
import { copyFile, lstat, mkdir, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { hostPaths } from '../activities/host/lab/layout.js';
import type { LabHost, LabState } from '../activities/host/lab/state.js';
import { RefitError } from '../schemas/errors.js';

const HOOK_DIRS = ['if-pre-up.d', 'if-up.d', 'if-down.d', 'if-post-down.d'] as const;
/** The ifupdown hooks a lab host gets: Open vSwitch's (openvswitch-switch) and the Linux bridge's (bridge-utils). */
const HOOKS = new Set(['openvswitch', 'bridge']);

/** /etc/network/interfaces as the Proxmox installer writes it: vmbr0 is a Linux bridge on the uplink. */
export function proxmoxInterfaces(lab: LabState, host: LabHost): string {
  return `auto lo
iface lo inet loopback

iface ${host.uplink} inet manual

auto vmbr0
iface vmbr0 inet static
\taddress ${host.address}
\tgateway ${lab.switch.address.split('/')[0]}
\tbridge-ports ${host.uplink}
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
  await writeFile(path.join(etc, 'network/interfaces'), proxmoxInterfaces(lab, host));
  await writeFile(path.join(etc, 'default/grub'), DEBIAN_GRUB);
  const device = path.join(p.sys, 'class/net', host.nic, 'device');
  if (host.totalVfs > 0) {
    await writeFile(path.join(device, 'sriov_totalvfs'), `${host.totalVfs}\n`);
    await writeFile(path.join(device, 'sriov_numvfs'), '0\n');
  }
  // Only network/ and default/ are shown to the host over /etc: `ip netns exec` binds every entry
  // of /etc/netns/<ns>, and a directory this machine lacks (udev/ here) would fail to bind.
  await rm(p.etc, { recursive: true, force: true });
  await mkdir(p.etc, { recursive: true });
  for (const dir of ['network', 'default']) await symlink(path.join(etc, dir), path.join(p.etc, dir));
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
