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
