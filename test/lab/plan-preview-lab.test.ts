import { readFile, stat } from 'node:fs/promises';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { hostPaths } from '../../activities/host/lab/layout.js';
import { STEP_PARAMS, type StepCall } from '../../schemas/steps.js';
import { labSkipReason, testLabDir, useLabDrivers } from './lab-env.js';

const skip = labSkipReason();
const { labDir, prefix } = testLabDir('p');
const log = pino({ level: 'silent' });

const call = (kind: StepCall['kind'], params: Record<string, unknown>) =>
  ({ kind, params: STEP_PARAMS[kind].parse(params) }) as StepCall;
const steps = [
  call('ovs-convert', { bridge: 'vmbr0', hostVlan: 1 }),
  call('sriov-enable', { nic: 'ens6', vfs: 4, iommu: 'intel' }),
];

describe.skipIf(skip !== '')(`a dry run on lab hosts (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`, () => {
  const { host, driver } = useLabDrivers(
    { labDir, hosts: 2, vmsPerHost: 0, prefix, noSriov: ['h2'], flavours: { h2: 'pve' } },
    log,
  );
  const files = (id: string) => {
    const p = hostPaths(host(id));
    return [p.interfaces, p.grub, p.sriovRules];
  };
  const snapshot = (id: string) =>
    Promise.all(
      files(id).map(async (f) => [
        f,
        await readFile(f, 'utf8').catch(() => null),
        (await stat(f).catch(() => null))?.mtimeMs,
      ]),
    );

  it("shows the host's own /etc/network/interfaces and GRUB diffs and kernel command line, changing nothing", async () => {
    const before = await snapshot('h1');
    const [interfaces, grub] = before.map(([, text]) => text as string) as [string, string];
    const [ovs, sriov] = await driver('h1').preview(steps);

    // ovs-convert: the diff is against the lab host's real file — every removed or kept line is in it.
    expect(ovs?.error).toBeUndefined();
    const ifFile = ovs?.files[0];
    expect(ifFile).toMatchObject({ path: files('h1')[0], changed: true });
    const lines = interfaces.split('\n');
    for (const d of ifFile?.diff ?? [])
      if (d.startsWith('-') || d.startsWith(' ')) expect(lines, d).toContain(d.slice(1));
    expect(ifFile?.diff).toContainEqual(expect.stringMatching(/^-\s*bridge[-_]ports /));
    expect(ifFile?.diff).toContainEqual(expect.stringMatching(/^\+\s*ovs_type OVSBridge$/));
    expect(ifFile?.diff).toContainEqual(expect.stringMatching(/^\+\s*ovs_type OVSIntPort$/));

    // sriov-enable: /etc/default/grub gains the IOMMU options, and so does the kernel command line.
    expect(sriov?.error).toBeUndefined();
    expect(sriov?.files[0]).toMatchObject({ path: files('h1')[1], changed: true });
    expect(sriov?.files[0]?.diff).toContainEqual(
      expect.stringMatching(/^\+GRUB_CMDLINE_LINUX_DEFAULT=".*intel_iommu=on iommu=pt"$/),
    );
    expect(grub).not.toContain('intel_iommu=on');
    const cmdline = sriov?.changes.find((c) => c.what === 'kernel command line');
    expect(cmdline?.before).not.toContain('intel_iommu=on');
    expect(cmdline?.after).toBe(`${cmdline?.before} intel_iommu=on iommu=pt`.trim());
    expect(sriov?.files[1]).toMatchObject({ path: files('h1')[2], changed: true });

    expect(await snapshot('h1')).toEqual(before);
  });

  it('writes the ports for the ifupdown the host runs, and says a step would fail on a NIC without SR-IOV', async () => {
    const [debianOvs] = await driver('h1').preview(steps);
    const [pveOvs, sriov] = await driver('h2').preview(steps);
    // h1 runs classic ifupdown: ports announced with allow-vmbr0; h2 (pve) runs ifupdown2: ports marked auto.
    expect(debianOvs?.files[0]?.diff).toContain('+allow-vmbr0 ens6');
    expect(pveOvs?.files[0]?.diff).toContain('+auto ens6');
    expect(pveOvs?.files[0]?.diff).not.toContain('+allow-vmbr0 ens6');
    expect(sriov?.error).toBe('ens6 has no SR-IOV capability (sriov_totalvfs is missing)');
    // A pve host boots with systemd-boot: the IOMMU options would go to /etc/kernel/cmdline, not GRUB.
    expect(sriov?.files[0]?.path).toMatch(/\/etc\/kernel\/cmdline$/);
    expect(sriov?.files[0]?.diff).toContainEqual(expect.stringMatching(/^\+.* intel_iommu=on iommu=pt$/));
  });
});
