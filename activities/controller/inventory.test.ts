import { describe, expect, it } from 'vitest';
import type { ReceivedPresence } from '../../schemas/host.js';
import {
  chooseDestinations,
  leanTargets,
  NoDestinationError,
  selectTargets,
  unknownDestinations,
  waitForDestinations,
} from './inventory.js';

const now = Date.parse('2026-11-22T03:00:00Z');

function host(hostId: string, labels: Record<string, string>, ageMs = 1_000): ReceivedPresence {
  return {
    hostId,
    driver: 'sim',
    simulated: true,
    agentVersion: 'test',
    labels,
    facts: {
      bootId: `boot-${hostId}`,
      bridge: { name: 'vmbr0', type: 'linux', ports: ['ens6'] },
      sriov: { nic: 'ens6', supported: true, totalVfs: 7, numVfs: 0, iommu: false },
      vms: [],
      cordoned: false,
      capacity: { vmSlots: 8, vmsRunning: 0 },
    },
    reportedAt: new Date(now - ageMs).toISOString(),
    intervalMs: 3_000,
    receivedAt: new Date(now - ageMs).toISOString(),
  };
}

const inventory = [
  host('h1', { role: 'hypervisor', rack: 'r1' }),
  host('h2', { role: 'hypervisor', rack: 'r2' }),
  host('h3', { role: 'storage', rack: 'r1' }),
  host('h4', { role: 'hypervisor', rack: 'r1' }, 60_000),
];

describe('selectTargets', () => {
  it('selects hosts that carry every label of the selector and report now', () => {
    expect(selectTargets(inventory, { selector: { role: 'hypervisor', rack: 'r1' } }, now)).toMatchObject({
      hostIds: ['h1'],
      missing: [],
    });
  });

  it('reports named hosts that are absent or silent instead of dropping them', () => {
    expect(selectTargets(inventory, { hosts: ['h3', 'h4', 'h9'] }, now)).toMatchObject({
      hostIds: ['h3'],
      missing: ['h4', 'h9'],
    });
  });

  it('takes named hosts in the plan order, then selected hosts sorted, each once', () => {
    expect(selectTargets(inventory, { hosts: ['h3', 'h1'], selector: { role: 'hypervisor' } }, now).hostIds).toEqual([
      'h3',
      'h1',
      'h2',
    ]);
  });

  it('filters by facts, and reports named hosts the filter leaves out', () => {
    const converted = {
      ...host('h5', { role: 'hypervisor' }),
      facts: { ...host('h5', {}).facts, bridge: { name: 'vmbr0', type: 'ovs' as const, ports: [] } },
    };
    const r = selectTargets(
      [...inventory, converted],
      { hosts: ['h5'], selector: { role: 'hypervisor' }, facts: { bridge: 'linux' } },
      now,
    );
    expect(r.hostIds).toEqual(['h1', 'h2']);
    expect(r.excluded).toEqual([{ hostId: 'h5', reason: 'bridge is ovs, plan wants linux' }]);
    expect(r.labels.h1).toEqual({ role: 'hypervisor', rack: 'r1' });
  });
});

describe('offline targets', () => {
  it('returns hosts the selector matches that reported once but are offline now, apart from the online ones', () => {
    const r = selectTargets(inventory, { selector: { role: 'hypervisor' } }, now);
    expect(r.hostIds).toEqual(['h1', 'h2']);
    expect(r.offline).toEqual(['h4']);
    expect(r.missing).toEqual([]);
    expect(r.labels.h4).toEqual({ role: 'hypervisor', rack: 'r1' });
  });

  it('tells a named host that is offline from one that never reported; both stay missing for older rollouts', () => {
    const r = selectTargets(inventory, { hosts: ['h4', 'h9'] }, now);
    expect(r.offline).toEqual(['h4']);
    expect(r.missing).toEqual(['h4', 'h9']);
  });

  it('filters offline hosts by the facts they last reported, naming a named one it leaves out', () => {
    const old = host('h4', { role: 'hypervisor' }, 60_000);
    const converted = { ...old, facts: { ...old.facts, bridge: { name: 'vmbr0', type: 'ovs' as const, ports: [] } } };
    const r = selectTargets([...inventory.slice(0, 3), converted], { hosts: ['h4'], facts: { bridge: 'linux' } }, now);
    expect(r.offline).toEqual([]);
    expect(r.excluded).toEqual([{ hostId: 'h4', reason: 'bridge is ovs, plan wants linux (last report; offline)' }]);
  });
});

describe('online', () => {
  it('goes by when the server stored the presence, not by the time the host claims', () => {
    const claimsTheFuture = { ...host('h7', {}, 60_000), reportedAt: new Date(now + 86_400_000).toISOString() };
    expect(selectTargets([claimsTheFuture], { hosts: ['h7'] }, now).missing).toEqual(['h7']);
  });

  it('never counts a presence that was not read from the bucket', () => {
    const { receivedAt: _, ...unread } = host('h8', {});
    expect(selectTargets([unread], { hosts: ['h8'] }, now).missing).toEqual(['h8']);
  });

  it('believes a presence interval of at most a minute', () => {
    const sleeper = { ...host('h9', {}, 10 * 60_000), intervalMs: 3_600_000 };
    expect(selectTargets([sleeper], { hosts: ['h9'] }, now).missing).toEqual(['h9']);
  });
});

describe('chooseDestinations', () => {
  const withVms = (p: ReceivedPresence, vms: string[], slots: number, sriov = false): ReceivedPresence => ({
    ...p,
    facts: {
      ...p.facts,
      vms: vms.map((name) => ({ name, state: 'running', sriov })),
      capacity: { vmSlots: slots, vmsRunning: vms.length },
    },
  });
  const fleet = [
    withVms(host('h1', {}), ['a', 'b', 'c'], 8),
    withVms(host('h2', {}), ['d'], 2), // one free slot
    withVms(host('h3', {}), [], 2), // two free slots
    withVms(host('h4', {}), [], 8, false),
    { ...withVms(host('h5', {}), [], 8), facts: { ...withVms(host('h5', {}), [], 8).facts, cordoned: true } },
  ];

  it('sends VMs to the emptiest hosts outside the wave, never to cordoned or silent ones', () => {
    const stale = { ...withVms(host('h6', {}, 60_000), [], 8) };
    expect(chooseDestinations([...fleet, stale], 'h1', ['h4'], now)).toEqual({ a: 'h3', b: 'h2', c: 'h3' });
  });

  it('sends VMs only to hosts of the same driver and the same cluster label, however empty others are', () => {
    const source = withVms({ ...host('l1', { cluster: 'c1' }), driver: 'lab', simulated: false }, ['a'], 8);
    const sameCluster = withVms({ ...host('l2', { cluster: 'c1' }), driver: 'lab', simulated: false }, ['x'], 2);
    const otherDriver = withVms(host('s1', { cluster: 'c1' }), [], 16);
    const otherCluster = withVms({ ...host('l3', { cluster: 'c2' }), driver: 'lab', simulated: false }, [], 16);
    expect(chooseDestinations([source, otherDriver, otherCluster, sameCluster], 'l1', [], now)).toEqual({ a: 'l2' });
    expect(() => chooseDestinations([source, otherDriver, otherCluster], 'l1', [], now)).toThrow(
      /no host has room for VM a/,
    );
  });

  it('fails clearly when no host has room', () => {
    expect(() => chooseDestinations(fleet, 'h1', ['h2', 'h3', 'h4'], now)).toThrow(/no host has room for VM a/);
  });

  it('refuses to live-migrate VMs with SR-IOV functions', () => {
    const pinned = [withVms(host('h1', {}), ['a'], 8, true), ...fleet.slice(1)];
    expect(() => chooseDestinations(pinned, 'h1', [], now)).toThrow(/cannot be live-migrated: a \(the drain's/);
  });
});

describe('placement by memory', () => {
  const GiB = 2 ** 30;
  type Vm = { name: string; gib?: number; passthrough?: string[] };
  const node = (hostId: string, vms: Vm[], mem?: { total: number; free: number }, slots = 16): ReceivedPresence => {
    const base = host(hostId, {});
    return {
      ...base,
      facts: {
        ...base.facts,
        vms: vms.map((v) => ({
          name: v.name,
          state: 'running',
          sriov: v.passthrough !== undefined,
          ...(v.gib !== undefined ? { memoryBytes: v.gib * GiB } : {}),
          ...(v.passthrough !== undefined ? { passthrough: v.passthrough } : {}),
        })),
        capacity: { vmSlots: slots, vmsRunning: vms.length },
        ...(mem ? { memory: { totalBytes: mem.total * GiB, freeBytes: mem.free * GiB } } : {}),
      },
    };
  };

  it('places the largest VMs first on the host with the most free memory, not by VM slots', () => {
    const source = node('src', [
      { name: 'small', gib: 2 },
      { name: 'big', gib: 24 },
      { name: 'mid', gib: 8 },
    ]);
    // d1 runs 30 VMs (slots long exhausted) but has the memory; d2 has slots and little memory.
    const d1 = node(
      'd1',
      Array.from({ length: 30 }, (_, i) => ({ name: `x${i}`, gib: 1 })),
      { total: 128, free: 30 },
      16,
    );
    const d2 = node('d2', [], { total: 32, free: 12 }, 16);
    expect(chooseDestinations([source, d1, d2], 'src', [], now)).toEqual({ big: 'd1', mid: 'd2', small: 'd1' });
  });

  it('refuses a VM that fits nowhere, naming it, its size and the most headroom there is', () => {
    const source = node('src', [{ name: 'db', gib: 64 }]);
    const d1 = node('d1', [], { total: 64, free: 40 });
    const d2 = node('d2', [], { total: 64, free: 20 });
    expect(() => chooseDestinations([source, d1, d2], 'src', [], now)).toThrow(
      'no host has room for VM db (64.0 GiB) (most headroom: d1 with 40.0 GiB free)',
    );
  });

  it('counts what it already placed: two VMs that each fit do not both go where only one fits', () => {
    const source = node('src', [
      { name: 'a', gib: 6 },
      { name: 'b', gib: 6 },
    ]);
    const d1 = node('d1', [], { total: 16, free: 10 });
    expect(() => chooseDestinations([source, d1], 'src', [], now)).toThrow(/no host has room for VM b \(6.0 GiB\)/);
    const d2 = node('d2', [], { total: 16, free: 7 });
    expect(chooseDestinations([source, d1, d2], 'src', [], now)).toEqual({ a: 'd1', b: 'd2' });
  });

  it('falls back to VM slots where a host (an older agent) or a VM reports no memory', () => {
    const source = node('src', [{ name: 'a', gib: 4 }, { name: 'unsized' }]);
    const old = node('old', [], undefined, 1);
    const full = node('full', [], { total: 8, free: 1 }, 16);
    expect(chooseDestinations([source, old, full], 'src', [], now)).toEqual({ a: 'old', unsized: 'full' });
  });

  describe("VMs with passed-through devices, by the drain's nonMigratable", () => {
    const source = node('src', [
      { name: 'web', gib: 2 },
      { name: 'nfv', gib: 4, passthrough: ['hostpci0'] },
    ]);
    const dest = node('d1', [], { total: 64, free: 32 });

    it('refuse (the default) fails at once naming each VM and its devices', () => {
      for (const policy of [undefined, 'refuse'] as const) {
        let thrown: unknown;
        try {
          chooseDestinations([source, dest], 'src', [], now, policy);
        } catch (err) {
          thrown = err;
        }
        expect(thrown).toBeInstanceOf(NoDestinationError);
        expect((thrown as NoDestinationError).transient).toBe(false);
        expect((thrown as Error).message).toMatch(/cannot be live-migrated: nfv \(hostpci0\)/);
      }
    });

    it('skip gives them no destination; shutdown places them like the others', () => {
      expect(chooseDestinations([source, dest], 'src', [], now, 'skip')).toEqual({ web: 'd1' });
      expect(chooseDestinations([source, dest], 'src', [], now, 'shutdown')).toEqual({ web: 'd1', nfv: 'd1' });
    });

    it('shutdown still needs room for them', () => {
      const small = node('d1', [], { total: 8, free: 3 });
      expect(() => chooseDestinations([source, small], 'src', [], now, 'shutdown')).toThrow(
        /no host has room for VM nfv \(4.0 GiB\)/,
      );
    });
  });
});

describe('unknownDestinations', () => {
  const drain = (destinations: Record<string, string>) => ({ kind: 'drain' as const, params: { destinations } });
  const known = new Set(['h1', 'h2']);

  it('names every VM a plan sends to a host the inventory does not know, by its path', () => {
    expect(
      unknownDestinations(
        [drain({ web: 'h2', db: 'h9' }), { kind: 'undrain', params: {} }, drain({ mail: 'pve-old' })],
        known,
      ),
    ).toEqual([
      { path: 'steps[0].params.destinations.db', vm: 'db', destination: 'h9' },
      { path: 'steps[2].params.destinations.mail', vm: 'mail', destination: 'pve-old' },
    ]);
  });

  it('refuses the drained host itself as a destination', () => {
    expect(unknownDestinations([drain({ web: 'h1' })], known, 'h1').map((u) => u.destination)).toEqual(['h1']);
    expect(unknownDestinations([drain({ web: 'h1' })], known)).toEqual([]);
  });
});

describe('waitForDestinations', () => {
  // Found by npm run chaos: right after nats-server or the fleet restarts, every other host's presence
  // is a few seconds old; a drain in that moment failed for good ("no host has room") and the host
  // was rolled back, though the hosts reported again a second later.
  const source = {
    ...host('src', {}),
    facts: { ...host('src', {}).facts, vms: [{ name: 'vm1', state: 'running' as const, sriov: false }] },
  };
  const fresh = () => {
    const t = Date.now();
    return [source, host('d1', {}, 0)].map((p) => ({ ...p, receivedAt: new Date(t - 500).toISOString() }));
  };
  const silent = () => {
    const t = Date.now();
    return [
      { ...source, receivedAt: new Date(t - 500).toISOString() },
      { ...host('d1', {}), receivedAt: new Date(t - 60_000).toISOString() },
    ];
  };

  it('waits while the other hosts are silent and takes them once they report again', async () => {
    const since = Date.now();
    const read = () => (Date.now() - since < 600 ? silent() : fresh());
    await expect(waitForDestinations(read, 'src', [], { timeoutMs: 5_000, intervalMs: 100 })).resolves.toEqual({
      vm1: 'd1',
    });
  });

  it('gives up with the reason when no host has room within the bound', async () => {
    await expect(waitForDestinations(silent, 'src', [], { timeoutMs: 500, intervalMs: 100 })).rejects.toThrow(
      NoDestinationError,
    );
  });

  it('fails at once when the VMs cannot move at all', async () => {
    const pinned = () => [
      { ...source, facts: { ...source.facts, vms: [{ name: 'vf', state: 'running' as const, sriov: true }] } },
      ...fresh().slice(1),
    ];
    const started = Date.now();
    await expect(waitForDestinations(pinned, 'src', [], { timeoutMs: 5_000, intervalMs: 100 })).rejects.toThrow(
      /SR-IOV/,
    );
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe('leanTargets', () => {
  it('keeps only the failure-domain keys, by index in the order hostIds then offline', () => {
    const all = selectTargets(inventory, { selector: { role: 'hypervisor' } }, now);
    expect([all.hostIds, all.offline]).toEqual([['h1', 'h2'], ['h4']]);
    const lean = leanTargets(all, ['rack', 'zone']);
    expect(lean.labels).toEqual({});
    expect(lean.domains).toEqual({
      rack: { values: ['r1', 'r2'], of: [0, 1, 0] },
      zone: { values: [], of: [-1, -1, -1] },
    });
    expect(leanTargets(all, []).domains).toEqual({});
    // Everything else as resolved.
    expect({ ...lean, labels: all.labels, domains: undefined }).toEqual({ ...all, domains: undefined });
  });
});
