import path from 'node:path';
import { ifName, type IfName } from './names.js';

/** Where a NIC's SR-IOV controls live under a sysfs root (`/sys` on a real host, a fake tree in the lab). */
export function sriovPaths(sysRoot: string, nic: IfName): { device: string; totalVfs: string; numVfs: string } {
  const device = path.join(sysRoot, 'class/net', ifName(nic), 'device');
  return { device, totalVfs: path.join(device, 'sriov_totalvfs'), numVfs: path.join(device, 'sriov_numvfs') };
}

/** The udev rules file refit owns; it makes the VF count (and VF settings) persistent across boots. */
export const SRIOV_RULES_FILE = '70-refit-sriov.rules';

export interface SriovBootConfig {
  nic: string;
  /** How many VFs: the step's `vfs`, checked by its schema. */
  numVfs: number;
  /** VF number → VLAN tag set on it at boot (`ip link set <nic> vf <n> vlan <tag>`). */
  vfVlans: Record<number, number>;
}

const HEADER = '# Written by refit (sriov-enable): SR-IOV virtual functions created at every boot.\n';

/** The rules: set sriov_numvfs when the NIC appears, then each VF's VLAN (`ip link set <nic> vf <n> vlan <tag>`). */
export function renderSriovRules(config: SriovBootConfig, ipPath = '/usr/sbin/ip'): string {
  const nic = ifName(config.nic);
  const match = `ACTION=="add", SUBSYSTEM=="net", KERNEL=="${nic}"`;
  const lines = [`${match}, ATTR{device/sriov_numvfs}="${config.numVfs}"`];
  for (const [vf, vlan] of Object.entries(config.vfVlans)) {
    lines.push(`${match}, RUN+="${ipPath} link set dev ${nic} vf ${Number(vf)} vlan ${Number(vlan)}"`);
  }
  return HEADER + lines.join('\n') + '\n';
}

/** The rules sriov-enable writes for its params: `vfs` VFs on `nic`, each tagged `vfVlan` if given. */
export function sriovRulesFor(nic: string, params: { vfs: number; vfVlan?: number | undefined }): string {
  return renderSriovRules({ nic, numVfs: params.vfs, vfVlans: vfVlanMap(params.vfs, params.vfVlan) });
}

/** VF number → VLAN tag for each of `vfs` VFs; none without a tag. */
export function vfVlanMap(vfs: number, vfVlan: number | undefined): Record<number, number> {
  return vfVlan === undefined ? {} : Object.fromEntries(Array.from({ length: vfs }, (_, vf) => [vf, vfVlan]));
}

const NUMVFS_RULE =
  /^ACTION=="add", SUBSYSTEM=="net", KERNEL=="([A-Za-z0-9_.-]+)", ATTR\{device\/sriov_numvfs\}="(\d+)"$/;
const VLAN_RULE =
  /^ACTION=="add", SUBSYSTEM=="net", KERNEL=="([A-Za-z0-9_.-]+)", RUN\+="\S+ link set dev \1 vf (\d+) vlan (\d+)"$/;

/** Read back what renderSriovRules wrote; undefined when the file holds no VF count. */
export function parseSriovRules(text: string): SriovBootConfig | undefined {
  let config: SriovBootConfig | undefined;
  for (const line of text.split('\n').map((l) => l.trim())) {
    const count = NUMVFS_RULE.exec(line);
    if (count !== null) config = { nic: count[1] as string, numVfs: Number(count[2]), vfVlans: config?.vfVlans ?? {} };
    const vlan = VLAN_RULE.exec(line);
    if (vlan !== null && config !== undefined && vlan[1] === config.nic)
      config.vfVlans[Number(vlan[2])] = Number(vlan[3]);
  }
  return config;
}
