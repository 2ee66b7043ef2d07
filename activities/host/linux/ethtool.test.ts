import { describe, expect, it } from 'vitest';
import {
  ethtoolSetChannelsArgv,
  ethtoolSetOffloadsArgv,
  ethtoolSetRingsArgv,
  notSupported,
  parseEthtoolChannels,
  parseEthtoolFeatures,
  parseEthtoolRings,
} from './ethtool.js';
import { captured } from './fixtures.js';
import { parseLinkSettings, setLinkSettingsArgv } from './link-settings.js';
import { counterDelta, parseIpStats, parseNstatRetransmits } from './net-counters.js';
import { ifName } from './names.js';

describe('ethtool', () => {
  it('reads the six offloads from ethtool --json -k of a veth, with what its driver fixes', () => {
    expect(parseEthtoolFeatures(captured('ethtool-json-k-veth.json'))).toEqual({
      tso: { on: true, fixed: null },
      gso: { on: true, fixed: false },
      gro: { on: false, fixed: false },
      lro: { on: false, fixed: true },
      rx: { on: true, fixed: false },
      tx: { on: true, fixed: null },
    });
  });

  it('refuses -k output that is not JSON', () => {
    expect(() => parseEthtoolFeatures('Features for tc0:\nrx-checksumming: on\n')).toThrow(/no JSON/);
  });

  it('reads channel maximums and counts of a veth, where combined is n/a', () => {
    expect(parseEthtoolChannels(captured('ethtool-l-veth.stdout'))).toEqual({
      max: { rx: 2, tx: 2 },
      current: { rx: 1, tx: 1 },
    });
  });

  it('reads ring maximums and sizes of a NIC (documented output of a 4096-descriptor NIC)', () => {
    expect(parseEthtoolRings(captured('ethtool-g-4096-documented.stdout'))).toEqual({
      max: { rx: 4096, tx: 4096 },
      current: { rx: 256, tx: 256 },
    });
  });

  it('tells "Operation not supported" (a veth has no rings) from other failures', () => {
    expect(notSupported(captured('ethtool-g-veth-unsupported.stderr'))).toBe(true);
    expect(notSupported(captured('ethtool-G-veth-unsupported.stderr'))).toBe(true);
    expect(notSupported(captured('ethtool-L-combined-veth.stderr'))).toBe(false);
    // A fixed offload is no "not supported": ethtool -K says only that it changed nothing (hence the check before).
    expect(notSupported(captured('ethtool-K-lro-veth-fixed.stderr'))).toBe(false);
    expect(captured('ethtool-K-lro-veth-fixed.stdout')).toContain('rx-lro: off [requested on]');
    expect(() => parseEthtoolRings(captured('ethtool-g-veth-unsupported.stderr'))).toThrow(/no settings/);
  });

  it('builds -K, -G and -L as argument arrays from checked names', () => {
    const dev = ifName('ens6');
    expect(ethtoolSetOffloadsArgv(dev, { gro: false, tso: true })).toEqual([
      'ethtool',
      '-K',
      'ens6',
      'tso',
      'on',
      'gro',
      'off',
    ]);
    expect(ethtoolSetRingsArgv(dev, { tx: 1024, rx: 4096 })).toEqual([
      'ethtool',
      '-G',
      'ens6',
      'rx',
      '4096',
      'tx',
      '1024',
    ]);
    expect(ethtoolSetChannelsArgv(dev, { combined: 8 })).toEqual(['ethtool', '-L', 'ens6', 'combined', '8']);
    expect(() => ethtoolSetOffloadsArgv('-x; reboot' as never, { gro: true })).toThrow(/not valid/);
  });
});

describe('ip link settings and counters', () => {
  it('reads MTU, its bounds and txqueuelen from ip -j -d link', () => {
    const link = JSON.parse(captured('ip-j-d-link-linux-bridge-host.json')) as { ifname: string }[];
    const ens6 = link.find((l) => l.ifname === 'ens6');
    expect(parseLinkSettings(JSON.stringify([ens6]))).toMatchObject({ mtu: 1500, txqueuelen: 1000, minMtu: 68 });
    expect(setLinkSettingsArgv(ifName('ens6'), { mtu: 9000, txqueuelen: 5000 })).toEqual([
      'ip',
      'link',
      'set',
      'dev',
      'ens6',
      'mtu',
      '9000',
      'txqueuelen',
      '5000',
    ]);
  });

  it('reads drops, errors and overruns per interface from ip -s -s -j link (a veth that dropped 3 frames over its peer MTU)', () => {
    const stats = parseIpStats(captured('ip-s-s-j-link-veth.json'));
    expect(stats.get('tc0')).toEqual({ rxDropped: 0, txDropped: 3, rxErrors: 0, txErrors: 0, rxOverruns: 0 });
    expect(stats.get('lo')).toMatchObject({ rxDropped: 0 });
  });

  it('reads TCP retransmissions from nstat --json, and counts a reset counter from zero', () => {
    expect(parseNstatRetransmits(captured('nstat-asz.json'))).toBe(0);
    expect(() => parseNstatRetransmits('{"kernel":{}}')).toThrow(/TcpRetransSegs/);
    expect(counterDelta(10, 15)).toBe(5);
    expect(counterDelta(10, 4)).toBe(4);
  });
});
