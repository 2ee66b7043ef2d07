import { readFile, writeFile } from 'node:fs/promises';
import type { CommandRunner } from './command.js';
import type { VfControl } from './host-env.js';
import { ipLinksArgv, ipVfVlanArgv, parseIpLinks } from './ip.js';
import { sriovPaths } from './sriov.js';

/** SR-IOV on real hardware: sriov_totalvfs/sriov_numvfs in sysfs, VF settings with `ip link ... vf`. */
export function sysfsVfControl(run: CommandRunner, sysRoot = '/sys'): VfControl {
  const read = (file: string) =>
    readFile(file, 'utf8').then(
      (t) => Number(t.trim()),
      () => undefined,
    );
  return {
    totalVfs: (nic) => read(sriovPaths(sysRoot, nic).totalVfs),
    numVfs: async (nic) => (await read(sriovPaths(sysRoot, nic).numVfs)) ?? 0,
    setNumVfs: (nic, count) => writeFile(sriovPaths(sysRoot, nic).numVfs, `${count}\n`),
    vfVlans: async (nic) => {
      const link = parseIpLinks((await run(ipLinksArgv(nic))).stdout)[0];
      return Object.fromEntries((link?.vfs ?? []).map((v) => [v.vf, v.vlan]));
    },
    setVfVlan: async (nic, vf, vlan) => {
      await run(ipVfVlanArgv(nic, vf, vlan));
    },
  };
}
