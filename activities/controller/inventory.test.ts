import { describe, expect, it } from 'vitest';
import type { HostPresence } from '../../schemas/host.js';
import { selectTargets } from './inventory.js';

const now = Date.parse('2026-11-22T03:00:00Z');

function host(hostId: string, labels: Record<string, string>, ageMs = 1_000): HostPresence {
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
    expect(selectTargets(inventory, { selector: { role: 'hypervisor', rack: 'r1' } }, now)).toEqual({ hostIds: ['h1'], missing: [] });
  });

  it('reports named hosts that are absent or silent instead of dropping them', () => {
    expect(selectTargets(inventory, { hosts: ['h3', 'h4', 'h9'] }, now)).toEqual({ hostIds: ['h3'], missing: ['h4', 'h9'] });
  });

  it('takes named hosts and selected hosts together, each once, in order', () => {
    expect(selectTargets(inventory, { hosts: ['h3', 'h1'], selector: { role: 'hypervisor' } }, now).hostIds).toEqual(['h1', 'h2', 'h3']);
  });
});
