import { describe, expect, it } from 'vitest';
import type { IfName } from './names.js';
import {
  libvirtVlanTag,
  ovsPortTagArgv,
  parseQmNet,
  qmNetPlacement,
  serializeQmNet,
  VmNicFormatError,
  withLibvirtVlan,
  withQmTag,
} from './vm-nic-vlan.js';

// The Proxmox VE admin guide's example VM configuration (qm.conf): `net0: e1000=EE:D2:28:5F:B6:3E,bridge=vmbr0`.
const GUIDE_NET0 = 'e1000=EE:D2:28:5F:B6:3E,bridge=vmbr0';

describe('Proxmox netN values', () => {
  it('parses the documented form and writes it back unchanged', () => {
    expect(parseQmNet(GUIDE_NET0)).toEqual({
      model: 'e1000',
      mac: 'EE:D2:28:5F:B6:3E',
      options: [['bridge', 'vmbr0']],
    });
    expect(serializeQmNet(parseQmNet(GUIDE_NET0))).toBe(GUIDE_NET0);
    // `model=` and `macaddr=` spelled out, as the format string allows; a model without a MAC.
    expect(parseQmNet('model=virtio,macaddr=BC:24:11:2A:3B:4C,bridge=vmbr0,firewall=1')).toEqual({
      model: 'virtio',
      mac: 'BC:24:11:2A:3B:4C',
      options: [
        ['bridge', 'vmbr0'],
        ['firewall', '1'],
      ],
    });
    expect(serializeQmNet(parseQmNet('virtio,bridge=vmbr0'))).toBe('virtio,bridge=vmbr0');
  });

  it('puts the tag on with MAC, model and every other option kept, replaces one, and takes it off', () => {
    const tagged = withQmTag(`${GUIDE_NET0},firewall=1`, 20);
    expect(tagged).toBe('e1000=EE:D2:28:5F:B6:3E,bridge=vmbr0,firewall=1,tag=20');
    expect(withQmTag('virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,tag=5,trunks=7;8', 20)).toBe(
      'virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,tag=20,trunks=7;8',
    );
    expect(withQmTag(tagged, undefined)).toBe('e1000=EE:D2:28:5F:B6:3E,bridge=vmbr0,firewall=1');
    expect(qmNetPlacement(tagged)).toEqual({ bridge: 'vmbr0', tag: 20 });
    expect(() => withQmTag(GUIDE_NET0, 4095)).toThrow();
  });

  it('refuses what is not a netN value', () => {
    expect(() => parseQmNet('bridge=vmbr0')).toThrow(VmNicFormatError);
    expect(() => parseQmNet('virtio=BC:24:11:2A:3B:4C,,bridge=vmbr0')).toThrow(VmNicFormatError);
  });
});

// libvirt's formatdomain documentation: an interface on an Open vSwitch bridge with a VLAN tag.
const LINUX_BRIDGE_NIC = `<interface type='bridge'>
  <mac address='52:54:00:6d:90:02'/>
  <source bridge='vmbr0'/>
  <target dev='vnet0'/>
  <model type='virtio'/>
</interface>
`;
const OVS_NIC = `<interface type='bridge'>
  <vlan>
    <tag id='42'/>
  </vlan>
  <source bridge='ovsbr0'/>
  <virtualport type='openvswitch'>
    <parameters interfaceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'/>
  </virtualport>
</interface>
`;

describe('libvirt interfaces', () => {
  it('adds an openvswitch virtual port and the VLAN, keeping MAC, source, target and model', () => {
    const tagged = withLibvirtVlan(LINUX_BRIDGE_NIC, 20);
    expect(tagged).toBe(`<interface type='bridge'>
  <mac address='52:54:00:6d:90:02'/>
  <source bridge='vmbr0'/>
  <target dev='vnet0'/>
  <model type='virtio'/>
  <virtualport type='openvswitch'/>
  <vlan>
    <tag id='20'/>
  </vlan>
</interface>
`);
    expect(libvirtVlanTag(tagged)).toBe(20);
    expect(withLibvirtVlan(tagged, undefined)).toBe(LINUX_BRIDGE_NIC);
  });

  it("changes the tag of the documented OVS interface, keeping its virtual port's interfaceid", () => {
    const retagged = withLibvirtVlan(OVS_NIC, 7);
    expect(libvirtVlanTag(OVS_NIC)).toBe(42);
    expect(libvirtVlanTag(retagged)).toBe(7);
    expect(retagged).toContain("<parameters interfaceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'/>");
    expect(retagged.match(/<virtualport/g)).toHaveLength(1);
    expect(() => withLibvirtVlan('<domain/>', 7)).toThrow(VmNicFormatError);
  });
});

describe('the running OVS port of a VM', () => {
  it('is tagged and untagged with ovs-vsctl, its name checked first', () => {
    expect(ovsPortTagArgv('tap101i0' as IfName, 20)).toEqual(['ovs-vsctl', 'set', 'port', 'tap101i0', 'tag=20']);
    expect(ovsPortTagArgv('vnet0' as IfName, undefined)).toEqual(['ovs-vsctl', 'clear', 'port', 'vnet0', 'tag']);
    expect(() => ovsPortTagArgv('tap0; reboot' as IfName, 20)).toThrow();
  });
});
