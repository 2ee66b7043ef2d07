import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SriovEnableParams } from '../../../schemas/steps.js';
import type { CommandRunner } from './command.js';
import { quietCtx } from './fixtures.js';
import type { HostEnv } from './host-env.js';
import { ipVfArgv, parseIpLinks } from './ip.js';
import type { IfName } from './names.js';
import { pciAddressFromUevent, renderSriovRules, vfMismatches, vfSettingsFor } from './sriov.js';
import { applyVerify } from './steps/verify.js';
import { sysfsVfControl } from './vf-sysfs.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'refit-vf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * `ip -j link show dev <pf>` of a PF with VFs: the keys as iproute2's print_vfinfo (ip/ipaddress.c)
 * writes them in JSON (vf, link_type, address, broadcast, vlan_list, rate, spoofchk, link_state,
 * trust), the values those of a real PF's text output (`vf 1 link/ether 02:00:01:01:28:13 brd
 * ff:ff:ff:ff:ff:ff, vlan 128, spoof checking off, link-state auto, trust off`, canonical/lxd#14879).
 * No SR-IOV hardware here to capture it from.
 */
const PF_WITH_VFS = JSON.stringify([
  {
    ifindex: 4,
    ifname: 'enp3s0f0',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    mtu: 1500,
    operstate: 'UP',
    link_type: 'ether',
    address: 'b4:83:51:01:ea:c4',
    broadcast: 'ff:ff:ff:ff:ff:ff',
    num_vf: 3,
    vfinfo_list: [
      {
        vf: 0,
        link_type: 'ether',
        address: '02:00:01:01:28:13',
        broadcast: 'ff:ff:ff:ff:ff:ff',
        vlan_list: [{ vlan: 128 }],
        rate: { max_tx: 0, min_tx: 0 },
        spoofchk: false,
        link_state: 'auto',
        trust: false,
      },
      {
        vf: 1,
        link_type: 'ether',
        address: '0a:e0:f2:db:e7:26',
        broadcast: 'ff:ff:ff:ff:ff:ff',
        vlan_list: [{}],
        rate: { max_tx: 0, min_tx: 0 },
        spoofchk: true,
        link_state: 'auto',
        trust: false,
      },
      {
        vf: 2,
        link_type: 'ether',
        address: '00:00:00:00:00:00',
        broadcast: 'ff:ff:ff:ff:ff:ff',
        rate: { max_tx: 0, min_tx: 0 },
        spoofchk: true,
        link_state: 'auto',
        trust: true,
      },
    ],
  },
]);

const ctx = quietCtx();

describe('VF settings', () => {
  it("reads each VF's VLAN, MAC, spoof checking and trust from ip -j link show", () => {
    expect(parseIpLinks(PF_WITH_VFS)[0]?.vfs).toEqual([
      { vf: 0, mac: '02:00:01:01:28:13', vlan: 128, spoofchk: false, trust: false },
      { vf: 1, mac: '0a:e0:f2:db:e7:26', vlan: 0, spoofchk: true, trust: false },
      { vf: 2, mac: '00:00:00:00:00:00', vlan: 0, spoofchk: true, trust: true },
    ]);
  });

  it('takes settings for all VFs and for one, the one over all, and refuses what cannot be meant', () => {
    const params = SriovEnableParams.parse({
      nic: 'ens6',
      vfs: 3,
      vfVlan: 20,
      vfSettings: { all: { spoofchk: false }, 1: { mac: '52:54:00:00:00:11', trust: true, vlan: 30 } },
    });
    expect(vfSettingsFor(params)).toEqual({
      0: { vlan: 20, spoofchk: false },
      1: { vlan: 30, spoofchk: false, mac: '52:54:00:00:00:11', trust: true },
      2: { vlan: 20, spoofchk: false },
    });
    expect(vfSettingsFor({ vfs: 2 })).toEqual({});
    const problems = (vfSettings: unknown) =>
      SriovEnableParams.safeParse({ nic: 'ens6', vfs: 3, vfVlan: 20, vfSettings }).error?.issues.map(
        (i) => `${i.path.join('.')}: ${i.message}`,
      );
    expect(problems({ 0: { mac: '01:00:5e:00:00:01' } })).toEqual(['vfSettings.0.mac: must be a unicast MAC address']);
    expect(problems({ all: { mac: '52:54:00:00:00:11', vlan: 30 }, 3: { trust: true }, x: {} })?.sort()).toEqual([
      'vfSettings.3: there are VFs 0 to 2 only',
      'vfSettings.all.mac: one MAC address on every VF: give each VF its own under its number',
      'vfSettings.all.vlan: vfVlan says 20: give the VLAN of every VF once',
      'vfSettings.x: must be "all" or a VF number',
    ]);
  });

  it('sets them with one ip link command per VF, and names each difference', () => {
    expect(ipVfArgv('ens6' as IfName, 1, { vlan: 30, mac: '52:54:00:00:00:11', spoofchk: false, trust: true })).toEqual(
      [
        'ip',
        'link',
        'set',
        'dev',
        'ens6',
        'vf',
        '1',
        'vlan',
        '30',
        'mac',
        '52:54:00:00:00:11',
        'spoofchk',
        'off',
        'trust',
        'on',
      ],
    );
    const actual = Object.fromEntries((parseIpLinks(PF_WITH_VFS)[0]?.vfs ?? []).map(({ vf, ...s }) => [vf, s]));
    expect(
      vfMismatches(
        { 0: { vlan: 128, spoofchk: false }, 1: { mac: '0A:E0:F2:DB:E7:26', trust: true }, 5: { vlan: 1 } },
        actual,
      ),
    ).toEqual(['vf 1 trust off, on wanted', 'vf 5 is missing']);
  });
});

describe('VF persistence by PCI address', () => {
  it('reads the PCI address from the device uevent', () => {
    expect(
      pciAddressFromUevent('DRIVER=igb\nPCI_CLASS=20000\nPCI_SLOT_NAME=0000:03:00.0\nMODALIAS=pci:v00008086\n'),
    ).toBe('0000:03:00.0');
    expect(pciAddressFromUevent('PCI_SLOT_NAME=../../etc\n')).toBeUndefined();
  });

  it('verifies the VFs of the NIC at the persisted PCI address under the name it has after a rename', async () => {
    // sysfs after the reboot: the NIC at 0000:03:00.0, written as ens6, is enp3s0f0 now.
    const sys = path.join(dir, 'sys');
    const device = path.join(sys, 'bus/pci/devices/0000:03:00.0');
    mkdirSync(path.join(device, 'net/enp3s0f0'), { recursive: true });
    mkdirSync(path.join(sys, 'class/net/enp3s0f0'), { recursive: true });
    rmSync(path.join(sys, 'class/net/enp3s0f0/device'), { force: true, recursive: true });
    mkdirSync(path.join(sys, 'class/net/enp3s0f0/device'), { recursive: true });
    writeFileSync(path.join(sys, 'class/net/enp3s0f0/device/sriov_numvfs'), '3\n');
    mkdirSync(path.join(dir, 'iommu/dmar0'), { recursive: true });
    const asked: string[][] = [];
    const run: CommandRunner = async (argv) => {
      asked.push([...argv]);
      return { argv, stdout: PF_WITH_VFS, stderr: '', exitCode: 0 };
    };
    const rules = path.join(dir, '81-refit-sriov.rules');
    const env = {
      run,
      vfs: sysfsVfControl(run, sys),
      paths: { stateDir: dir, sriovRules: rules, sysIommu: path.join(dir, 'iommu') },
    } as unknown as HostEnv;
    const verify = () =>
      applyVerify(env, { targets: [], count: 1, maxLossPct: 1, maxRegression: 1.5, rttToleranceMs: 5 }, ctx, 'r');

    writeFileSync(
      rules,
      renderSriovRules({ nic: 'ens6', pci: '0000:03:00.0', numVfs: 3, vfs: { 0: { vlan: 128, spoofchk: false } } }),
    );
    await expect(verify()).resolves.toMatchObject({ after: { sriov: { nic: 'enp3s0f0', pci: '0000:03:00.0' } } });
    expect(asked).toContainEqual(['ip', '-j', '-d', 'link', 'show', 'dev', 'enp3s0f0']);

    writeFileSync(
      rules,
      renderSriovRules({
        nic: 'ens6',
        pci: '0000:03:00.0',
        numVfs: 3,
        vfs: { 2: { trust: false, mac: '52:54:00:00:00:12' } },
      }),
    );
    await expect(verify()).rejects.toThrow(
      'verify failed: enp3s0f0 vf 2 mac 00:00:00:00:00:00, 52:54:00:00:00:12 wanted; enp3s0f0 vf 2 trust on, off wanted',
    );
  });
});
