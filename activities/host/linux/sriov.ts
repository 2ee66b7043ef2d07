import path from 'node:path';
import type { VfSettings } from '../../../schemas/steps.js';
import { ifName, type IfName } from './names.js';

/** Where a NIC's SR-IOV controls live under a sysfs root (`/sys` on a real host, a fake tree in the lab). */
export function sriovPaths(
  sysRoot: string,
  nic: IfName,
): { device: string; totalVfs: string; numVfs: string; uevent: string } {
  const device = path.join(sysRoot, 'class/net', ifName(nic), 'device');
  return {
    device,
    totalVfs: path.join(device, 'sriov_totalvfs'),
    numVfs: path.join(device, 'sriov_numvfs'),
    uevent: path.join(device, 'uevent'),
  };
}

/**
 * The udev rules file refit owns; it makes the VF count and VF settings persistent across boots.
 * Ordered after 80-net-setup-link.rules, which names the NIC: `$name` in its RUN is the final name.
 */
export const SRIOV_RULES_FILE = '81-refit-sriov.rules';
/** Where refit before PCI matching wrote its rules (matched by interface name); removed when the new ones are written. */
export const LEGACY_SRIOV_RULES_FILE = '70-refit-sriov.rules';

const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;
/** A PCI address as sysfs names it (0000:03:00.0), safe in a path and a udev rule. */
export const isPciAddress = (text: string) => PCI_ADDRESS.test(text);

/** The PCI address (`PCI_SLOT_NAME=0000:03:00.0`) in a PCI device's sysfs `uevent`; undefined without one. */
export function pciAddressFromUevent(text: string): string | undefined {
  const slot = /^PCI_SLOT_NAME=(\S+)$/m.exec(text)?.[1]?.toLowerCase();
  return slot !== undefined && PCI_ADDRESS.test(slot) ? slot : undefined;
}

/** A VF as `ip -j link show <pf>` reports it (vfinfo_list). */
export interface VfState {
  vlan: number;
  mac: string | undefined;
  /** undefined where the driver does not report it. */
  spoofchk: boolean | undefined;
  trust: boolean | undefined;
}

export interface SriovBootConfig {
  /**
   * The NIC's PCI address: the rules match it (udev KERNELS==), not a name the NIC may not have yet
   * when it appears at boot. Absent in rules an older refit wrote, which matched `nic`.
   */
  pci?: string;
  /** The NIC's name when the rules were written. */
  nic: string;
  /** How many VFs: the step's `vfs`, checked by its schema. */
  numVfs: number;
  /** VF number → what is set on it at boot (`ip link set <nic> vf <n> ...`). */
  vfs: Record<number, VfSettings>;
}

const HEADER = '# Written by refit (sriov-enable): SR-IOV virtual functions created at every boot.\n';

/** `vlan 20 mac 52:54:00:12:34:56 spoofchk off trust on`: the words of `ip link set <pf> vf <n>` for these settings. */
export function vfSettingWords(settings: VfSettings): string[] {
  const onOff = (b: boolean) => (b ? 'on' : 'off');
  return [
    ...(settings.vlan !== undefined ? ['vlan', String(settings.vlan)] : []),
    ...(settings.mac !== undefined ? ['mac', settings.mac.toLowerCase()] : []),
    ...(settings.spoofchk !== undefined ? ['spoofchk', onOff(settings.spoofchk)] : []),
    ...(settings.trust !== undefined ? ['trust', onOff(settings.trust)] : []),
  ];
}

/**
 * The rules: when the NIC at the PCI address appears (whatever it is named then), set its
 * sriov_numvfs, then each VF's settings through its final name (`$name`).
 */
export function renderSriovRules(config: SriovBootConfig & { pci: string }, ipPath = '/usr/sbin/ip'): string {
  const pci = config.pci.toLowerCase();
  if (!PCI_ADDRESS.test(pci)) throw new Error(`not a PCI address: ${config.pci}`);
  const match = `ACTION=="add", SUBSYSTEM=="net", KERNELS=="${pci}"`;
  const lines = [
    `# The NIC (${ifName(config.nic)} when written) is matched by its PCI address: a new name does not lose its VFs.`,
    `${match}, ATTR{device/sriov_numvfs}="${config.numVfs}"`,
  ];
  for (const [vf, settings] of Object.entries(config.vfs)) {
    const words = vfSettingWords(settings);
    if (words.length > 0)
      lines.push(`${match}, RUN+="${ipPath} link set dev $name vf ${Number(vf)} ${words.join(' ')}"`);
  }
  return HEADER + lines.join('\n') + '\n';
}

/** Each of `vfs` VFs' settings from a sriov-enable's params: `vfVlan`, then `vfSettings.all`, then the VF's own. */
export function vfSettingsFor(params: {
  vfs: number;
  vfVlan?: number | undefined;
  vfSettings?: Record<string, VfSettings> | undefined;
}): Record<number, VfSettings> {
  const out: Record<number, VfSettings> = {};
  for (let vf = 0; vf < params.vfs; vf++) {
    const settings: VfSettings = {
      ...(params.vfVlan !== undefined ? { vlan: params.vfVlan } : {}),
      ...params.vfSettings?.all,
      ...params.vfSettings?.[String(vf)],
    };
    if (Object.keys(settings).length > 0) out[vf] = settings;
  }
  return out;
}

/** The rules sriov-enable writes for its params on the NIC at `pci`. */
export function sriovRulesFor(nic: string, pci: string, params: Parameters<typeof vfSettingsFor>[0]): string {
  return renderSriovRules({ nic, pci, numVfs: params.vfs, vfs: vfSettingsFor(params) });
}

/** Where a VF differs from what is wanted, one phrase each (`vf 2 vlan 0, 20 wanted`). */
export function vfMismatches(wanted: Record<number, VfSettings>, actual: Record<number, VfState>): string[] {
  const problems: string[] = [];
  for (const [key, want] of Object.entries(wanted)) {
    const vf = Number(key);
    const have = actual[vf];
    if (have === undefined) {
      problems.push(`vf ${vf} is missing`);
      continue;
    }
    if (want.vlan !== undefined && have.vlan !== want.vlan)
      problems.push(`vf ${vf} vlan ${have.vlan}, ${want.vlan} wanted`);
    if (want.mac !== undefined && have.mac?.toLowerCase() !== want.mac.toLowerCase())
      problems.push(`vf ${vf} mac ${have.mac ?? 'unknown'}, ${want.mac.toLowerCase()} wanted`);
    for (const flag of ['spoofchk', 'trust'] as const)
      if (want[flag] !== undefined && have[flag] !== want[flag])
        problems.push(`vf ${vf} ${flag} ${onOffOrUnknown(have[flag])}, ${onOffOrUnknown(want[flag])} wanted`);
  }
  return problems;
}

const onOffOrUnknown = (b: boolean | undefined) => (b === undefined ? 'unknown' : b ? 'on' : 'off');

const MATCH = String.raw`ACTION=="add", SUBSYSTEM=="net", (KERNELS?)=="([A-Za-z0-9_.:-]+)"`;
const NUMVFS_RULE = new RegExp(String.raw`^${MATCH}, ATTR\{device\/sriov_numvfs\}="(\d+)"$`);
const VF_RULE = new RegExp(String.raw`^${MATCH}, RUN\+="\S+ link set dev (\S+) vf (\d+) (.+)"$`);
const NIC_COMMENT = /^# The NIC \(([A-Za-z0-9_.-]+) when written\)/;

function parseVfWords(words: string[]): VfSettings | undefined {
  const settings: VfSettings = {};
  for (let i = 0; i < words.length; i += 2) {
    const [key, value] = [words[i], words[i + 1]];
    if (value === undefined) return undefined;
    if (key === 'vlan' && /^\d+$/.test(value)) settings.vlan = Number(value);
    else if (key === 'mac') settings.mac = value;
    else if ((key === 'spoofchk' || key === 'trust') && (value === 'on' || value === 'off'))
      settings[key] = value === 'on';
    else return undefined;
  }
  return settings;
}

/**
 * Read back what renderSriovRules wrote, or what an older refit wrote (matched by name, VLANs only);
 * undefined when the file holds no VF count.
 */
export function parseSriovRules(text: string): SriovBootConfig | undefined {
  let config: SriovBootConfig | undefined;
  let nicComment: string | undefined;
  for (const line of text.split('\n').map((l) => l.trim())) {
    nicComment ??= NIC_COMMENT.exec(line)?.[1];
    const count = NUMVFS_RULE.exec(line);
    if (count !== null) {
      const [, key, value, numVfs] = count as unknown as [string, string, string, string];
      config =
        key === 'KERNELS'
          ? { pci: value.toLowerCase(), nic: nicComment ?? value, numVfs: Number(numVfs), vfs: config?.vfs ?? {} }
          : { nic: value, numVfs: Number(numVfs), vfs: config?.vfs ?? {} };
      continue;
    }
    const vf = VF_RULE.exec(line);
    if (vf === null || config === undefined) continue;
    const [, key, value, dev, n, words] = vf as unknown as [string, string, string, string, string, string];
    const sameNic =
      key === 'KERNELS' ? config.pci === value.toLowerCase() && dev === '$name' : value === config.nic && dev === value;
    const settings = parseVfWords(words.split(/\s+/));
    if (sameNic && settings !== undefined) config.vfs[Number(n)] = { ...config.vfs[Number(n)], ...settings };
  }
  return config;
}
