import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepareStep } from '../../activities/host/driver.js';
import { parseOvsShow, ovsShowArgv } from '../../activities/host/linux/ovs-vsctl.js';
import { hostRunner } from '../../activities/host/lab/exec.js';
import { hostPaths } from '../../activities/host/lab/layout.js';
import { reachableFromSwitch } from '../../activities/host/lab/attach.js';
import type { StepKind } from '../../schemas/steps.js';
import { directSteps, labSkipReason, testLabDir, useLabDrivers } from './lab-env.js';

const skip = labSkipReason();
const { labDir, prefix } = testLabDir('p');
const { command, ctx, notes, log } = directSteps('lab-pve');
/** The commands a step ran on the host, without the lab's `ip netns exec <ns> host-exec <root>` prefix. */
const commands = () =>
  notes.flatMap((n) => (n.type === 'step.command' ? [n.argv.slice(6).join(' ')] : [])).filter((c) => c !== '');

/**
 * A mixed lab: h1 is a `pve` host (Debian's real ifupdown2, `ifreload -a`), h2 a `debian` host (classic
 * ifupdown, `ifup`). ovs-convert writes each the file its ifupdown brings up, and reverts with it.
 */
describe.skipIf(skip !== '')(
  `ovs-convert by ifupdown flavour (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`,
  () => {
    // Namespace VMs, not QEMU guests: this test is about ifupdown2 and systemd-boot, and stays fast.
    const { lab, host, driver } = useLabDrivers(
      { labDir, hosts: 2, vmsPerHost: 1, prefix, flavours: { h1: 'pve' }, vmKind: 'netns' },
      log,
    );
    const reachable = (id: string) => reachableFromSwitch(lab(), host(id).address.split('/')[0] as string);
    const run = (id: string, kind: StepKind, params: Record<string, unknown>, mode: 'apply' | 'revert' = 'apply') => {
      notes.length = 0;
      return driver(id).runStep(prepareStep(command(id, kind, params, mode)), ctx());
    };
    const ovsPorts = async (id: string) =>
      parseOvsShow((await hostRunner(lab(), host(id))(ovsShowArgv())).stdout)
        .bridges.find((b) => b.name === 'vmbr0')
        ?.ports.map((p) => p.name)
        .sort();

    it('boots the pve host with ifupdown2 and the debian host with classic ifupdown', async () => {
      expect(lab().hosts.map((h) => h.flavour)).toEqual(['pve', 'debian']);
      const ifup = async (id: string) =>
        (await hostRunner(lab(), host(id))(['sh', '-c', 'command -v ifup'])).stdout.trim();
      expect(await ifup('h1')).toBe(path.join(hostPaths(host('h1')).sbin, 'ifup'));
      expect(await ifup('h2')).toMatch(/^\/(usr\/)?sbin\/ifup$/);
      expect(await readFile(path.join(hostPaths(host('h1')).run, 'network/ifupdown2/ifstatenew'), 'utf8')).toBeTruthy();
      expect([await reachable('h1'), await reachable('h2')]).toEqual([true, true]);
    });

    it('pve: the OVS ports are marked auto and ifreload -a brings vmbr0 up on OVS with uplink and host port', async () => {
      const outcome = await run('h1', 'ovs-convert', { bridge: 'vmbr0', hostVlan: 1, confirmWithin: 20_000 });
      expect(commands()).toContain('ifreload -a');
      expect(commands()).not.toContain('ifup vmbr0');
      expect(outcome).toMatchObject({
        changed: true,
        after: { ifupdown: 'ifupdown2', bridge: { type: 'ovs', addresses: ['10.77.0.11/16'] } },
      });
      const file = await readFile(hostPaths(host('h1')).interfaces, 'utf8');
      expect(file).toContain('auto ens6\niface ens6 inet manual\n\tovs_bridge vmbr0\n');
      expect(file).toContain('auto vlan1\niface vlan1 inet static\n');
      expect(file).not.toContain('allow-');
      expect(await ovsPorts('h1')).toEqual(['ens6', 'veth101i0', 'vlan1', 'vmbr0']);
      expect(await reachable('h1')).toBe(true);
      expect(await reachableFromSwitch(lab(), '10.77.1.1')).toBe(true);
    });

    it('pve: sriov-enable edits /etc/kernel/cmdline and runs proxmox-boot-tool refresh, not GRUB', async () => {
      const grub = await readFile(hostPaths(host('h1')).grub, 'utf8');
      const outcome = await run('h1', 'sriov-enable', { nic: 'ens6', vfs: 7, iommu: 'intel', vfVlan: 0 });
      expect(commands()).toEqual(['proxmox-boot-tool status', 'proxmox-boot-tool refresh']);
      expect(outcome).toMatchObject({
        changed: true,
        rebootRequired: true,
        after: {
          bootloader: 'systemd-boot',
          kernelCmdline: 'root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt',
        },
      });
      expect(await readFile(hostPaths(host('h1')).loaderEntry, 'utf8')).toContain('intel_iommu=on iommu=pt\n');
      expect(await readFile(hostPaths(host('h1')).grub, 'utf8')).toBe(grub);
    });

    it('pve: after a reboot ifupdown2 brings the same OVS bridge up, and systemd-boot the IOMMU and the VFs', async () => {
      await driver('h1').reboot();
      expect(await ovsPorts('h1')).toEqual(['ens6', 'veth101i0', 'vlan1', 'vmbr0']);
      expect(await reachable('h1')).toBe(true);
      expect((await driver('h1').facts()).sriov).toMatchObject({ iommu: true, numVfs: 7 });
      expect(await readFile(hostPaths(host('h1')).procCmdline, 'utf8')).toContain('boot=zfs intel_iommu=on iommu=pt');
      const back = await run('h1', 'sriov-enable', { nic: 'ens6', vfs: 7 }, 'revert');
      expect(back).toMatchObject({ after: { bootloader: 'systemd-boot' } });
      expect(await readFile(hostPaths(host('h1')).kernelCmdline, 'utf8')).toBe('root=ZFS=rpool/ROOT/pve-1 boot=zfs\n');
    });

    it('pve: revert takes the OVS bridge down and ifreload -a brings the Linux bridge back', async () => {
      const outcome = await run('h1', 'ovs-convert', { bridge: 'vmbr0' }, 'revert');
      expect(commands()).toEqual(expect.arrayContaining(['ifdown --force vmbr0', 'ifreload -a']));
      expect(outcome).toMatchObject({
        changed: true,
        after: { bridge: { type: 'linux', ports: ['ens6', 'veth101i0'] } },
      });
      expect(await ovsPorts('h1')).toBeUndefined();
      expect(await reachable('h1')).toBe(true);
      expect(await reachableFromSwitch(lab(), '10.77.1.1')).toBe(true);
    });

    it('debian: allow-vmbr0 and ifup as before, and back', async () => {
      await run('h2', 'ovs-convert', { bridge: 'vmbr0', hostVlan: 1, confirmWithin: 20_000 });
      expect(commands()).toContain('ifup vmbr0');
      expect(await readFile(hostPaths(host('h2')).interfaces, 'utf8')).toContain('allow-vmbr0 ens6\n');
      expect(await ovsPorts('h2')).toEqual(['ens6', 'veth201i0', 'vlan1', 'vmbr0']);
      expect(await reachable('h2')).toBe(true);
      const back = await run('h2', 'ovs-convert', { bridge: 'vmbr0' }, 'revert');
      expect(back).toMatchObject({ after: { bridge: { type: 'linux' } } });
      expect(await reachable('h2')).toBe(true);
    });
  },
);
