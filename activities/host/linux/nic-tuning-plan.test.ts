import { describe, expect, it } from 'vitest';
import { parseEthtoolChannels, parseEthtoolFeatures } from './ethtool.js';
import { captured } from './fixtures.js';
import { ifaceStanzas, parseInterfaces } from './interfaces-file.js';
import {
  currentValues,
  describeDifferences,
  differences,
  persistedStanza,
  stanzaText,
  unsupportedSettings,
  withAutoLine,
  withoutAutoLine,
  withStanza,
  type NicObserved,
} from './nic-tuning-plan.js';

/** A veth as ethtool and ip showed it (captured): no rings, rx/tx channels up to 2, LRO fixed off. */
const veth: NicObserved = {
  name: 'ens6',
  offloads: parseEthtoolFeatures(captured('ethtool-json-k-veth.json')),
  rings: undefined,
  channels: parseEthtoolChannels(captured('ethtool-l-veth.stdout')),
  mtu: 1500,
  txqueuelen: 1000,
  minMtu: 68,
  maxMtu: 65535,
};

const FILE = `auto lo
iface lo inet loopback

iface ens6 inet manual
\tpost-up ethtool -G ens6 tx 512

auto vmbr0
iface vmbr0 inet static
\taddress 10.77.0.11/16
\tbridge-ports ens6
`;
const ens6 = () => ifaceStanzas(parseInterfaces(FILE), 'ens6')[0]!;

describe('nic-tuning plan', () => {
  it('names every setting a veth cannot take: a fixed offload, rings, combined channels, too many queues, too large an MTU', () => {
    expect(
      unsupportedSettings(veth, {
        offloads: { lro: true, gro: true },
        rings: { rx: 512 },
        channels: { combined: 2, rx: 4 },
        mtu: 70_000,
      }),
    ).toEqual([
      'ens6 offload lro on (fixed off by its driver)',
      'ens6 rings (ethtool -g: Operation not supported)',
      'ens6 channels combined (ethtool -l shows combined: n/a)',
      'ens6 channels rx 4 (its maximum is 2)',
      'ens6 mtu 70000 (its maximum is 65535)',
    ]);
    expect(unsupportedSettings(veth, { offloads: { lro: false, gro: true }, channels: { rx: 2 }, mtu: 9000 })).toEqual(
      [],
    );
  });

  it('records only the settings the plan names, and changes only what differs', () => {
    const want = { offloads: { gro: true, tso: true }, channels: { rx: 2 }, txqueuelen: 5000 };
    const now = currentValues(veth, want);
    expect(now).toEqual({ offloads: { gro: false, tso: true }, channels: { rx: 1 }, txqueuelen: 1000 });
    expect(differences(now, want)).toEqual({ offloads: { gro: true }, channels: { rx: 2 }, txqueuelen: 5000 });
    expect(differences(want, want)).toEqual({});
    expect(describeDifferences('ens6', now, want)).toEqual([
      'ens6 gro: on wanted, off now',
      'ens6 channels rx: 2 wanted, 1 now',
      'ens6 txqueuelen: 5000 wanted, 1000 now',
    ]);
  });

  it('persists for ifupdown2 with its ethtool attributes and native mtu, the rest as post-up lines', () => {
    const want = {
      offloads: { gro: false, lro: false },
      rings: { rx: 4096 },
      channels: { combined: 8 },
      txqueuelen: 5000,
      mtu: 9000,
    };
    expect(persistedStanza(ens6(), 2, want)).toBe(
      [
        'iface ens6 inet manual',
        '\tpost-up ethtool -G ens6 tx 512 rx 4096',
        '\tmtu 9000',
        '\tgro-offload off',
        '\tlro-offload off',
        '\tpost-up ethtool -L ens6 combined 8',
        '\tpost-up ip link set dev ens6 txqueuelen 5000',
        '',
      ].join('\n'),
    );
  });

  it('persists for classic ifupdown with mtu and post-up ethtool -K, and is idempotent', () => {
    const want = { offloads: { tso: false, gro: false }, mtu: 9000 };
    const once = withStanza(FILE, 'ens6', (s) => persistedStanza(s, 1, want)) as string;
    expect(stanzaText(once, 'ens6')).toBe(
      'iface ens6 inet manual\n\tpost-up ethtool -G ens6 tx 512\n\tmtu 9000\n\tpost-up ethtool -K ens6 tso off gro off\n',
    );
    expect(withStanza(once, 'ens6', (s) => persistedStanza(s, 1, want))).toBe(once);
    expect(once.replace(stanzaText(once, 'ens6') as string, '')).toBe(
      FILE.replace(stanzaText(FILE, 'ens6') as string, ''),
    );
    expect(withStanza(FILE, 'ens7', (s) => persistedStanza(s, 1, want))).toBeUndefined();
  });
});

describe('nic-tuning under classic ifupdown', () => {
  it('marks an interface auto before its stanza (so ifup runs its post-up lines), and takes only that mark away again', () => {
    const marked = withAutoLine(FILE, 'ens6');
    expect(marked).toContain('\nauto ens6\niface ens6 inet manual\n');
    expect(withAutoLine(marked, 'ens6')).toBe(marked);
    expect(withAutoLine(FILE, 'vmbr0')).toBe(FILE);
    expect(withoutAutoLine(marked, 'ens6')).toBe(FILE);
    expect(withoutAutoLine(FILE, 'vmbr0')).not.toContain('auto vmbr0');
  });
});
