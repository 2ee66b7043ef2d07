import { describe, expect, it } from 'vitest';
import type { ReceivedPresence } from '../../schemas/host.js';
import {
  chooseDestinations,
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
    expect(() => chooseDestinations(pinned, 'h1', [], now)).toThrow(/SR-IOV functions cannot be live-migrated: a/);
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
