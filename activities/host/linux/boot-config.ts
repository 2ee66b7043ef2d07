import { readdir } from 'node:fs/promises';
import { StepFailedError } from '../driver.js';
import { CommandFailedError } from './command.js';
import { readText, type HostEnv } from './host-env.js';

/**
 * Kernel options for SR-IOV, checked against the kernel's admin-guide/kernel-parameters: Intel's
 * IOMMU is off unless `intel_iommu=on`; AMD's is on by default (`amd_iommu=` takes off, force_isolation, force_enable,
 * ..., never `on`), so AMD needs only `iommu=pt`, the pass-through mode for the host's own devices.
 */
export const IOMMU_OPTIONS = { intel: ['intel_iommu=on', 'iommu=pt'], amd: ['iommu=pt'] } as const;
export type Iommu = keyof typeof IOMMU_OPTIONS;
/** What a revert takes off: the options above and `amd_iommu=on`, which refit wrote before it knew better. */
export const REMOVED_IOMMU_OPTIONS: ReadonlySet<string> = new Set(['intel_iommu=on', 'amd_iommu=on', 'iommu=pt']);

/**
 * Is the running kernel's IOMMU on? Judged from the kernel itself: every active IOMMU (Intel DMAR,
 * AMD-Vi) has an entry in /sys/class/iommu/; a kernel that enables it by default counts, whatever the
 * command line says.
 */
export async function iommuActive(dir = '/sys/class/iommu'): Promise<boolean> {
  const entries = await readdir(dir).catch(() => []);
  return entries.length > 0;
}

/** One EFI system partition in `proxmox-boot-tool status`: its VFAT UUID and the bootloaders it holds. */
export interface BootToolEsp {
  uuid: string;
  loaders: { kind: 'uefi' | 'grub'; versions: string[] }[];
}
export interface BootToolStatus {
  /** false: exit 2, no /etc/kernel/proxmox-boot-uuids (the node boots with plain GRUB). */
  managed: boolean;
  bootedWith: 'uefi' | 'legacy bios' | undefined;
  esps: BootToolEsp[];
  /** `WARN: ...` lines (an ESP that no longer exists, ...). */
  warnings: string[];
}

const ESP_LINE = /^([0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}) is configured with: (.*)$/;
const LOADER = /(uefi|grub) \(versions: ([^)]*)\)/g;

/**
 * Parse `proxmox-boot-tool status` (proxmox-kernel-helper): exit 2 when no ESP is configured, else
 * `System currently booted with uefi|legacy bios` and one `<UUID> is configured with: uefi (versions: a, b)[, grub (versions: ...)]`
 * line per ESP, after a `Re-executing ... in new private mount namespace..` line.
 */
export function parseBootToolStatus(stdout: string, exitCode: number): BootToolStatus {
  if (exitCode === 2) return { managed: false, bootedWith: undefined, esps: [], warnings: [] };
  const status: BootToolStatus = { managed: true, bootedWith: undefined, esps: [], warnings: [] };
  for (const raw of stdout.split('\n')) {
    const line = raw.trim();
    const booted = /^System currently booted with (uefi|legacy bios)$/.exec(line);
    if (booted !== null) status.bootedWith = booted[1] as 'uefi' | 'legacy bios';
    if (line.startsWith('WARN:')) status.warnings.push(line);
    const esp = ESP_LINE.exec(line);
    if (esp === null) continue;
    const loaders = [...(esp[2] as string).matchAll(LOADER)].map((m) => ({
      kind: m[1] as 'uefi' | 'grub',
      versions: (m[2] as string)
        .split(',')
        .map((v) => v.trim())
        .filter((v) => v !== ''),
    }));
    status.esps.push({ uuid: esp[1] as string, loaders });
  }
  return status;
}

/**
 * Where the kernel command line is kept. `grub`: /etc/default/grub and update-grub (also on nodes whose
 * ESPs proxmox-boot-tool keeps with GRUB: update-grub runs its hook). `systemd-boot`: /etc/kernel/cmdline
 * and `proxmox-boot-tool refresh` (Proxmox VE on ZFS with UEFI).
 */
export type Bootloader = { kind: 'grub' } | { kind: 'systemd-boot'; status: BootToolStatus };

/**
 * systemd-boot when /etc/kernel/cmdline exists and `proxmox-boot-tool status` lists an ESP configured
 * with `uefi`; GRUB otherwise. With /etc/kernel/cmdline present, a status that cannot be read is an
 * error: guessing GRUB there would write a change the node never boots with.
 */
export async function detectBootloader(env: Pick<HostEnv, 'run' | 'paths'>): Promise<Bootloader> {
  if ((await readText(env.paths.kernelCmdline ?? '/etc/kernel/cmdline')) === undefined) return { kind: 'grub' };
  let result;
  try {
    result = await env.run(['proxmox-boot-tool', 'status'], { okExitCodes: [2], timeoutMs: 60_000 });
  } catch (err) {
    const reason = err instanceof CommandFailedError ? err.message : String(err);
    throw new StepFailedError(
      `cannot tell how this host boots: /etc/kernel/cmdline exists but proxmox-boot-tool status failed: ${reason}`,
      { cause: err },
    );
  }
  const status = parseBootToolStatus(result.stdout, result.exitCode);
  return status.esps.some((e) => e.loaders.some((l) => l.kind === 'uefi'))
    ? { kind: 'systemd-boot', status }
    : { kind: 'grub' };
}

export interface CmdlinePlan {
  changed: boolean;
  text: string;
  before: string;
  after: string;
}

/** /etc/kernel/cmdline is one line of options; edit its words, keep the file's trailing newline. */
function editCmdline(text: string, edit: (words: string[]) => string[]): CmdlinePlan {
  const before = text.split('\n')[0]?.trim() ?? '';
  const words = before.split(/\s+/).filter((w) => w !== '');
  const after = edit(words).join(' ');
  if (after === words.join(' ')) return { changed: false, text, before, after: before };
  return { changed: true, text: `${after}\n`, before, after };
}

export const planCmdlineIommu = (text: string, iommu: Iommu): CmdlinePlan =>
  editCmdline(text, (words) => [...words, ...IOMMU_OPTIONS[iommu].filter((o) => !words.includes(o))]);

export const planCmdlineIommuRemoval = (text: string): CmdlinePlan =>
  editCmdline(text, (words) => words.filter((w) => !REMOVED_IOMMU_OPTIONS.has(w)));
