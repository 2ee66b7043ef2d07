import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InterfaceName } from '../../../schemas/common.js';
import type { CommandRunner } from './command.js';
import type { VfControl } from './host-env.js';
import { ipLinksArgv, ipVfArgv, parseIpLinks } from './ip.js';
import { ifName } from './names.js';
import { isPciAddress, pciAddressFromUevent, sriovPaths } from './sriov.js';

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
    pciAddress: async (nic) =>
      pciAddressFromUevent(await readFile(sriovPaths(sysRoot, nic).uevent, 'utf8').catch(() => '')),
    nicAt: async (pci) => {
      if (!isPciAddress(pci)) return undefined;
      const names = await readdir(path.join(sysRoot, 'bus/pci/devices', pci, 'net')).catch(() => []);
      const name = names.find((n) => InterfaceName.safeParse(n).success);
      return name === undefined ? undefined : ifName(name);
    },
    vfStates: async (nic) => {
      const link = parseIpLinks((await run(ipLinksArgv(nic))).stdout)[0];
      return Object.fromEntries((link?.vfs ?? []).map(({ vf, ...state }) => [vf, state]));
    },
    setVf: async (nic, vf, settings) => {
      await run(ipVfArgv(nic, vf, settings));
    },
  };
}
