import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { planLab } from '../activities/host/lab/layout.js';
import type { LabHost, LabVm } from '../activities/host/lab/state.js';
import { CommandFailedError, type CommandRunner } from '../activities/host/linux/command.js';
import { quietCtx } from '../activities/host/linux/fixtures.js';
import {
  nodeCapacity,
  parseNodeResources,
  parseQemuList,
  parseQmConfig,
  parseStorages,
  passthroughDevices,
} from '../activities/host/linux/proxmox.js';
import {
  drainProxmoxNode,
  notDrained,
  proxmoxFacts,
  undrainProxmoxNode,
  type ProxmoxHost,
} from '../activities/host/linux/proxmox-drain.js';
import { NODE_RESOURCES, QEMU_LIST, STORAGES } from '../activities/host/linux/proxmox.test.js';
import { writePveConfigs } from '../lab/host-files.js';
import {
  confPath,
  inMaintenance,
  LAB_NODE_BASE_USE,
  LAB_NODE_MEMORY,
  labMeminfo,
  standin,
  standinLog,
  type PveWorld,
} from '../lab/pve-standin.js';

/**
 * The lab's qm, pvesh and ha-manager stand-ins answer in the documented formats: their output parses
 * with the driver's own parsers and has only fields the documented output has
 * (activities/host/linux/proxmox.test.ts), and the driver's Proxmox drain runs against them. The lab
 * side (where a VM runs, a migration) is a fake here; test/lab/lab-pve-drain.test.ts runs them on the lab.
 */
const labDir = mkdtempSync(path.join(os.tmpdir(), 'refit-pve-standin-'));
const lab = planLab({ labDir, hosts: 3, vmsPerHost: 2, flavours: { h1: 'pve', h2: 'pve' } });
const host = (id: string) => lab.hosts.find((h) => h.id === id) as LabHost;
afterAll(() => rmSync(labDir, { recursive: true, force: true }));

/** Where each VM runs (absent: stopped), and what the stand-ins asked the lab to do. */
const where = new Map<string, string>();
const asked: string[] = [];
const world: PveWorld = {
  running: async (vm: LabVm, node: LabHost) => where.get(vm.name) === node.id,
  migrateLive: async (vm, from, to, tag) => {
    asked.push(`live ${vm.name} ${from.id}→${to.id}${tag === undefined ? '' : ` on VLAN ${tag}`}`);
    where.set(vm.name, to.id);
    return '0/40 pings lost (~0 ms)';
  },
  moveStopped: async (vm, from, to) => void asked.push(`offline ${vm.name} ${from.id}→${to.id}`),
  stop: async (vm) => {
    asked.push(`stop ${vm.name}`);
    where.delete(vm.name);
  },
  start: async (vm, node) => {
    asked.push(`start ${vm.name} on ${node.id}`);
    where.set(vm.name, node.id);
  },
  retag: async (vm, node, tag) => void asked.push(`retag ${vm.name} on ${node.id}: ${tag ?? 'none'}`),
};

/** A CommandRunner that runs the stand-ins in this process, as the wrappers on a pve lab host do. */
const runnerOn =
  (node: string): CommandRunner =>
  async (argv) => {
    const r = await standin(lab, node, argv[0] as string, argv.slice(1), world);
    const result = { argv, stdout: r.stdout, stderr: r.stderr, exitCode: r.code };
    if (r.code !== 0) throw new CommandFailedError(result);
    return result;
  };
const run = async (node: string, ...argv: string[]) => (await runnerOn(node)(argv)).stdout;
const fails = (node: string, ...argv: string[]) =>
  runnerOn(node)(argv).then(
    () => 'succeeded',
    (e: Error) => e.message,
  );
const pve = (node: string, stateDir: string): ProxmoxHost => ({
  run: runnerOn(node),
  node,
  nodeOf: (id) => id,
  stateDir,
  pollMs: 1,
  settleTimeoutMs: 2_000,
});

const keysOf = (json: string) => new Set(Object.keys((JSON.parse(json) as object[])[0] as object));

beforeEach(async () => {
  rmSync(path.join(labDir, 'pve'), { recursive: true, force: true });
  rmSync(path.join(labDir, 'pve-lab'), { recursive: true, force: true });
  await writePveConfigs(lab);
  where.clear();
  for (const vm of lab.vms) where.set(vm.name, vm.home);
  asked.length = 0;
  for (const id of ['h1', 'h2']) {
    mkdirSync(path.dirname(labMeminfo(host(id))), { recursive: true });
    writeFileSync(labMeminfo(host(id)), `MemTotal: ${LAB_NODE_MEMORY / 1024} kB\nMemAvailable: 0 kB\n`);
  }
});

describe("the lab's Proxmox VE stand-ins", () => {
  it('pvesh lists the node’s VMs, the nodes and the storages in the documented formats', async () => {
    const list = await run('h1', 'pvesh', 'get', '/nodes/h1/qemu', '--output-format', 'json');
    expect(parseQemuList(list)).toEqual([
      { vmid: 101, name: 'vm101', status: 'running', maxmem: 128 * 2 ** 20, cpus: 1 },
      { vmid: 102, name: 'vm102', status: 'running', maxmem: 128 * 2 ** 20, cpus: 1 },
    ]);
    const documented = keysOf(QEMU_LIST);
    expect([...keysOf(list)].filter((k) => !documented.has(k))).toEqual([]);

    where.delete('vm102');
    const nodes = await run('h2', 'pvesh', 'get', '/cluster/resources', '--type', 'node', '--output-format', 'json');
    const resources = parseNodeResources(nodes);
    expect(resources.map((r) => r.node)).toEqual(['h1', 'h2']);
    expect(nodeCapacity(resources, 'h1').memory).toEqual({
      totalBytes: LAB_NODE_MEMORY,
      freeBytes: LAB_NODE_MEMORY - LAB_NODE_BASE_USE - 128 * 2 ** 20,
    });
    expect([...keysOf(nodes)].filter((k) => !keysOf(NODE_RESOURCES).has(k))).toEqual([]);

    const storages = await run('h1', 'pvesh', 'get', '/nodes/h1/storage', '--output-format', 'json');
    expect(parseStorages(storages)).toEqual(
      new Map([
        ['local', false],
        ['local-lvm', false],
      ]),
    );
    expect([...keysOf(storages)].filter((k) => !keysOf(STORAGES).has(k))).toEqual([]);

    expect(await fails('h1', 'pvesh', 'get', '/nodes/h1/qemu')).toMatch(/only --output-format json/);
    expect(await fails('h1', 'pvesh', 'get', '/nodes/h3/qemu', '--output-format', 'json')).toMatch(
      /no such cluster node 'h3'/,
    );
  });

  it('qm config prints the configuration; qm set stores a NIC and a passed-through device', async () => {
    const config = parseQmConfig(await run('h1', 'qm', 'config', '101'));
    expect(config.get('name')).toBe('vm101');
    expect(config.get('memory')).toBe('128');
    expect(config.get('net0')).toMatch(/^virtio=52:54:00:77:01:01,bridge=vmbr0,firewall=0$/);
    await run('h1', 'qm', 'set', '101', '--net0', 'virtio=52:54:00:77:01:01,bridge=vmbr0,firewall=0,tag=10');
    await run('h1', 'qm', 'set', '101', '--hostpci0', '0000:00:06.1,pcie=1');
    const set = parseQmConfig(await run('h1', 'qm', 'config', '101'));
    expect(set.get('net0')).toBe('virtio=52:54:00:77:01:01,bridge=vmbr0,firewall=0,tag=10');
    expect(passthroughDevices(set)).toEqual(['hostpci0']);
    expect(readFileSync(confPath(labDir, 'h1', 101), 'utf8')).toMatch(/^hostpci0: 0000:00:06.1,pcie=1\n/m);
    expect(await fails('h1', 'qm', 'set', '101', '--bios', 'ovmf')).toMatch(/sets only netN, hostpciN and memory/);
    expect(await fails('h2', 'qm', 'config', '101')).toMatch(
      /Configuration file 'nodes\/h2\/qemu-server\/101.conf' does not exist/,
    );
    expect(readFileSync(standinLog(host('h1')), 'utf8')).toMatch(/ qm set 101 --hostpci0 0000:00:06.1,pcie=1\n/);
  });

  it('qm set retags a running VM’s NIC live, as qemu-server does; a stopped VM’s only in its configuration', async () => {
    const nic = (tag: string) => `virtio=52:54:00:77:01:01,bridge=vmbr0,firewall=0${tag}`;
    await run('h1', 'qm', 'set', '101', '--net0', nic(',tag=30'));
    await run('h1', 'qm', 'set', '101', '--net0', nic(',tag=30'), '--memory', '256');
    await run('h1', 'qm', 'set', '101', '--net0', nic(''));
    where.delete('vm102');
    await run('h1', 'qm', 'set', '102', '--net0', 'virtio=52:54:00:77:01:02,bridge=vmbr0,firewall=0,tag=30');
    // Only net0 has a tap in the lab; a second NIC is configuration only.
    await run('h1', 'qm', 'set', '101', '--net1', nic(',tag=40'));
    expect(asked).toEqual(['retag vm101 on h1: 30', 'retag vm101 on h1: none']);
    expect(parseQmConfig(await run('h1', 'qm', 'config', '102')).get('net0')).toMatch(/,tag=30$/);
  });

  it('a VM’s configured VLAN travels with it: qm migrate plugs it in on the target with its tag', async () => {
    await run('h1', 'qm', 'set', '101', '--net0', 'virtio=52:54:00:77:01:01,bridge=vmbr0,firewall=0,tag=30');
    asked.length = 0;
    await run('h1', 'qm', 'migrate', '101', 'h2', '--online');
    await run('h1', 'qm', 'migrate', '102', 'h2', '--online');
    expect(asked).toEqual(['live vm101 h1→h2 on VLAN 30', 'live vm102 h1→h2']);
  });

  it('qm migrate moves a running VM only with --online, never one with a passed-through device, only to a pve node', async () => {
    expect(await fails('h1', 'qm', 'migrate', '101', 'h2')).toMatch(/can't migrate running VM without --online/);
    expect(await fails('h1', 'qm', 'migrate', '101', 'h3', '--online')).toMatch(/no such cluster node 'h3'/);
    await run('h1', 'qm', 'set', '102', '--hostpci0', '0000:00:06.1');
    expect(await fails('h1', 'qm', 'migrate', '102', 'h2', '--online')).toMatch(
      /can't migrate VM which uses local devices: hostpci0/,
    );
    // Stopped, it moves offline only with --force (qemu-server's QemuMigrate::prepare), as root may.
    await run('h1', 'qm', 'shutdown', '102');
    expect(await fails('h1', 'qm', 'migrate', '102', 'h2')).toMatch(
      /can't migrate VM which uses local devices: hostpci0/,
    );
    expect(await run('h1', 'qm', 'migrate', '102', 'h2', '--force', '1')).toMatch(
      /migrating VM which uses local devices/,
    );
    expect(asked).toEqual(['stop vm102', 'offline vm102 h1→h2']);
    asked.length = 0;
    const out = await run('h1', 'qm', 'migrate', '101', 'h2', '--online');
    expect(out).toMatch(/starting migration of VM 101 to node 'h2' \(10\.77\.0\.12\)/);
    expect(out).toMatch(/migration finished successfully \(duration \d\d:\d\d:\d\d\)\n$/);
    expect(out).toMatch(/ refit lab: vm101→h2 \(0\/40 pings lost \(~0 ms\)\)\n/);
    expect(asked).toEqual(['live vm101 h1→h2']);
    expect(parseQemuList(await run('h2', 'pvesh', 'get', '/nodes/h2/qemu', '--output-format', 'json'))).toContainEqual(
      expect.objectContaining({ vmid: 101, status: 'running' }),
    );
    await run('h1', 'ha-manager', 'crm-command', 'node-maintenance', 'enable', 'h1');
    expect(inMaintenance(labDir, 'h1')).toBe(true);
    expect(await run('h1', 'ha-manager', 'status')).toMatch(/^lrm h1 \(maintenance mode, /m);
    await run('h1', 'ha-manager', 'crm-command', 'node-maintenance', 'disable', 'h1');
    expect(inMaintenance(labDir, 'h1')).toBe(false);
  });

  it("the driver's Proxmox drain and undrain run against them: qm migrate, maintenance on, then off and back", async () => {
    const state = mkdtempSync(path.join(labDir, 'state-'));
    const facts = await proxmoxFacts(pve('h1', state));
    expect(facts.vms.map((v) => [v.name, v.memoryBytes, v.sriov])).toEqual([
      ['vm101', 128 * 2 ** 20, false],
      ['vm102', 128 * 2 ** 20, false],
    ]);
    expect(facts.cpus).toBe(os.cpus().length);
    const drained = await drainProxmoxNode(pve('h1', state), { vm101: 'h2', vm102: 'h2' }, 'refuse', quietCtx());
    expect(drained.summary).toBe(
      'migrated 2 VMs away (vm101→h2, vm102→h2); node h1 in maintenance mode; host cordoned',
    );
    expect(asked).toEqual(['live vm101 h1→h2', 'live vm102 h1→h2']);
    expect(inMaintenance(labDir, 'h1')).toBe(true);
    const back = await undrainProxmoxNode(pve('h1', state), quietCtx());
    expect(back.summary).toMatch(/^migrated 2 VMs back \(vm101, vm102\); node h1 out of maintenance/);
    expect([where.get('vm101'), where.get('vm102')]).toEqual(['h1', 'h1']);
    expect(inMaintenance(labDir, 'h1')).toBe(false);
    expect(readFileSync(standinLog(host('h1')), 'utf8')).toMatch(
      / pvesh create \/nodes\/h2\/qemu\/101\/migrate --target h1 --online 1\n/,
    );
  });

  it('nonMigratable: refuse names the VM, shutdown stops, moves offline and starts there, skip leaves the host undrained', async () => {
    await run('h1', 'qm', 'set', '102', '--hostpci0', '0000:00:06.1,pcie=1');
    const state = mkdtempSync(path.join(labDir, 'state-'));
    await expect(
      drainProxmoxNode(pve('h1', state), { vm101: 'h2', vm102: 'h2' }, 'refuse', quietCtx()),
    ).rejects.toThrow(/cannot be live-migrated: vm102 \(hostpci0\) \(nonMigratable: refuse\)/);
    expect(asked).toEqual([]);

    const skipped = await drainProxmoxNode(pve('h1', state), { vm101: 'h2' }, 'skip', quietCtx());
    expect(skipped.summary).toMatch(/host NOT drained: left vm102 \(hostpci0\) running here/);
    expect(inMaintenance(labDir, 'h1')).toBe(false);
    expect(await notDrained(pve('h1', state))).toMatch(/the drain left vm102 running here/);
    await undrainProxmoxNode(pve('h1', state), quietCtx());

    asked.length = 0;
    const shut = await drainProxmoxNode(pve('h1', state), { vm101: 'h2', vm102: 'h2' }, 'shutdown', quietCtx());
    expect(shut.summary).toMatch(/shut down, moved offline and started there: vm102/);
    expect(asked).toEqual(['live vm101 h1→h2', 'stop vm102', 'offline vm102 h1→h2', 'start vm102 on h2']);
    asked.length = 0;
    await undrainProxmoxNode(pve('h1', state), quietCtx());
    expect(asked).toEqual(['live vm101 h2→h1', 'stop vm102', 'offline vm102 h2→h1', 'start vm102 on h1']);
  });
});
