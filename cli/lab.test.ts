import { describe, expect, it } from 'vitest';
import type { LabHostStatus, LabStatus } from '../lab/status.js';
import { labFlavours, renderLabStatus } from './lab.js';

const host = (id: string, more: Partial<LabHostStatus> = {}): LabHostStatus => ({
  id,
  ns: `rf-${id}`,
  flavour: 'debian',
  address: `10.77.0.1${id.slice(1)}/16`,
  up: true,
  bootId: 'b',
  bridge: 'linux',
  ovs: { ovsdbServer: 1, vswitchd: 2 },
  sriov: { totalVfs: 7, numVfs: 0, iommu: false },
  cordoned: false,
  vms: [`vm${id.slice(1)}01`],
  ...more,
});
const status = (hosts: LabHostStatus[]): LabStatus => ({
  labDir: '/lab',
  network: '10.77.0.0/16',
  switch: { ns: 'rf-sw', address: '10.77.0.1/16' },
  hosts,
  vms: [],
});

describe('refit lab status', () => {
  it('lines up each host under the header', () => {
    expect(renderLabStatus(status([host('h1'), host('h2', { bridge: 'ovs', cordoned: true })])).split('\n')).toEqual([
      "lab /lab: switch rf-sw 10.77.0.1/16, network 10.77.0.0/16 (inside the lab's namespaces only)",
      'HOST  NS     ADDRESS        STATE  BRIDGE  VFS  CORDON    VMS',
      'h1    rf-h1  10.77.0.11/16  up     linux   0/7            vm101',
      'h2    rf-h2  10.77.0.12/16  up     ovs     0/7  cordoned  vm201',
    ]);
  });

  it('has a probe column only when the hosts were probed', () => {
    const lines = renderLabStatus(status([host('h1', { reachable: true }), host('h2', { reachable: false })])).split(
      '\n',
    );
    expect(lines[1]).toMatch(/CORDON\s+PROBE\s+VMS$/);
    expect(lines[2]).toMatch(/reachable\s+vm101$/);
    expect(lines[3]).toMatch(/UNREACHABLE\s+vm201$/);
  });
});

describe('refit lab up --flavour', () => {
  it('takes one flavour for every host or one per host', () => {
    expect(labFlavours('pve')).toEqual({ flavour: 'pve' });
    expect(labFlavours('h1=pve,h3=debian')).toEqual({ flavours: { h1: 'pve', h3: 'debian' } });
    for (const bad of ['proxmox', 'h1=pve,', 'h0=pve', 'h1:pve', 'h1=pve;rm'])
      expect(() => labFlavours(bad), bad).toThrow(/Expected debian, pve/);
  });
});
