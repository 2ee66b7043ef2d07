import { describe, expect, it } from 'vitest';
import { VxlanEnd, VxlanTunnelParams, vxlanEndFor } from '../../../schemas/steps.js';
import { captured, VXLAN_ENDS } from './fixtures.js';
import { planOvsConversion } from './ovs-plan.js';
import {
  ipLinkAddVxlanArgv,
  vxlanMac,
  parseLinkVxlan,
  parsePingCounts,
  pingDfArgv,
  planVxlanFile,
  removeVxlan,
  tunnelDifferences,
  VxlanPlanError,
  type VxlanParams,
} from './vxlan.js';

const LINUX_FILE = `auto lo
iface lo inet loopback

auto vmbr0
iface vmbr0 inet static
\taddress 10.77.0.12/16
\tbridge-ports ens6
`;

/** The file as ovs-convert leaves it (classic ifupdown), for the OVS end. */
const OVS_FILE = planOvsConversion(LINUX_FILE, { bridge: 'vmbr0', hostVlan: 1, ifupdown: 1 }).text;

const params = (p: Record<string, unknown>): VxlanParams => VxlanEnd.parse(p);
const ovs = params(VXLAN_ENDS.ovs);
const linux = params(VXLAN_ENDS.linux);

describe('vxlan-tunnel params', () => {
  it('sets the destination port to 4789 unless the plan says otherwise', () => {
    expect(ovs.dstPort).toBe(4789);
    expect(params({ ...linux, dstPort: 8472 }).dstPort).toBe(8472);
  });

  it('refuses hostile names and addresses before anything reaches a command', () => {
    for (const bad of [
      { name: '-vx0' },
      { name: 'vx0;reboot' },
      { name: 'a-name-far-too-long' },
      { underlay: '--help' },
      { remote: '10.77.0.11 -x' },
      { remote: '10.77.0.300' },
      { local: 'host$(id)' },
      { address: '192.168.100.2/33' },
      { check: { address: '192.168.100.1', fromVm: '-vm' } },
      { vni: 0 },
      { vni: 16_777_216 },
      { dstPort: 0 },
    ])
      expect(VxlanTunnelParams.safeParse({ ...linux, ...bad }).success, JSON.stringify(bad)).toBe(false);
  });

  it('asks each type for what it needs and refuses what it cannot use', () => {
    const issues = (p: Record<string, unknown>) =>
      VxlanTunnelParams.safeParse(p).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    expect(issues({ ...ovs, bridge: undefined, address: '10.0.0.1/24', mtu: 1400 })).toEqual([
      'bridge: type ovs needs the OVS bridge',
      'address: only a linux vxlan device carries an address; put a VM or an internal port on the tag instead',
      'mtu: an OVS tunnel port has no MTU of its own; its VMs must stay at the underlay MTU less 50',
    ]);
    expect(issues({ ...linux, local: undefined, bridge: 'vmbr0', tag: 5 })).toEqual([
      'bridge: only an ovs tunnel joins a bridge',
      'tag: only an ovs tunnel port takes a VLAN tag',
    ]);
    expect(issues({ ...linux, remote: linux.local })).toEqual(['remote: must differ from local']);
  });
});

describe('both ends of one tunnel in one step', () => {
  const { name: _n, vni: _v, ...h1 } = VXLAN_ENDS.ovs;
  const { name: _n2, vni: _v2, ...h2 } = VXLAN_ENDS.linux;
  const both = { name: 'vx100', vni: 100, hosts: { h1, h2 } };

  it('gives each host its own end, the shared parameters under it, and none to a host without an entry', () => {
    const params = VxlanTunnelParams.parse(both);
    expect(vxlanEndFor(params, 'h1')).toEqual({ ...ovs, dstPort: 4789 });
    expect(vxlanEndFor(params, 'h2')).toEqual(VxlanEnd.parse({ ...both.hosts.h2, name: 'vx100', vni: 100 }));
    expect(vxlanEndFor(params, 'h3')).toBeUndefined();
    // One end for every host, as before.
    expect(vxlanEndFor(VxlanTunnelParams.parse(linux), 'h3')).toEqual(linux);
  });

  it("checks each end whole: a problem in a host's entry is named under it, one in the shared part for whom", () => {
    const issues = (p: Record<string, unknown>) =>
      VxlanTunnelParams.safeParse(p).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    expect(issues({ ...both, hosts: { ...both.hosts, h2: { ...both.hosts.h2, bridge: 'vmbr0' } } })).toEqual([
      'hosts.h2.bridge: only an ovs tunnel joins a bridge',
    ]);
    const { vni: _vni, ...noVni } = both;
    expect(issues(noVni)).toEqual([
      'vni: Invalid input: expected number, received undefined (for host h1)',
      'vni: Invalid input: expected number, received undefined (for host h2)',
    ]);
    expect(issues({ ...both, hosts: { h1: { ...both.hosts.h1, remote: '10.77.0.11' } } })).toEqual([
      'hosts.h1.remote: must differ from local',
    ]);
    expect(issues({ ...both, hosts: {} })).toEqual(['hosts: one entry per host, 1 to 64']);
    expect(issues({ ...both, hosts: { 'not a host!': both.hosts.h1 } }).length).toBeGreaterThan(0);
  });
});

describe('the tunnel in /etc/network/interfaces', () => {
  it('ovs, classic ifupdown: an OVSTunnel announced with allow-<bridge> and listed in the bridge ports', () => {
    const plan = planVxlanFile(OVS_FILE, ovs, 1, 1450);
    expect(plan.changed).toBe(true);
    expect(plan.text).toBe(
      OVS_FILE.replace('ovs_ports ens6 vlan1', 'ovs_ports ens6 vlan1 vx100') +
        `
allow-vmbr0 vx100
iface vx100 inet manual
\tovs_type OVSTunnel
\tovs_bridge vmbr0
\tovs_tunnel_type vxlan
\tovs_tunnel_options options:remote_ip=10.77.0.12 options:key=100 options:dst_port=4789 options:local_ip=10.77.0.11
\tovs_options tag=100
`,
    );
  });

  it('ovs, ifupdown2: the same tunnel marked auto', () => {
    const plan = planVxlanFile(OVS_FILE, ovs, 2, 1450);
    expect(plan.stanza.split('\n')[0]).toBe('auto vx100');
    expect(plan.text).toContain('ovs_ports ens6 vlan1 vx100\n');
  });

  it('ovs: refuses a file without the OVS bridge, naming ovs-convert', () => {
    expect(() => planVxlanFile(LINUX_FILE, ovs, 1, 1450)).toThrow(VxlanPlanError);
    expect(() => planVxlanFile(LINUX_FILE, ovs, 1, 1450)).toThrow(/no OVS bridge "vmbr0".*ovs-convert/);
  });

  it("linux, ifupdown2: the vxlan-* attributes of ifupdown2's vxlan addon, the port and the MTU written out", () => {
    expect(planVxlanFile(LINUX_FILE, linux, 2, 1450).stanza).toBe(`auto vx100
iface vx100 inet static
\tvxlan-id 100
\tvxlan-local-tunnelip 10.77.0.12
\tvxlan-svcnodeip 10.77.0.11
\tvxlan-port 4789
\tvxlan-physdev vmbr0
\thwaddress a2:79:db:f0:98:a9
\tmtu 1450
\taddress 192.168.100.2/24
`);
  });

  it('linux, classic ifupdown: the device made in pre-up with dstport set, deleted in post-down', () => {
    expect(planVxlanFile(LINUX_FILE, { ...linux, address: undefined }, 1, 1450).stanza).toBe(`auto vx100
iface vx100 inet manual
\tpre-up ip link add vx100 address a2:79:db:f0:98:a9 mtu 1450 type vxlan id 100 dstport 4789 remote 10.77.0.11 local 10.77.0.12 dev vmbr0
\tup ip link set dev vx100 up
\tpost-down ip link delete dev vx100
`);
  });

  it('plans nothing the second time, and a changed tunnel replaces its stanza in place', () => {
    for (const [file, p] of [
      [OVS_FILE, ovs],
      [LINUX_FILE, linux],
    ] as const)
      for (const flavour of [1, 2] as const) {
        const once = planVxlanFile(file, p, flavour, 1450);
        expect(planVxlanFile(once.text, p, flavour, 1450)).toMatchObject({ changed: false, text: once.text });
        const other = planVxlanFile(once.text, { ...p, vni: 200 }, flavour, 1450).text;
        expect(other).not.toMatch(/key=100 |vxlan-id 100\n| id 100 /);
        expect(other).toMatch(/key=200 |vxlan-id 200\n| id 200 /);
        expect(other.match(/iface vx100 /g)).toHaveLength(1);
      }
  });

  it('removal gives the file back as it was before the tunnel', () => {
    for (const flavour of [1, 2] as const) {
      expect(removeVxlan(planVxlanFile(OVS_FILE, ovs, flavour, 1450).text, 'vx100', 'vmbr0').text).toBe(OVS_FILE);
      expect(removeVxlan(planVxlanFile(LINUX_FILE, linux, flavour, 1450).text, 'vx100', undefined).text).toBe(
        LINUX_FILE,
      );
    }
    expect(removeVxlan(OVS_FILE, 'vx100', 'vmbr0')).toEqual({ changed: false, text: OVS_FILE });
  });
});

describe('commands and their output', () => {
  it('ip link add names the destination port, remote, local, underlay and MTU', () => {
    expect(ipLinkAddVxlanArgv({ ...linux, type: 'linux', local: '10.77.0.12', mtu: 1450 }).join(' ')).toBe(
      'ip link add vx100 address a2:79:db:f0:98:a9 mtu 1450 type vxlan id 100 dstport 4789 remote 10.77.0.11 local 10.77.0.12 dev vmbr0',
    );
  });

  it('gives each end of a tunnel its own MAC, the same every time, locally administered and unicast', () => {
    const mac = vxlanMac(linux);
    expect(mac).toBe('a2:79:db:f0:98:a9');
    expect(vxlanMac({ ...linux })).toBe(mac);
    expect(vxlanMac({ ...linux, local: linux.remote, remote: linux.local as string })).not.toBe(mac);
    expect(vxlanMac({ ...linux, vni: 101 })).not.toBe(mac);
    for (const m of [mac, vxlanMac({ ...linux, vni: 7 }), vxlanMac({ ...linux, name: 'vx7' })])
      expect(parseInt(m.slice(0, 2), 16) & 0x03).toBe(0x02);
  });

  it('reads a vxlan device from real ip -j -d link output', () => {
    const link = parseLinkVxlan(captured('ip-j-d-link-vxlan.json'));
    expect(link).toEqual({
      name: 'vx100',
      kind: 'vxlan',
      mtu: 1450,
      tunnel: {
        type: 'linux',
        name: 'vx100',
        vni: 100,
        remote: '10.9.0.2',
        local: '10.9.0.1',
        dstPort: 4789,
        underlay: 'rfvxa0',
        mtu: 1450,
      },
    });
    expect(parseLinkVxlan(captured('ip-j-d-link-linux-bridge-host.json')).tunnel).toBeUndefined();
    expect(() => parseLinkVxlan('Device "vx9" does not exist.')).toThrow(/not JSON/);
  });

  it('names each difference between a running and a planned tunnel', () => {
    const running = parseLinkVxlan(captured('ip-j-d-link-vxlan.json')).tunnel!;
    expect(tunnelDifferences(running, { ...running, dstPort: 8472, vni: 7 })).toEqual([
      'vni: 100 → 7',
      'dstPort: 4789 → 8472',
    ]);
    expect(tunnelDifferences(running, running)).toEqual([]);
  });

  it('pings with DF set and counts what came back, from real ping output', () => {
    expect(pingDfArgv('192.168.100.2', 1422, 3)).toEqual([
      'ping',
      '-n',
      '-q',
      '-M',
      'do',
      '-s',
      '1422',
      '-c',
      '3',
      '-i',
      '0.2',
      '-W',
      '1',
      '192.168.100.2',
    ]);
    expect(() => pingDfArgv('-f', 1422, 3)).toThrow();
    expect(parsePingCounts(captured('ping-M-do-fits.txt'))).toEqual({ transmitted: 3, received: 3 });
    expect(parsePingCounts(captured('ping-M-do-too-big.txt'))).toEqual({ transmitted: 3, received: 0 });
    expect(() => parsePingCounts('ping: connect: Network is unreachable')).toThrow(/no "packets transmitted"/);
  });
});
