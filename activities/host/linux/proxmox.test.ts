import { describe, expect, it } from 'vitest';
import {
  haMaintenanceArgv,
  hasLocalDisk,
  nodeCapacity,
  parseNodeResources,
  parseQemuList,
  parseQmConfig,
  parseStorages,
  passthroughDevices,
  pveshQemuListArgv,
  pveshStartArgv,
  qmConfigArgv,
  qmMigrateOfflineArgv,
  qmMigrateOnlineArgv,
} from './proxmox.js';

// `pvesh get /nodes/pve1/qemu --output-format json` on a PVE 8 node: the fields of qemu-server's
// vmlist (PVE/API2/Qemu.pm, PVE::QemuServer::vmstatus): vmid and memory as numbers, maxmem in bytes.
export const QEMU_LIST = JSON.stringify([
  {
    cpu: 0.0123,
    cpus: 2,
    disk: 0,
    diskread: 301924352,
    diskwrite: 10485760,
    maxdisk: 34359738368,
    maxmem: 4294967296,
    mem: 1288490188,
    name: 'web1',
    netin: 1820,
    netout: 0,
    pid: 2231,
    status: 'running',
    uptime: 8133,
    vmid: 100,
  },
  {
    cpu: 0.0831,
    cpus: 8,
    disk: 0,
    maxdisk: 68719476736,
    maxmem: 17179869184,
    mem: 9663676416,
    name: 'nfv-gw',
    pid: 2475,
    status: 'running',
    tags: 'sriov',
    uptime: 8120,
    vmid: 101,
  },
  {
    cpu: 0,
    cpus: 1,
    disk: 0,
    maxdisk: 8589934592,
    maxmem: 2147483648,
    mem: 0,
    name: 'tmpl',
    status: 'stopped',
    uptime: 0,
    vmid: 9000,
  },
]);

// `pvesh get /cluster/resources --type node --output-format json` on a two-node PVE 8 cluster: the
// fields of pve-manager's PVE/API2/Cluster.pm resources for a node (maxmem and mem in bytes, maxcpu).
export const NODE_RESOURCES = JSON.stringify([
  {
    'cgroup-mode': 2,
    cpu: 0.0214,
    disk: 4862115840,
    id: 'node/pve1',
    level: '',
    maxcpu: 16,
    maxdisk: 100861726720,
    maxmem: 135089643520,
    mem: 41818206208,
    node: 'pve1',
    status: 'online',
    type: 'node',
    uptime: 8402,
  },
  {
    'cgroup-mode': 2,
    cpu: 0.0102,
    disk: 4531965952,
    id: 'node/pve2',
    level: '',
    maxcpu: 16,
    maxdisk: 100861726720,
    maxmem: 135089643520,
    mem: 12884901888,
    node: 'pve2',
    status: 'online',
    type: 'node',
    uptime: 8391,
  },
]);

// `pvesh get /nodes/pve1/storage --output-format json`: pve-manager's storage index (PVE/API2/Storage/Status.pm),
// `shared` 0 or 1.
export const STORAGES = JSON.stringify([
  {
    active: 1,
    avail: 68702699520,
    content: 'iso,vztmpl,backup',
    enabled: 1,
    shared: 0,
    storage: 'local',
    total: 100861726720,
    type: 'dir',
    used: 4862115840,
  },
  {
    active: 1,
    avail: 1.5e12,
    content: 'images,rootdir',
    enabled: 1,
    shared: 0,
    storage: 'local-lvm',
    total: 1.8e12,
    type: 'lvmthin',
    used: 3e11,
  },
  {
    active: 1,
    avail: 9.1e12,
    content: 'images',
    enabled: 1,
    shared: 1,
    storage: 'ceph-vm',
    total: 1.2e13,
    type: 'rbd',
    used: 2.9e12,
  },
]);

// `qm config 101` (qm(1): the current configuration as "key: value" lines; the hostpci line as the
// PCI passthrough chapter of the admin guide writes a VF: "hostpci0: 0000:01:10.2,pcie=1").
export const QM_CONFIG_PASSTHROUGH = `boot: order=scsi0;net0
cores: 8
cpu: host
hostpci0: 0000:01:10.2,pcie=1
hostpci1: mapping=nic-vf,pcie=1
ide2: none,media=cdrom
machine: q35
memory: 16384
meta: creation-qemu=8.1.5,ctime=1717000000
name: nfv-gw
net0: virtio=BC:24:11:2E:7A:1B,bridge=vmbr0,firewall=1
numa: 0
ostype: l26
scsi0: ceph-vm:vm-101-disk-0,iothread=1,size=64G
scsihw: virtio-scsi-single
smbios1: uuid=6a1c4f7e-3e2b-4f57-9d7c-1b2e3f4a5b6c
sockets: 1
vmgenid: 0e3d7a3e-0a7c-4f0b-8f44-2b0c4c5d6e7f
`;

// `qm config 100`: a VM with its disk on local-lvm and an EFI disk, and a snapshot section after the current one.
export const QM_CONFIG_LOCAL = `bios: ovmf
boot: order=scsi0;ide2;net0
cores: 2
efidisk0: local-lvm:vm-100-disk-1,efitype=4m,pre-enrolled-keys=1,size=4M
ide2: local:iso/debian-12.5.0-amd64-netinst.iso,media=cdrom,size=629M
memory: 4096
name: web1
net0: virtio=BC:24:11:9F:01:22,bridge=vmbr0
parent: before-upgrade
scsi0: local-lvm:vm-100-disk-0,iothread=1,size=32G
scsihw: virtio-scsi-single

[before-upgrade]
hostpci0: 0000:02:00.0
memory: 2048
snaptime: 1716000000
`;

describe('Proxmox output parsers (documented formats)', () => {
  it('reads the node VM list: vmid, name, status and memory in bytes', () => {
    expect(parseQemuList(QEMU_LIST).map((v) => [v.vmid, v.name, v.status, v.maxmem])).toEqual([
      [100, 'web1', 'running', 4294967296],
      [101, 'nfv-gw', 'running', 17179869184],
      [9000, 'tmpl', 'stopped', 2147483648],
    ]);
  });

  it('refuses a list it cannot trust, saying where', () => {
    expect(() => parseQemuList('not json')).toThrow(/not JSON/);
    expect(() => parseQemuList(JSON.stringify([{ vmid: '1; rm -rf /', status: 'running' }]))).toThrow(/0\.vmid/);
    expect(() => parseQemuList(JSON.stringify([{ vmid: 5, status: 'running' }]))).toThrow(/0\.vmid/);
  });

  it("reads this node's memory and CPUs from /cluster/resources", () => {
    const nodes = parseNodeResources(NODE_RESOURCES);
    expect(nodeCapacity(nodes, 'pve1')).toEqual({
      memory: { totalBytes: 135089643520, freeBytes: 135089643520 - 41818206208 },
      cpus: 16,
    });
    expect(() => nodeCapacity(nodes, 'pve3')).toThrow('/cluster/resources lists no node pve3');
  });

  it('reads the current configuration only, and finds the passed-through devices', () => {
    const pinned = parseQmConfig(QM_CONFIG_PASSTHROUGH);
    expect(passthroughDevices(pinned)).toEqual(['hostpci0', 'hostpci1']);
    expect(pinned.get('net0')).toBe('virtio=BC:24:11:2E:7A:1B,bridge=vmbr0,firewall=1');
    const local = parseQmConfig(QM_CONFIG_LOCAL);
    expect(local.get('memory')).toBe('4096');
    expect(passthroughDevices(local)).toEqual([]); // the snapshot's hostpci0 is not the VM's now
  });

  it('tells local disks from shared ones (CD-ROMs and none do not count)', () => {
    const shared = parseStorages(STORAGES);
    expect(shared.get('ceph-vm')).toBe(true);
    expect(shared.get('local-lvm')).toBe(false);
    expect(hasLocalDisk(parseQmConfig(QM_CONFIG_PASSTHROUGH), shared)).toBe(false);
    expect(hasLocalDisk(parseQmConfig(QM_CONFIG_LOCAL), shared)).toBe(true);
    expect(hasLocalDisk(parseQmConfig('scsi0: /dev/sdb,size=10G\n'), shared)).toBe(true);
    expect(hasLocalDisk(parseQmConfig('virtio0: nfs-gone:101/vm-101-disk-0.qcow2\n'), shared)).toBe(true);
  });

  it('refuses a line that is no key: value', () => {
    expect(() => parseQmConfig('memory 4096\n')).toThrow(/cannot read the line "memory 4096"/);
  });
});

describe('Proxmox command lines', () => {
  it('builds the documented argument lists', () => {
    expect(pveshQemuListArgv('pve1')).toEqual(['pvesh', 'get', '/nodes/pve1/qemu', '--output-format', 'json']);
    expect(qmConfigArgv(101)).toEqual(['qm', 'config', '101']);
    expect(qmMigrateOnlineArgv(100, 'pve2', true)).toEqual([
      'qm',
      'migrate',
      '100',
      'pve2',
      '--online',
      '--with-local-disks',
    ]);
    expect(qmMigrateOnlineArgv(101, 'pve2', false)).toEqual(['qm', 'migrate', '101', 'pve2', '--online']);
    expect(qmMigrateOfflineArgv(101, 'pve2', false)).toEqual(['qm', 'migrate', '101', 'pve2']);
    expect(qmMigrateOfflineArgv(101, 'pve2', false, true)).toEqual(['qm', 'migrate', '101', 'pve2', '--force', '1']);
    expect(pveshStartArgv('pve2', 101)).toEqual(['pvesh', 'create', '/nodes/pve2/qemu/101/status/start']);
    expect(haMaintenanceArgv(true, 'pve1')).toEqual([
      'ha-manager',
      'crm-command',
      'node-maintenance',
      'enable',
      'pve1',
    ]);
    expect(haMaintenanceArgv(false, 'pve1')).toEqual([
      'ha-manager',
      'crm-command',
      'node-maintenance',
      'disable',
      'pve1',
    ]);
  });

  it('never lets a hostile node name or vmid reach a command', () => {
    for (const node of ['pve1; reboot', '-pve', '../nodes', 'pve1 --force', ''])
      expect(() => qmMigrateOnlineArgv(100, node, false)).toThrow(/not valid/);
    expect(() => pveshQemuListArgv('x/../../y')).toThrow(/not valid/);
    for (const id of [99, -1, 1.5, Number.NaN]) expect(() => qmConfigArgv(id)).toThrow(/vmid .* is not valid/);
  });
});
