import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  detectBootloader,
  IOMMU_OPTIONS,
  iommuActive,
  parseBootToolStatus,
  planCmdlineIommu,
  planCmdlineIommuRemoval,
} from './boot-config.js';
import { CommandFailedError, type CommandRunner } from './command.js';
import type { HostPathsEnv } from './host-env.js';
import { planGrubIommu, planGrubIommuRemoval } from './grub.js';

/** `proxmox-boot-tool status` as documented on real nodes (PVE 8, ZFS on UEFI; an ESP of a dead disk). */
const UEFI = `Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace..
System currently booted with uefi
E014-501F is configured with: uefi (versions: 6.8.12-4-pve)
`;
const TWO_ESPS = `Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace..
System currently booted with uefi
WARN: /dev/disk/by-uuid/CE07-1118 does not exist - clean '/etc/kernel/proxmox-boot-uuids'! - skipping
6D31-87F4 is configured with: uefi (versions: 5.13.19-6-pve, 5.15.39-3-pve, 5.15.83-1-pve)
CE07-78FC is configured with: uefi (versions: 5.13.19-6-pve, 5.15.39-3-pve, 5.15.83-1-pve)
`;
/** A node on ZFS booting in legacy BIOS mode: proxmox-boot-tool keeps its ESPs with GRUB. */
const GRUB_ESP = `System currently booted with legacy bios
7C1A-8C43 is configured with: grub (versions: 6.2.16-3-pve, 6.5.11-4-pve)
`;

const tmp = mkdtempSync(path.join(os.tmpdir(), 'refit-boot-config-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('proxmox-boot-tool status', () => {
  it('reads the ESPs and their bootloaders from documented output', () => {
    expect(parseBootToolStatus(UEFI, 0)).toEqual({
      managed: true,
      bootedWith: 'uefi',
      esps: [{ uuid: 'E014-501F', loaders: [{ kind: 'uefi', versions: ['6.8.12-4-pve'] }] }],
      warnings: [],
    });
    const two = parseBootToolStatus(TWO_ESPS, 0);
    expect(two.esps.map((e) => e.uuid)).toEqual(['6D31-87F4', 'CE07-78FC']);
    expect(two.esps[0]?.loaders[0]?.versions).toEqual(['5.13.19-6-pve', '5.15.39-3-pve', '5.15.83-1-pve']);
    expect(two.warnings).toHaveLength(1);
    expect(parseBootToolStatus(GRUB_ESP, 0)).toMatchObject({
      bootedWith: 'legacy bios',
      esps: [{ uuid: '7C1A-8C43', loaders: [{ kind: 'grub' }] }],
    });
    expect(parseBootToolStatus('', 2)).toMatchObject({ managed: false, esps: [] });
  });
});

describe('the bootloader of a host', () => {
  const paths = (cmdline: boolean): HostPathsEnv => {
    const dir = mkdtempSync(path.join(tmp, 'host-'));
    if (cmdline) writeFileSync(path.join(dir, 'cmdline'), 'root=ZFS=rpool/ROOT/pve-1 boot=zfs\n');
    return { kernelCmdline: path.join(dir, 'cmdline') } as HostPathsEnv;
  };
  const answering =
    (stdout: string, exitCode = 0): CommandRunner =>
    async (argv) => ({ argv: [...argv], stdout, stderr: '', exitCode });

  it('is systemd-boot only with /etc/kernel/cmdline and an ESP configured with uefi', async () => {
    expect(await detectBootloader({ paths: paths(true), run: answering(UEFI) })).toMatchObject({
      kind: 'systemd-boot',
    });
    expect(await detectBootloader({ paths: paths(true), run: answering(GRUB_ESP) })).toEqual({ kind: 'grub' });
    expect(await detectBootloader({ paths: paths(true), run: answering('', 2) })).toEqual({ kind: 'grub' });
    const never: CommandRunner = async () => {
      throw new Error('no command should run without /etc/kernel/cmdline');
    };
    expect(await detectBootloader({ paths: paths(false), run: never })).toEqual({ kind: 'grub' });
  });

  it('refuses to guess when /etc/kernel/cmdline exists but the status cannot be read', async () => {
    const failing: CommandRunner = async (argv) => {
      throw new CommandFailedError({ argv: [...argv], stdout: '', stderr: 'not found', exitCode: 127 });
    };
    await expect(detectBootloader({ paths: paths(true), run: failing })).rejects.toThrow(
      /cannot tell how this host boots.*proxmox-boot-tool status failed/,
    );
  });
});

describe('IOMMU options', () => {
  it('writes only values the kernel takes: intel_iommu=on for Intel, nothing but iommu=pt for AMD', () => {
    expect(IOMMU_OPTIONS.amd).toEqual(['iommu=pt']);
    expect(planCmdlineIommu('root=ZFS=rpool/ROOT/pve-1 boot=zfs\n', 'intel')).toMatchObject({
      changed: true,
      text: 'root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt\n',
    });
    expect(planCmdlineIommu('root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n', 'amd').changed).toBe(false);
    expect(planGrubIommu('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'amd').after).toBe('quiet iommu=pt');
  });

  it('takes off what it wrote, and the amd_iommu=on older refit wrote', () => {
    expect(planCmdlineIommuRemoval('root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt\n')).toMatchObject({
      changed: true,
      text: 'root=ZFS=rpool/ROOT/pve-1 boot=zfs\n',
    });
    expect(planGrubIommuRemoval('GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"\n').after).toBe('quiet');
  });

  it('is on when the kernel lists an IOMMU in /sys/class/iommu, whatever the command line says', async () => {
    const sys = path.join(tmp, 'iommu');
    expect(await iommuActive(sys)).toBe(false);
    mkdirSync(sys);
    expect(await iommuActive(sys)).toBe(false);
    mkdirSync(path.join(sys, 'ivhd0'));
    expect(await iommuActive(sys)).toBe(true);
  });
});
