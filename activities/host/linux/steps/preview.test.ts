import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { STEP_PARAMS, type StepCall } from '../../../../schemas/steps.js';
import { captured, LINUX_BRIDGE_INTERFACES } from '../fixtures.js';
import type { HostEnv } from '../host-env.js';
import { previewLinuxSteps } from './preview.js';

const INTERFACES = LINUX_BRIDGE_INTERFACES;
const GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n';

/** A host whose files live in a temporary directory; every command it would run fails the test. */
function host(totalVfs: number | undefined = 8): { env: HostEnv; dir: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'refit-preview-'));
  const paths = {
    interfaces: path.join(dir, 'interfaces'),
    backupDir: path.join(dir, 'backups'),
    grub: path.join(dir, 'grub'),
    sriovRules: path.join(dir, '81-refit-sriov.rules'),
    procCmdline: path.join(dir, 'cmdline'),
    bootId: path.join(dir, 'boot_id'),
    stateDir: dir,
  };
  writeFileSync(paths.interfaces, INTERFACES);
  writeFileSync(paths.grub, GRUB);
  const never = () => Promise.reject(new Error('a preview changes nothing'));
  const env: HostEnv = {
    run: never,
    paths,
    vfs: {
      totalVfs: () => Promise.resolve(totalVfs),
      numVfs: () => Promise.resolve(0),
      setNumVfs: never,
      pciAddress: () => Promise.resolve('0000:03:00.0'),
      nicAt: never,
      vfStates: () => Promise.resolve({}),
      setVf: never,
    },
    grubUpdate: ['update-grub'],
    confirm: never,
  };
  return { env, dir };
}

const steps: StepCall[] = [
  { kind: 'drain', params: { destinations: {} } },
  { kind: 'ovs-convert', params: { bridge: 'vmbr0', hostVlan: 1, confirmWithin: 60_000 } },
  { kind: 'sriov-enable', params: { nic: 'ens6', vfs: 4, iommu: 'intel' } },
];

describe('a dry run on a linux host', () => {
  it("shows the interfaces file ovs-convert would write, and sriov-enable's grub, kernel command line and udev rules", async () => {
    const { env } = host();
    const [drain, ovs, sriov] = await previewLinuxSteps(env, steps, undefined);
    expect(drain?.files).toEqual([]);
    expect(ovs?.files[0]).toMatchObject({ path: env.paths.interfaces, changed: true });
    expect(ovs?.files[0]?.diff).toContain('-iface vmbr0 inet static');
    expect(ovs?.files[0]?.diff).toContain('+\tovs_type OVSBridge');
    expect(ovs?.error).toBeUndefined();
    expect(sriov?.files.map((f) => [path.basename(f.path), f.changed])).toEqual([
      ['grub', true],
      ['81-refit-sriov.rules', true],
    ]);
    expect(sriov?.files[0]?.diff).toContain('+GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"');
    expect(sriov?.changes).toEqual([
      { what: 'kernel command line', before: 'quiet', after: 'quiet intel_iommu=on iommu=pt' },
    ]);
  });

  it('changes nothing: the files are as they were', async () => {
    const { env } = host();
    await previewLinuxSteps(env, steps, undefined);
    expect(readFileSync(env.paths.interfaces, 'utf8')).toBe(INTERFACES);
    expect(readFileSync(env.paths.grub, 'utf8')).toBe(GRUB);
    expect(() => readFileSync(env.paths.sriovRules)).toThrow(/ENOENT/);
  });

  it('says which step would fail, and why', async () => {
    const { env } = host(2);
    writeFileSync(env.paths.interfaces, 'auto lo\niface lo inet loopback\n');
    const [, ovs, sriov] = await previewLinuxSteps(env, steps, undefined);
    expect(ovs?.error).toMatch(/no Linux bridge "vmbr0"/);
    expect(sriov?.error).toBe('ens6 supports at most 2 VFs; the plan asks for 4');
  });

  it('shows the stanza vxlan-tunnel would write, with the MTU its underlay leaves, and only reads', async () => {
    const { env } = host();
    const asked: string[] = [];
    env.run = (argv) => {
      asked.push(argv.join(' '));
      // An underlay of MTU 1450 (the captured link is itself a vxlan device).
      return Promise.resolve({ argv, stdout: captured('ip-j-d-link-vxlan.json'), stderr: '', exitCode: 0 });
    };
    const params = STEP_PARAMS['vxlan-tunnel'].parse({
      type: 'linux',
      name: 'vx200',
      vni: 200,
      remote: '10.77.0.12',
      underlay: 'vmbr0',
    });
    const [tunnel] = await previewLinuxSteps(env, [{ kind: 'vxlan-tunnel', params }], undefined);
    expect(asked).toEqual(['ip -j -d link show dev vmbr0']);
    expect(tunnel?.summary).toBe('vxlan device vx200: VNI 200 to 10.77.0.12, UDP 4789, MTU 1400');
    expect(tunnel?.files[0]?.diff).toContain(
      '+\tpre-up ip link add vx200 address c6:21:c1:f9:99:5d mtu 1400 type vxlan id 200 dstport 4789 remote 10.77.0.12 dev vmbr0',
    );
    expect(readFileSync(env.paths.interfaces, 'utf8')).toBe(INTERFACES);
  });

  it('shows ovs-bond on the file an earlier ovs-convert would leave, and a bond that cannot be converted', async () => {
    const { env } = host();
    const bonded = INTERFACES.replace(
      'iface ens6 inet manual\n',
      'iface ens6 inet manual\n\niface ens7 inet manual\n\nauto bond0\niface bond0 inet manual\n\tbond-slaves ens6 ens7\n\tbond-mode 802.3ad\n\tbond-xmit-hash-policy layer2+3\n',
    ).replace('bridge-ports ens6', 'bridge-ports bond0');
    writeFileSync(env.paths.interfaces, bonded);
    const bond = {
      kind: 'ovs-bond',
      params: { bridge: 'vmbr0', bond: 'bond0', mode: 'balance-tcp', settleWithin: 30_000 },
    } as const;
    const [convert, changed] = await previewLinuxSteps(env, [steps[1] as StepCall, bond], undefined);
    expect(convert?.files[0]?.diff).toContain(
      '+\tovs_options bond_mode=balance-slb lacp=active other_config:lacp-time=slow tag=1 vlan_mode=native-untagged',
    );
    expect(changed).toMatchObject({
      kind: 'ovs-bond',
      summary: expect.stringContaining('OVSBond options now bond_mode=balance-tcp'),
    });
    expect(changed?.files[0]?.diff).toContain(
      '+\tovs_options bond_mode=balance-tcp lacp=active other_config:lacp-time=slow tag=1 vlan_mode=native-untagged',
    );
    const [alone] = await previewLinuxSteps(env, [bond], undefined);
    expect(alone?.error).toMatch(/vmbr0 is not an OVSBridge in the file: ovs-convert/);
  });
});
