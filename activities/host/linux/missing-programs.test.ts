import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prepareStep } from '../driver.js';
import { CommandFailedError, createExecaRunner, inStep } from './command.js';
import { createLinuxDriver } from './driver.js';
import { applyCommand, quietCtx } from './fixtures.js';

const stateDir = mkdtempSync(path.join(os.tmpdir(), 'refit-missing-'));
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

// The real programs, looked for on a PATH that holds none of them (an empty directory): execa gets
// ENOENT as it would on a host where the package is not installed.
const emptyDir = path.join(stateDir, 'bin');
let savedPath: string | undefined;
beforeEach(() => {
  savedPath = process.env.PATH;
  process.env.PATH = emptyDir;
});
afterEach(() => {
  process.env.PATH = savedPath;
});

describe('a program that is not installed', () => {
  it('is named with its host, the step that needs it and its package, where it exited with -1', async () => {
    const run = createExecaRunner([], { where: 'hv1' });
    const reload = inStep('ovs-convert', () => run(['ifreload', '-a']));
    await expect(reload).rejects.toThrow(
      'ifreload is not installed on hv1: ovs-convert needs it (Debian/Proxmox: apt install ifupdown2)',
    );
    // Still a failed command to the callers that look for one (observations, the audit trail).
    await expect(reload).rejects.toBeInstanceOf(CommandFailedError);
    await expect(inStep('sriov-enable', () => run(['proxmox-boot-tool', 'refresh']))).rejects.toThrow(
      'proxmox-boot-tool is not installed on hv1: sriov-enable needs it (Proxmox VE: apt install proxmox-kernel-helper)',
    );
    // Outside a step (the facts), and a program refit does not know the package of.
    await expect(createExecaRunner()(['ovs-vsctl', 'show'])).rejects.toThrow(
      'ovs-vsctl is not installed on this host (Debian/Proxmox: apt install openvswitch-switch)',
    );
    await expect(run(['refit-no-such-program'])).rejects.toThrow(
      /^refit-no-such-program is not installed on hv1 \(Debian\/Proxmox: apt-file search --regexp 'bin\/refit-no-such-program\$' finds its package\)$/,
    );
  });

  it('keeps the exit status and stderr of a program that ran and failed', async () => {
    process.env.PATH = savedPath;
    await expect(createExecaRunner()(['sh', '-c', 'echo bad >&2; exit 3'])).rejects.toThrow(
      /^sh -c echo bad >&2; exit 3 exited with 3: bad$/,
    );
  });

  it("fails a libvirt host's drain naming virsh, the host, the step and libvirt-clients", async () => {
    const driver = createLinuxDriver({ hostId: 'hv1', stateDir, vmBackend: 'libvirt' });
    await expect(driver.runStep(prepareStep(applyCommand('drain', { destinations: {} })), quietCtx())).rejects.toThrow(
      'virsh is not installed on hv1: drain needs it (Debian/Proxmox: apt install libvirt-clients)',
    );
  });

  it("fails a Proxmox node's drain naming pvesh and pve-manager", async () => {
    const driver = createLinuxDriver({ hostId: 'hv1', stateDir, vmBackend: 'proxmox', pveNode: 'pve1' });
    await expect(driver.runStep(prepareStep(applyCommand('drain', { destinations: {} })), quietCtx())).rejects.toThrow(
      'pvesh is not installed on hv1: drain needs it (Proxmox VE: apt install pve-manager)',
    );
  });
});
