import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parseBootToolStatus } from '../activities/host/linux/boot-config.js';
import { PROXMOX_BOOT_TOOL } from '../lab/scripts.js';

const run = promisify(execFile);

/**
 * The lab's stand-in for proxmox-boot-tool answers as the real one does: its status parses like the
 * documented output (boot-config.test.ts), and refresh writes the loader entry from /etc/kernel/cmdline.
 */
describe("the lab's proxmox-boot-tool stand-in", () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'refit-pbt-'));
  const tool = path.join(root, 'sbin/proxmox-boot-tool');
  mkdirSync(path.dirname(tool), { recursive: true });
  mkdirSync(path.join(root, 'etc/kernel'), { recursive: true });
  mkdirSync(path.join(root, 'var/log'), { recursive: true });
  writeFileSync(tool, PROXMOX_BOOT_TOOL);
  chmodSync(tool, 0o755);
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('says no ESP is configured as the real one does (exit 2, E: line) without the ESP list', async () => {
    const err = (await run(tool, ['status']).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(2);
    expect(err.stderr).toBe('E: /etc/kernel/proxmox-boot-uuids does not exist.\n');
  });

  it('reports its ESP as configured with uefi, and refresh puts /etc/kernel/cmdline into the boot entry', async () => {
    writeFileSync(path.join(root, 'etc/kernel/proxmox-boot-uuids'), 'E014-501F\n');
    writeFileSync(path.join(root, 'etc/kernel/cmdline'), 'root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on\n');
    const status = await run(tool, ['status']);
    expect(parseBootToolStatus(status.stdout, 0)).toEqual({
      managed: true,
      bootedWith: 'uefi',
      esps: [{ uuid: 'E014-501F', loaders: [{ kind: 'uefi', versions: ['6.8.12-4-pve'] }] }],
      warnings: [],
    });
    const refresh = await run(tool, ['refresh']);
    expect(refresh.stdout).toContain('Copying and configuring kernels on /dev/disk/by-uuid/E014-501F');
    const entry = readFileSync(path.join(root, 'boot/efi/loader/entries/proxmox-6.8.12-4-pve.conf'), 'utf8');
    expect(entry).toMatch(/^options {2}root=ZFS=rpool\/ROOT\/pve-1 boot=zfs intel_iommu=on$/m);
    expect(readFileSync(path.join(root, 'var/log/proxmox-boot-tool.log'), 'utf8')).toMatch(/refresh\n$/);
    await expect(run(tool, ['kernel', 'list'])).rejects.toMatchObject({ code: 1 });
  });
});
