import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prepareStep, StepFailedError } from '../driver.js';
import { applyCommand, fakePveCluster, ipOnLinuxBridge, quietCtx, tempDirs, type PveReply } from './fixtures.js';
import { HostFacts } from '../../../schemas/host.js';
import { createLinuxDriver, onPath } from './driver.js';
import { parseMeminfo } from './meminfo.js';
import { QM_CONFIG_LOCAL, QM_CONFIG_PASSTHROUGH, STORAGES } from './proxmox.test.js';

const GiB = 2 ** 30;
const { tmp, removeAll } = tempDirs('refit-pve-drain-');
afterAll(removeAll);

const ctx = quietCtx;
const command = applyCommand;

interface Vm {
  vmid: number;
  name: string;
  node: string;
  status: 'running' | 'stopped';
  maxmem: number;
  config: string;
}

/**
 * A two-node cluster as qm, pvesh and ha-manager answer it (the formats of proxmox.test.ts), that
 * records every command and refuses what Proxmox refuses: a live migration of a VM with a hostpci
 * device ("can't migrate VM which uses local devices"), a migration of a running VM without --online.
 */
function cluster(vms: Vm[]) {
  const maintenance = new Set<string>();
  const migrate = (fail: PveReply['fail'], v: Vm, target: string, online: boolean) => {
    if (v.status === 'running' && /^hostpci\d+:/m.test(v.config.split('\n[')[0] ?? ''))
      fail("can't migrate VM which uses local devices: hostpci0");
    if (v.status === 'running' && !online) fail("can't migrate running VM without --online");
    v.node = target;
  };
  const { run, calls } = fakePveCluster((argv, { ok, fail }) => {
    const vm = (id: string) => vms.find((v) => String(v.vmid) === id) ?? fail(`Configuration file does not exist`);
    const ip = ipOnLinuxBridge(argv);
    if (ip !== undefined) return ok(ip);
    const [cmd, verb, a, b, ...rest] = argv;
    if (cmd === 'pvesh' && verb === 'get') {
      const m = /^\/nodes\/([^/]+)\/(qemu|storage)$/.exec(a ?? '');
      if (m?.[2] === 'qemu')
        return ok(
          JSON.stringify(
            vms
              .filter((v) => v.node === m[1])
              .map((v) => ({ vmid: v.vmid, name: v.name, status: v.status, maxmem: v.maxmem, cpus: 2 })),
          ),
        );
      if (m?.[2] === 'storage') return ok(STORAGES);
      if (a === '/cluster/resources')
        return ok(
          JSON.stringify(
            ['pve1', 'pve2'].map((node) => ({
              id: `node/${node}`,
              type: 'node',
              node,
              status: 'online',
              maxcpu: 16,
              maxmem: 128 * GiB,
              mem: vms.filter((v) => v.node === node && v.status === 'running').reduce((s, v) => s + v.maxmem, 8 * GiB),
            })),
          ),
        );
    }
    if (cmd === 'pvesh' && verb === 'create') {
      const m = /^\/nodes\/([^/]+)\/qemu\/(\d+)\/(status\/start|status\/shutdown|migrate)$/.exec(a ?? '');
      if (m === null) return fail(`no such path ${a}`);
      const v = vm(m[2] as string);
      if (v.node !== m[1]) return fail(`VM ${v.vmid} is not on node ${m[1]}`);
      if (m[3] === 'status/start') v.status = 'running';
      else if (m[3] === 'status/shutdown') v.status = 'stopped';
      else migrate(fail, v, argv[argv.indexOf('--target') + 1] as string, argv.includes('--online'));
      return ok(`UPID:${m[1]}:0000:task`);
    }
    if (cmd === 'qm' && verb === 'config') return ok(vm(a as string).config);
    if (cmd === 'qm' && verb === 'migrate') {
      const v = vm(a as string);
      if (v.node !== 'pve1') fail(`VM ${v.vmid} is not on this node`);
      migrate(fail, v, b as string, rest.includes('--online'));
      return ok();
    }
    if (cmd === 'qm' && verb === 'shutdown') {
      vm(a as string).status = 'stopped';
      return ok();
    }
    if (cmd === 'ha-manager') {
      const node = argv[4] as string;
      if (argv[3] === 'enable') maintenance.add(node);
      else maintenance.delete(node);
      return ok();
    }
    return ok();
  });
  return { run, calls, maintenance, vms };
}

const web = (): Vm => ({
  vmid: 100,
  name: 'web1',
  node: 'pve1',
  status: 'running',
  maxmem: 4 * GiB,
  config: QM_CONFIG_LOCAL,
});
const nfv = (): Vm => ({
  vmid: 101,
  name: 'nfv-gw',
  node: 'pve1',
  status: 'running',
  maxmem: 16 * GiB,
  config: QM_CONFIG_PASSTHROUGH,
});

function driverOn(c: ReturnType<typeof cluster>) {
  return createLinuxDriver({
    hostId: 'hv1',
    stateDir: tmp(),
    run: c.run,
    vmBackend: 'proxmox',
    pveNode: 'pve1',
    pveNodes: { hv2: 'pve2' },
    settleTimeoutMs: 2_000,
  });
}
const migrations = (calls: string[][]) => calls.filter((c) => c.includes('migrate'));

describe('the linux driver on Proxmox VE', () => {
  it("reports the node's VMs with memory and passed-through devices, and its memory and CPUs", async () => {
    const c = cluster([web(), nfv()]);
    const facts = HostFacts.parse(await driverOn(c).facts());
    expect(facts.vms).toEqual([
      { name: 'web1', state: 'running', sriov: false, memoryBytes: 4 * GiB },
      { name: 'nfv-gw', state: 'running', sriov: true, memoryBytes: 16 * GiB, passthrough: ['hostpci0', 'hostpci1'] },
    ]);
    expect(facts.memory).toEqual({ totalBytes: 128 * GiB, freeBytes: (128 - 8 - 20) * GiB });
    expect(facts.cpus).toBe(16);
  });

  it('drains live (with local disks where a disk is local) to the mapped node, enters maintenance, and undrain reverses it', async () => {
    const c = cluster([web()]);
    const driver = driverOn(c);
    const drained = await driver.runStep(prepareStep(command('drain', { destinations: { web1: 'hv2' } })), ctx());
    expect(migrations(c.calls)).toEqual([['qm', 'migrate', '100', 'pve2', '--online', '--with-local-disks']]);
    expect(c.vms[0]?.node).toBe('pve2');
    expect(c.maintenance.has('pve1')).toBe(true);
    expect(drained.summary).toBe('migrated 1 VMs away (web1→pve2); node pve1 in maintenance mode; host cordoned');
    expect((await driver.facts()).cordoned).toBe(true);

    c.calls.length = 0;
    const back = await driver.runStep(prepareStep(command('undrain', {})), ctx());
    const maintenanceOff = c.calls.findIndex((x) => x[0] === 'ha-manager');
    const firstMigrate = c.calls.findIndex((x) => x.includes('/nodes/pve2/qemu/100/migrate'));
    expect(c.calls[maintenanceOff]).toEqual(['ha-manager', 'crm-command', 'node-maintenance', 'disable', 'pve1']);
    expect(maintenanceOff).toBeLessThan(firstMigrate);
    expect(c.calls[firstMigrate]).toEqual([
      'pvesh',
      'create',
      '/nodes/pve2/qemu/100/migrate',
      '--target',
      'pve1',
      '--online',
      '1',
      '--with-local-disks',
      '1',
    ]);
    expect(c.vms[0]).toMatchObject({ node: 'pve1', status: 'running' });
    expect(c.maintenance.size).toBe(0);
    expect(back.summary).toMatch(/migrated 1 VMs back \(web1\)/);
    expect((await driver.facts()).cordoned).toBe(false);
  });

  it('refuse: fails naming each VM with a passed-through device, before any VM moves', async () => {
    const c = cluster([web(), nfv()]);
    const step = prepareStep(command('drain', { destinations: { web1: 'hv2', 'nfv-gw': 'hv2' } }));
    await expect(driverOn(c).runStep(step, ctx())).rejects.toThrow(
      'drain: VMs with passed-through devices cannot be live-migrated: nfv-gw (hostpci0, hostpci1) (nonMigratable: refuse)',
    );
    expect(migrations(c.calls)).toEqual([]);
    expect(c.maintenance.size).toBe(0);
  });

  it('shutdown: stops the VM, migrates it offline, starts it on the destination; undrain brings it back the same way', async () => {
    const c = cluster([web(), nfv()]);
    const driver = driverOn(c);
    const step = prepareStep(
      command('drain', { destinations: { web1: 'hv2', 'nfv-gw': 'hv2' }, nonMigratable: 'shutdown' }),
    );
    const drained = await driver.runStep(step, ctx());
    const cold = c.calls.filter((x) => x.includes('101') || x.some((y) => y.includes('/101/')));
    expect(cold.filter((x) => x[0] !== 'pvesh' || x[1] !== 'get')).toEqual([
      ['qm', 'config', '101'],
      ['qm', 'shutdown', '101', '--timeout', '180'],
      // qemu-server moves a VM with a local device (hostpciN) only with --force, even offline.
      ['qm', 'migrate', '101', 'pve2', '--force', '1'],
      ['pvesh', 'create', '/nodes/pve2/qemu/101/status/start'],
    ]);
    expect(c.vms.map((v) => [v.name, v.node, v.status])).toEqual([
      ['web1', 'pve2', 'running'],
      ['nfv-gw', 'pve2', 'running'],
    ]);
    expect(drained.summary).toMatch(/shut down, moved offline and started there: nfv-gw/);
    c.calls.length = 0;
    await driver.runStep(prepareStep(command('undrain', {})), ctx());
    expect(c.calls.filter((x) => x[2] === '/nodes/pve2/qemu/101/migrate')).toEqual([
      ['pvesh', 'create', '/nodes/pve2/qemu/101/migrate', '--target', 'pve1', '--force', '1'],
    ]);
    expect(c.vms.map((v) => [v.name, v.node, v.status])).toEqual([
      ['web1', 'pve1', 'running'],
      ['nfv-gw', 'pve1', 'running'],
    ]);
  });

  it('skip: leaves the VM, says the host is not drained, stays out of maintenance, and a reboot refuses', async () => {
    const c = cluster([web(), nfv()]);
    const driver = driverOn(c);
    const drained = await driver.runStep(
      prepareStep(command('drain', { destinations: { web1: 'hv2' }, nonMigratable: 'skip' })),
      ctx(),
    );
    expect(migrations(c.calls)).toEqual([['qm', 'migrate', '100', 'pve2', '--online', '--with-local-disks']]);
    expect(drained.summary).toMatch(/host NOT drained: left nfv-gw \(hostpci0, hostpci1\) running here/);
    expect(c.maintenance.size).toBe(0);
    const reboot = driver.runStep(prepareStep(command('reboot', {})), ctx());
    await expect(reboot).rejects.toThrow(StepFailedError);
    await expect(reboot).rejects.toThrow(
      'reboot refused: this host is not drained: the drain left nfv-gw running here (nonMigratable: skip)',
    );
  });

  it('never sends a hostile destination node name to a command', async () => {
    const c = cluster([web()]);
    const driver = createLinuxDriver({
      hostId: 'hv1',
      stateDir: tmp(),
      run: c.run,
      vmBackend: 'proxmox',
      pveNode: 'pve1',
      pveNodes: { hv2: 'pve2; reboot' },
    });
    await expect(
      driver.runStep(prepareStep(command('drain', { destinations: { web1: 'hv2' } })), ctx()),
    ).rejects.toThrow(/node of hv2 "pve2; reboot" is not valid/);
    expect(migrations(c.calls)).toEqual([]);
  });
});

describe('choosing the VM backend', () => {
  it('is Proxmox where both qm and pvesh are executables on PATH', async () => {
    const both = tmp();
    const onlyQm = tmp();
    for (const [dir, names] of [
      [both, ['qm', 'pvesh']],
      [onlyQm, ['qm']],
    ] as const)
      for (const n of names) {
        writeFileSync(path.join(dir, n), '#!/bin/sh\n');
        chmodSync(path.join(dir, n), 0o755);
      }
    expect(await onPath(['qm', 'pvesh'], `/nonexistent:${both}`)).toBe(true);
    expect(await onPath(['qm', 'pvesh'], onlyQm)).toBe(false);
    expect(await onPath(['qm', 'pvesh'], '')).toBe(false);
  });
});

describe('/proc/meminfo', () => {
  // proc(5) format, as a Debian 12 kernel prints it (head of the file).
  const MEMINFO = `MemTotal:       16318436 kB
MemFree:         1214860 kB
MemAvailable:   11023196 kB
Buffers:          612300 kB
Cached:          9021468 kB
`;
  it('reads MemTotal and MemAvailable in bytes (MemFree without MemAvailable)', () => {
    expect(parseMeminfo(MEMINFO)).toEqual({ totalBytes: 16318436 * 1024, freeBytes: 11023196 * 1024 });
    expect(parseMeminfo('MemTotal: 1000 kB\nMemFree: 10 kB\n')).toEqual({ totalBytes: 1024000, freeBytes: 10240 });
    expect(parseMeminfo('nothing here')).toBeUndefined();
  });
});
