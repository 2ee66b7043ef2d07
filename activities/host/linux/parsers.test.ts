import { describe, expect, it } from 'vitest';
import { captured } from './fixtures.js';
import { hpingArgv, parseHpingStats } from './hping.js';
import { inet4Of, parseIpAddrs, parseIpLinks } from './ip.js';
import { parseOvsPorts, parseOvsShow, parseOvsdbTable } from './ovs-vsctl.js';
import {
  parseDomainXml,
  parseVirshDominfo,
  parseVirshList,
  virshDominfoArgv,
  virshDumpxmlArgv,
  virshListArgv,
  virshMigrateLiveArgv,
} from './virsh.js';

describe('hping3', () => {
  it('reads transmitted, received, loss and round-trip times from the summary on stderr', () => {
    expect(parseHpingStats(captured('hping3-icmp-ok.stderr'))).toEqual({
      transmitted: 5,
      received: 5,
      lossPct: 0,
      rttMinMs: 0.1,
      rttAvgMs: 0.3,
      rttMaxMs: 0.6,
    });
  });

  it('counts RST answers of a closed TCP port as replies', () => {
    expect(parseHpingStats(captured('hping3-syn-port80-ok.stderr'))).toMatchObject({
      transmitted: 5,
      received: 5,
      lossPct: 0,
    });
  });

  it('reports partial loss', () => {
    expect(parseHpingStats(captured('hping3-icmp-60pct-loss.stderr'))).toMatchObject({
      transmitted: 40,
      received: 16,
      lossPct: 60,
      rttAvgMs: 20.5,
    });
  });

  it('reports 100% loss without round-trip times when nothing came back', () => {
    const stats = parseHpingStats(captured('hping3-icmp-no-reply-exit1.stderr'));
    expect(stats).toEqual({ transmitted: 3, received: 0, lossPct: 100 });
  });

  it('reads the "tramitted" spelling of other builds', () => {
    const other = captured('hping3-icmp-ok.stderr').replace('transmitted', 'tramitted');
    expect(other).toContain('tramitted');
    expect(parseHpingStats(other)).toMatchObject({ transmitted: 5, received: 5 });
  });

  it('does not take the per-packet lines on stdout for a summary', () => {
    expect(() => parseHpingStats(captured('hping3-icmp-ok.stdout'))).toThrow(/no hping3 statistics/);
  });

  it('builds ICMP and TCP SYN probes as argument arrays', () => {
    expect(hpingArgv({ address: '10.77.0.1', count: 50 })).toEqual([
      'hping3',
      '-1',
      '-c',
      '50',
      '-i',
      'u10000',
      '10.77.0.1',
    ]);
    expect(hpingArgv({ address: '10.77.0.1', port: 80, count: 5, intervalUs: 20_000 })).toEqual([
      'hping3',
      '-S',
      '-p',
      '80',
      '-c',
      '5',
      '-i',
      'u20000',
      '10.77.0.1',
    ]);
    expect(() => hpingArgv({ address: '10.77.0.1; reboot', count: 1 })).toThrow();
  });
});

describe('ip -j', () => {
  it('finds the Linux bridge and its ports', () => {
    const links = parseIpLinks(captured('ip-j-d-link-linux-bridge-host.json'));
    expect(links.find((l) => l.name === 'vmbr0')).toMatchObject({ kind: 'bridge', up: true });
    expect(links.filter((l) => l.master === 'vmbr0').map((l) => [l.name, l.portKind])).toEqual([
      ['ens6', 'bridge'],
      ['veth101i0', 'bridge'],
    ]);
  });

  it('sees the OVS userspace datapath as tap devices and no Linux bridge', () => {
    const links = parseIpLinks(captured('ip-j-d-link-ovs-host.json'));
    expect(links.some((l) => l.kind === 'bridge')).toBe(false);
    expect(links.find((l) => l.name === 'vlan1')).toMatchObject({ kind: 'tun' });
  });

  it('reads the addresses of each link', () => {
    expect(inet4Of(parseIpAddrs(captured('ip-j-addr-linux-bridge-host.json')), 'vmbr0')).toEqual(['10.77.0.11/16']);
    expect(inet4Of(parseIpAddrs(captured('ip-j-addr-ovs-host.json')), 'vlan1')).toEqual(['10.77.0.11/16']);
  });

  it('rejects output that is not ip -j', () => {
    expect(() => parseIpLinks('not json')).toThrow(/not JSON/);
    expect(() => parseIpLinks('[{"nope":1}]')).toThrow();
  });
});

describe('ovs-vsctl', () => {
  it('parses show: bridge, datapath type, ports with tags, interface types', () => {
    const show = parseOvsShow(captured('ovs-vsctl-show-ovs-host-with-vm.stdout'));
    expect(show.uuid).toMatch(/^[0-9a-f-]{36}$/);
    const [bridge] = show.bridges;
    expect(bridge).toMatchObject({ name: 'vmbr0', datapathType: 'netdev' });
    expect(bridge?.ports.map((p) => [p.name, p.tag, p.interfaces[0]?.type])).toEqual([
      ['veth101i0', 1, ''],
      ['vlan1', 1, 'internal'],
      ['vmbr0', undefined, 'internal'],
      ['ens6', 1, ''],
    ]);
  });

  it('parses JSON list output, with empty sets and uuids', () => {
    expect(parseOvsPorts(captured('ovs-vsctl-list-port-json.stdout'))).toEqual([
      { name: 'ens6', tag: 1, vlanMode: 'native-untagged' },
      { name: 'vlan1', tag: 1, vlanMode: undefined },
      { name: 'vmbr0', tag: undefined, vlanMode: undefined },
    ]);
    const ifaces = parseOvsdbTable(captured('ovs-vsctl-list-interface-json.stdout'));
    expect(ifaces.map((r) => [r.name, r.type])).toContainEqual(['vlan1', 'internal']);
  });

  it('lists bridges and ports one per line', () => {
    expect(captured('ovs-vsctl-list-br.stdout').trim().split('\n')).toEqual(['vmbr0']);
    expect(captured('ovs-vsctl-list-ports-vmbr0.stdout').trim().split('\n').sort()).toEqual(['ens6', 'vlan1']);
  });
});

describe('virsh dumpxml', () => {
  it('reads the memory and finds no passed-through device in a plain domain', () => {
    expect(parseDomainXml(captured('virsh-dumpxml-test.stdout'))).toEqual({
      memoryBytes: 8388608 * 1024,
      passthrough: [],
    });
  });

  it('counts each <hostdev> and <interface type="hostdev"> (an SR-IOV VF) as a passed-through device', () => {
    expect(parseDomainXml(captured('virsh-dumpxml-hostdev.stdout'))).toEqual({
      memoryBytes: 16 * 2 ** 30,
      passthrough: ['hostdev0', 'hostdev1'],
    });
  });

  it('refuses output that is no domain, and a hostile domain name never reaches the command', () => {
    expect(() => parseDomainXml('error: failed to get domain')).toThrow(/no <domain>/);
    expect(() => virshDumpxmlArgv('qemu:///system', '--help; reboot')).toThrow(/not valid/);
  });
});

describe('virsh', () => {
  it('parses list --all, running and shut off', () => {
    expect(parseVirshList(captured('virsh-list-all.stdout'))).toEqual([{ id: 1, name: 'test', state: 'running' }]);
    expect(parseVirshList(captured('virsh-list-all-shut-off.stdout'))).toEqual([
      { id: undefined, name: 'test', state: 'shut off' },
    ]);
  });

  it('parses dominfo', () => {
    const info = parseVirshDominfo(captured('virsh-dominfo-test.stdout'));
    expect(info).toMatchObject({ Name: 'test', State: 'running', 'CPU(s)': '2', Persistent: 'yes' });
    expect(() => parseVirshDominfo(captured('virsh-dominfo-missing.stdout'))).toThrow(/Name/);
  });

  it('builds list, dominfo and a live migration that moves the definition', () => {
    expect(virshListArgv('test:///default')).toEqual(['virsh', '-c', 'test:///default', 'list', '--all']);
    expect(virshDominfoArgv('test:///default', 'test')).toEqual([
      'virsh',
      '-c',
      'test:///default',
      'dominfo',
      '--domain',
      'test',
    ]);
    expect(virshMigrateLiveArgv('qemu:///system', 'vm101', 'qemu+ssh://hv2/system')).toEqual([
      'virsh',
      '-c',
      'qemu:///system',
      'migrate',
      '--live',
      '--persistent',
      '--undefinesource',
      '--verbose',
      '--domain',
      'vm101',
      '--desturi',
      'qemu+ssh://hv2/system',
    ]);
    expect(() => virshMigrateLiveArgv('qemu:///system', '-x', 'qemu+ssh://hv2/system')).toThrow();
    expect(() => virshMigrateLiveArgv('qemu:///system', 'vm', 'qemu+ssh://hv2/system; reboot')).toThrow();
  });
});
