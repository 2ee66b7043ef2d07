import { describe, expect, it } from 'vitest';
import { chooseDestinations } from '../activities/controller/inventory.js';
import type { ReceivedPresence } from '../schemas/host.js';
import { Labels } from '../schemas/common.js';
import type { LabFlavour } from '../activities/host/lab/state.js';
import { labHostLabels, mixedFlavours } from './workers.js';

/** A lab host's presence as its agent reports it, with `vms` running and room for more. */
function labHost(hostId: string, prefix: string, vms: string[], flavour: LabFlavour = 'debian'): ReceivedPresence {
  return {
    hostId,
    driver: 'lab',
    simulated: false,
    agentVersion: 'test',
    labels: labHostLabels(prefix, flavour),
    intervalMs: 3_000,
    receivedAt: new Date().toISOString(),
    facts: {
      bootId: 'b',
      bridge: { name: 'vmbr0', type: 'linux', ports: ['ens6'] },
      sriov: { nic: 'ens6', supported: true, totalVfs: 7, numVfs: 0, iommu: false },
      vms: vms.map((name) => ({ name, state: 'running', sriov: false })),
      cordoned: false,
      capacity: { vmSlots: 16, vmsRunning: vms.length },
    },
  } as ReceivedPresence;
}

describe('lab host labels', () => {
  it('are valid labels naming the lab and the flavour as the cluster', () => {
    expect(Labels.parse(labHostLabels('rf-d8e50-', 'pve'))).toEqual({
      role: 'hypervisor',
      lab: 'lab',
      cluster: 'lab-rf-d8e50-pve',
    });
    expect(labHostLabels('rf-', 'debian', { cluster: 'mine' })['cluster']).toBe('mine');
  });

  // The demo drained a pve host's VM to an emptier debian host: `qm migrate 201 h4 --online` failed
  // with "no such cluster node 'h4'" and the host was rolled back. A Proxmox cluster holds only its
  // own nodes; a debian host's VMs are not Proxmox VMs.
  it('keep a drain among hosts of the same flavour, however empty a host of the other flavour is', () => {
    const inventory = [
      labHost('h1', 'rf-d-', ['vm101', 'vm102'], 'pve'),
      labHost('h2', 'rf-d-', ['vm201'], 'pve'),
      labHost('h3', 'rf-d-', ['vm301', 'vm302'], 'debian'),
      labHost('h4', 'rf-d-', [], 'debian'),
    ];
    expect(chooseDestinations(inventory, 'h2', [])).toEqual({ vm201: 'h1' });
    expect(chooseDestinations(inventory, 'h3', [])).toEqual({ vm301: 'h4', vm302: 'h4' });
  });

  // A full test run drained a lab VM to an emptier host of another test file's lab, whose namespaces
  // were gone: the rollout never got further.
  it('keep a drain inside its own lab, however empty another lab on the same NATS is', () => {
    const inventory = [
      labHost('k1-h1', 'rf-k1-', ['vm101']),
      labHost('k1-h2', 'rf-k1-', ['vm201', 'vm202']),
      labHost('e2-h1', 'rf-e2-', []),
    ];
    expect(chooseDestinations(inventory, 'k1-h1', [])).toEqual({ vm101: 'k1-h2' });
  });

  it('mix the flavours so that each has a host to drain to', () => {
    expect(mixedFlavours(4)).toEqual({ h1: 'pve', h2: 'pve', h3: 'debian', h4: 'debian' });
    expect(mixedFlavours(5)).toEqual({ h1: 'pve', h2: 'pve', h3: 'debian', h4: 'debian', h5: 'debian' });
    for (const n of [1, 2, 3]) expect(new Set(Object.values(mixedFlavours(n))), `${n} hosts`).toEqual(new Set(['pve']));
    for (let n = 2; n <= 12; n++) {
      const counts = Object.values(mixedFlavours(n)).reduce<Record<string, number>>(
        (c, f) => ({ ...c, [f]: (c[f] ?? 0) + 1 }),
        {},
      );
      for (const [f, count] of Object.entries(counts)) expect(count, `${n} hosts: ${f}`).toBeGreaterThan(1);
    }
  });
});
