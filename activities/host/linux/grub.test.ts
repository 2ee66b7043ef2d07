import { describe, expect, it } from 'vitest';
import { kernelCmdlineFromGrub, planGrubIommu, planGrubIommuRemoval } from './grub.js';
import { parseSriovRules, renderSriovRules } from './sriov.js';

const DEBIAN = `# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=\`lsb_release -i -s 2> /dev/null || echo Debian\`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
`;

describe('grub IOMMU options', () => {
  it('adds intel_iommu=on and iommu=pt to GRUB_CMDLINE_LINUX_DEFAULT and nothing else', () => {
    const plan = planGrubIommu(DEBIAN, 'intel');
    expect(plan).toMatchObject({ changed: true, before: 'quiet', after: 'quiet intel_iommu=on iommu=pt' });
    expect(plan.text).toBe(DEBIAN.replace('"quiet"', '"quiet intel_iommu=on iommu=pt"'));
  });

  it('is idempotent', () => {
    const once = planGrubIommu(DEBIAN, 'amd').text;
    expect(planGrubIommu(once, 'amd')).toMatchObject({ changed: false, text: once });
  });

  it("keeps options that are already there, like the SR-IOV seed's igb.max_vfs=7", () => {
    const text =
      'GRUB_CMDLINE_LINUX_DEFAULT="rootdelay=90 quiet splash intel_pstate=disable intel_iommu=on igb.max_vfs=7"\n';
    expect(planGrubIommu(text, 'intel').after).toBe(
      'rootdelay=90 quiet splash intel_pstate=disable intel_iommu=on igb.max_vfs=7 iommu=pt',
    );
  });

  it('adds the variable when the file has none', () => {
    expect(planGrubIommu('GRUB_TIMEOUT=5', 'intel').text).toBe(
      'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n',
    );
  });

  it('takes the options off again on revert', () => {
    const on = planGrubIommu(DEBIAN, 'intel').text;
    expect(planGrubIommuRemoval(on)).toMatchObject({ changed: true, text: DEBIAN });
    expect(planGrubIommuRemoval(DEBIAN).changed).toBe(false);
  });

  it('derives the kernel command line', () => {
    const on = planGrubIommu(
      DEBIAN.replace('GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="console=ttyS0"'),
      'intel',
    ).text;
    expect(kernelCmdlineFromGrub(on)).toBe('console=ttyS0 quiet intel_iommu=on iommu=pt');
  });
});

describe('persistent VF count', () => {
  it('writes udev rules matched by PCI address that it reads back', () => {
    const text = renderSriovRules({
      nic: 'ens6',
      pci: '0000:03:00.0',
      numVfs: 7,
      vfs: { 0: { vlan: 0 }, 6: { vlan: 20, mac: '52:54:00:AB:CD:06', spoofchk: false, trust: true } },
    });
    expect(text).toContain('ACTION=="add", SUBSYSTEM=="net", KERNELS=="0000:03:00.0", ATTR{device/sriov_numvfs}="7"');
    expect(text).toContain(
      'RUN+="/usr/sbin/ip link set dev $name vf 6 vlan 20 mac 52:54:00:ab:cd:06 spoofchk off trust on"',
    );
    expect(parseSriovRules(text)).toEqual({
      pci: '0000:03:00.0',
      nic: 'ens6',
      numVfs: 7,
      vfs: { 0: { vlan: 0 }, 6: { vlan: 20, mac: '52:54:00:ab:cd:06', spoofchk: false, trust: true } },
    });
    expect(parseSriovRules('# nothing here\n')).toBeUndefined();
  });

  it('still reads the rules an older refit wrote, matched by name', () => {
    const legacy =
      '# Written by refit (sriov-enable): SR-IOV virtual functions created at every boot.\n' +
      'ACTION=="add", SUBSYSTEM=="net", KERNEL=="ens6", ATTR{device/sriov_numvfs}="7"\n' +
      'ACTION=="add", SUBSYSTEM=="net", KERNEL=="ens6", RUN+="/usr/sbin/ip link set dev ens6 vf 6 vlan 0"\n';
    expect(parseSriovRules(legacy)).toEqual({ nic: 'ens6', numVfs: 7, vfs: { 6: { vlan: 0 } } });
  });
});
