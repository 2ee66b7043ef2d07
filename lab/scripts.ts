import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { hostExecScript, labUpdateGrubScript } from '../activities/host/lab/exec.js';
import { labBinDir } from '../activities/host/lab/layout.js';
import type { LabState } from '../activities/host/lab/state.js';

// `ip netns exec` gives each command a mount namespace of its own (slave to ours), so the bind
// mount below is seen by this command and its children only, and disappears with them.
const HOST_EXEC = `#!/bin/sh
# refit lab: run "$@" inside lab host <root>, with the host's own /run (and a pve host's own
# ifupdown2 first on its PATH: <root>/sbin/ifup, ifreload, ... link to it).
set -eu
root="$1"
shift
mount --bind "$root/run" /run
if [ -d "$root/sbin" ]; then PATH="$root/sbin:$PATH"; export PATH; fi
exec "$@"
`;

// Stands in for update-grub on a lab host: generates <root>/boot/grub/grub.cfg from the host's
// /etc/default/grub, which the lab's boot reads the kernel command line from.
const UPDATE_GRUB = `#!/bin/sh
# refit lab: update-grub for lab host <root>.
set -eu
root="$1"
GRUB_CMDLINE_LINUX=""
GRUB_CMDLINE_LINUX_DEFAULT=""
. /etc/default/grub
mkdir -p "$root/boot/grub"
printf 'linux /boot/vmlinuz-lab root=/dev/vda1 ro %s %s\\n' "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT" >"$root/boot/grub/grub.cfg.new"
mv "$root/boot/grub/grub.cfg.new" "$root/boot/grub/grub.cfg"
echo "Generating grub configuration file ... done" >&2
`;

/**
 * Stands in for Proxmox VE's proxmox-boot-tool on a `pve` lab host (systemd-boot on its ESPs), for
 * the two commands refit runs, with their documented output: `status` (exit 2 and an E: line without
 * /etc/kernel/proxmox-boot-uuids) and `refresh`, which writes the loader entry the lab boots from with
 * /etc/kernel/cmdline as its options and logs that it ran. It lives in <root>/sbin, which host-exec
 * puts first on the host's PATH; it finds the host's files from there.
 */
export const PROXMOX_BOOT_TOOL = `#!/bin/sh
# refit lab: stand-in for proxmox-boot-tool (status, refresh) on one pve lab host.
set -eu
root="$(dirname "$(dirname "$(readlink -f "$0")")")"
uuids="$root/etc/kernel/proxmox-boot-uuids"
version=6.8.12-4-pve
case "\${1:-}" in
status)
  if [ ! -e "$uuids" ]; then
    echo "E: /etc/kernel/proxmox-boot-uuids does not exist." >&2
    exit 2
  fi
  echo "Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace.."
  echo "System currently booted with uefi"
  while read -r uuid; do
    [ -n "$uuid" ] && echo "$uuid is configured with: uefi (versions: $version)"
  done <"$uuids"
  ;;
refresh)
  echo "Running hook script 'proxmox-auto-removal'.."
  echo "Running hook script 'zz-proxmox-boot'.."
  echo "Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace.."
  while read -r uuid; do
    [ -n "$uuid" ] || continue
    echo "Copying and configuring kernels on /dev/disk/by-uuid/$uuid"
    printf '\tCopying kernel and creating boot-entry for %s\n' "$version"
  done <"$uuids"
  entries="$root/boot/efi/loader/entries"
  mkdir -p "$entries"
  {
    echo "title    Proxmox Virtual Environment"
    echo "version  $version"
    echo "options  $(head -n1 "$root/etc/kernel/cmdline")"
    echo "linux    /EFI/proxmox/$version/vmlinuz-$version"
    echo "initrd   /EFI/proxmox/$version/initrd.img-$version"
  } >"$entries/proxmox-$version.conf.new"
  mv "$entries/proxmox-$version.conf.new" "$entries/proxmox-$version.conf"
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) refresh" >>"$root/var/log/proxmox-boot-tool.log"
  ;;
*)
  echo "refit lab: this proxmox-boot-tool stand-in knows only status and refresh" >&2
  exit 1
  ;;
esac
`;

/**
 * qm, pvesh or ha-manager on a `pve` lab host: runs lab/pve-standin-main.js for this node. Under
 * host-exec the host's own /run hides the lab's network namespaces the stand-in migrates through;
 * in a private mount namespace of its own it takes that mount off again.
 */
export function pveStandinWrapper(o: {
  program: string;
  node: string;
  root: string;
  labDir: string;
  main: string;
  nodeBin: string;
}): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return `#!/bin/sh
# refit lab: stand-in for Proxmox VE's ${o.program} on the pve lab host ${o.node} (lab/pve-standin.ts).
root=${q(o.root)}
exec unshare --mount --propagation private sh -c '
if [ "$(stat -c %d:%i /run)" = "$(stat -c %d:%i "$0/run")" ]; then umount -l /run; fi
exec "$@"' "$root" ${q(o.nodeBin)} ${q(o.main)} ${q(o.labDir)} ${q(o.node)} ${o.program} "$@"
`;
}

export async function writeLabScripts(lab: LabState): Promise<void> {
  await mkdir(labBinDir(lab.labDir), { recursive: true });
  for (const [file, text] of [
    [hostExecScript(lab), HOST_EXEC],
    [labUpdateGrubScript(lab), UPDATE_GRUB],
  ] as const) {
    await writeFile(file, text, { mode: 0o755 });
    await chmod(file, 0o755);
  }
}
