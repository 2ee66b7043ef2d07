import { describe, expect, it } from 'vitest';
import { BondPlanError, linuxBondIn, planOvsBond } from './bond-plan.js';
import { parseInterfaces } from './interfaces-file.js';
import { InterfacesPlanError, planLinuxBridgeRestore, planOvsConversion } from './ovs-plan.js';

/** As the Proxmox VE installer and GUI write a Linux bond (802.3ad, layer3+4) under vmbr0. */
const LINUX_BOND = `auto lo
iface lo inet loopback

iface eno1 inet manual

iface eno2 inet manual
\tmtu 9000

auto bond0
iface bond0 inet manual
\tbond-slaves eno1 eno2
\tbond-miimon 100
\tbond-mode 802.3ad
\tbond-xmit-hash-policy layer3+4
\tbond-lacp-rate 1

auto vmbr0
iface vmbr0 inet static
\taddress 10.77.0.11/16
\tgateway 10.77.0.1
\tbridge-ports bond0
\tbridge-stp off
\tbridge-fd 0

source /etc/network/interfaces.d/*
`;

const OVS_ON_BOND_V2 = `auto lo
iface lo inet loopback

auto eno1
iface eno1 inet manual

auto eno2
iface eno2 inet manual
\tmtu 9000

auto bond0
iface bond0 inet manual
\tovs_bonds eno1 eno2
\tovs_type OVSBond
\tovs_bridge vmbr0
\tovs_options bond_mode=balance-tcp lacp=active other_config:lacp-time=fast tag=1 vlan_mode=native-untagged

auto vmbr0
iface vmbr0 inet manual
\tovs_type OVSBridge
\tovs_ports bond0 vlan1

auto vlan1
iface vlan1 inet static
\tovs_type OVSIntPort
\tovs_bridge vmbr0
\tovs_options tag=1
\taddress 10.77.0.11/16
\tgateway 10.77.0.1

source /etc/network/interfaces.d/*
`;

/** What ovs-convert made of a Linux bond before it knew bonds: an OVSPort on top of the Linux bond. */
const MIXED = `auto lo
iface lo inet loopback

iface eno1 inet manual
\tbond-master bond0

iface eno2 inet manual
\tbond-master bond0

allow-vmbr0 bond0
iface bond0 inet manual
\tovs_bridge vmbr0
\tovs_type OVSPort
\tovs_options tag=1 vlan_mode=native-untagged
\tbond-mode active-backup
\tbond-miimon 100

auto vmbr0
allow-ovs vmbr0
iface vmbr0 inet manual
\tovs_type OVSBridge
\tovs_ports bond0 vlan1

# the host address
allow-vmbr0 vlan1
iface vlan1 inet static
\tovs_type OVSIntPort
\tovs_bridge vmbr0
\tovs_options tag=1
\taddress 10.77.0.11/16
`;

describe('Linux bonds in /etc/network/interfaces', () => {
  it('reads members, mode, LACP rate and hash policy by name or number', () => {
    expect(linuxBondIn(parseInterfaces(LINUX_BOND), 'bond0')).toEqual({
      name: 'bond0',
      members: ['eno1', 'eno2'],
      mode: '802.3ad',
      lacpRate: 'fast',
      hashPolicy: 'layer3+4',
    });
    expect(linuxBondIn(parseInterfaces(LINUX_BOND.replace('bond-mode 802.3ad', 'bond-mode 4')), 'bond0')?.mode).toBe(
      '802.3ad',
    );
    expect(linuxBondIn(parseInterfaces(MIXED), 'bond0')).toMatchObject({
      members: ['eno1', 'eno2'],
      mode: 'active-backup',
    });
    expect(linuxBondIn(parseInterfaces(LINUX_BOND), 'vmbr0')).toBeUndefined();
  });
});

describe('ovs-convert on a bonded uplink', () => {
  it('builds the OVS bridge on an OVSBond (ifupdown2), never an OVSPort on the Linux bond', () => {
    const plan = planOvsConversion(LINUX_BOND, { bridge: 'vmbr0', hostVlan: 1, ifupdown: 2 });
    expect(plan.text).toBe(OVS_ON_BOND_V2);
    expect(plan.summary).toContain('Linux bond bond0 (802.3ad) as OVSBond over eno1 eno2');
  });

  it('announces the bond with allow-vmbr0 for classic ifupdown', () => {
    const text = planOvsConversion(LINUX_BOND, { bridge: 'vmbr0', hostVlan: 1, ifupdown: 1 }).text;
    expect(text).toContain(
      'iface eno1 inet manual\n\niface eno2 inet manual\n\tmtu 9000\n\nallow-vmbr0 bond0\niface bond0 inet manual\n\tovs_bonds eno1 eno2\n\tovs_type OVSBond\n',
    );
    expect(text).not.toContain('auto eno1');
    expect(text).not.toContain('OVSPort');
  });

  it('refuses a bond mode Open vSwitch has no counterpart for', () => {
    const rr = LINUX_BOND.replace('bond-mode 802.3ad', 'bond-mode balance-rr');
    expect(() => planOvsConversion(rr, { bridge: 'vmbr0', hostVlan: 1 })).toThrow(InterfacesPlanError);
    expect(() => planOvsConversion(rr, { bridge: 'vmbr0', hostVlan: 1 })).toThrow(/balance-rr.*name the mode/);
  });

  it('goes back to the Linux bond under a Linux bridge', () => {
    const back = planLinuxBridgeRestore(OVS_ON_BOND_V2, { bridge: 'vmbr0' });
    expect(back.text).toContain(
      'iface eno1 inet manual\n\niface eno2 inet manual\n\nauto bond0\niface bond0 inet manual\n\tbond-slaves eno1 eno2\n\tbond-miimon 100\n\tbond-mode 802.3ad\n\tbond-xmit-hash-policy layer3+4\n\tbond-lacp-rate fast\n',
    );
    expect(back.text).toContain('\tbridge-ports bond0\n');
    expect(back.text).not.toContain('ovs_');
  });
});

describe('ovs-bond', () => {
  it('turns the OVSPort on a Linux bond into an OVSBond with the port VLAN options kept (classic ifupdown)', () => {
    const plan = planOvsBond(MIXED, { bridge: 'vmbr0', bond: 'bond0', ifupdown: 1 });
    expect(plan).toMatchObject({
      changed: true,
      from: 'linux-bond',
      members: ['eno1', 'eno2'],
      settings: { mode: 'active-backup', lacp: 'off' },
    });
    expect(plan.text).toBe(`auto lo
iface lo inet loopback

iface eno1 inet manual

iface eno2 inet manual

allow-vmbr0 bond0
iface bond0 inet manual
\tovs_bonds eno1 eno2
\tovs_type OVSBond
\tovs_bridge vmbr0
\tovs_options bond_mode=active-backup lacp=off tag=1 vlan_mode=native-untagged

auto vmbr0
allow-ovs vmbr0
iface vmbr0 inet manual
\tovs_type OVSBridge
\tovs_ports bond0 vlan1

# the host address
allow-vmbr0 vlan1
iface vlan1 inet static
\tovs_type OVSIntPort
\tovs_bridge vmbr0
\tovs_options tag=1
\taddress 10.77.0.11/16
`);
  });

  it('marks the members and the bond auto for ifupdown2, and takes the mode the plan names', () => {
    const plan = planOvsBond(MIXED, {
      bridge: 'vmbr0',
      bond: 'bond0',
      ifupdown: 2,
      mode: 'balance-tcp',
      lacpTime: 'fast',
    });
    expect(plan.text).toContain(
      'auto eno1\niface eno1 inet manual\n\nauto eno2\niface eno2 inet manual\n\nauto bond0\n',
    );
    expect(plan.text).toContain(
      '\tovs_options bond_mode=balance-tcp lacp=active other_config:lacp-time=fast tag=1 vlan_mode=native-untagged\n',
    );
    expect(plan.text).not.toContain('allow-vmbr0 bond0');
  });

  it('changes only the options line of an OVSBond that is already there, and nothing when they match', () => {
    const plan = planOvsBond(OVS_ON_BOND_V2, {
      bridge: 'vmbr0',
      bond: 'bond0',
      ifupdown: 2,
      mode: 'active-backup',
      lacp: 'off',
    });
    expect(plan).toMatchObject({ changed: true, from: 'ovs-bond' });
    expect(plan.text).toBe(
      OVS_ON_BOND_V2.replace(
        'bond_mode=balance-tcp lacp=active other_config:lacp-time=fast tag=1',
        'bond_mode=active-backup lacp=off tag=1',
      ),
    );
    expect(
      planOvsBond(plan.text, { bridge: 'vmbr0', bond: 'bond0', ifupdown: 2, mode: 'active-backup' }),
    ).toMatchObject({
      changed: false,
      text: plan.text,
    });
    expect(planOvsBond(OVS_ON_BOND_V2, { bridge: 'vmbr0', bond: 'bond0', ifupdown: 2 }).changed).toBe(false);
  });

  it('refuses a Linux bridge, a missing bond and balance-tcp without LACP, naming why', () => {
    expect(() => planOvsBond(LINUX_BOND, { bridge: 'vmbr0', bond: 'bond0', ifupdown: 2 })).toThrow(
      /vmbr0 is not an OVSBridge in the file: ovs-convert/,
    );
    expect(() => planOvsBond(MIXED, { bridge: 'vmbr0', bond: 'bond1', ifupdown: 2 })).toThrow(/no bond "bond1"/);
    expect(() =>
      planOvsBond(MIXED, { bridge: 'vmbr0', bond: 'bond0', ifupdown: 2, mode: 'balance-tcp', lacp: 'off' }),
    ).toThrow(BondPlanError);
  });
});
