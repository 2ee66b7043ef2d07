import { describe, expect, it } from 'vitest';
import { chooseDestinations } from '../activities/controller/inventory.js';
import type { ReceivedPresence } from '../schemas/host.js';
import { Labels } from '../schemas/common.js';
import { labHostLabels } from './workers.js';

/** A lab host's presence as its agent reports it, with `vms` running and room for more. */
function labHost(hostId: string, prefix: string, vms: string[]): ReceivedPresence {
  return {
    hostId,
    driver: 'lab',
    simulated: false,
    agentVersion: 'test',
    labels: labHostLabels(prefix),
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
  it('are valid labels naming the lab as the cluster', () => {
    expect(Labels.parse(labHostLabels('rf-d8e50-'))).toEqual({
      role: 'hypervisor',
      lab: 'lab',
      cluster: 'lab-rf-d8e50',
    });
    expect(labHostLabels('rf-', { cluster: 'mine' })['cluster']).toBe('mine');
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
});
