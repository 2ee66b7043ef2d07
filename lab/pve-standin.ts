import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runningBridge } from '../activities/host/lab/attach.js';
import { hostRunner, rootRunner } from '../activities/host/lab/exec.js';
import { hostPaths } from '../activities/host/lab/layout.js';
import { describeMove, locateVms, migrateVm } from '../activities/host/lab/migrate.js';
import { guestPid, startGuest, stopGuest, waitForGuest } from '../activities/host/lab/qemu.js';
import type { LabHost, LabState, LabVm } from '../activities/host/lab/state.js';
import { parseMeminfo } from '../activities/host/linux/meminfo.js';
import { ifName } from '../activities/host/linux/names.js';
import { ovsPortTagArgv, qmNetPlacement } from '../activities/host/linux/vm-nic-vlan.js';

/**
 * The lab's stand-ins for the Proxmox VE commands refit runs on a node (qm, pvesh, ha-manager), for
 * exactly that subset, answering in the formats the driver's parsers are pinned to
 * (activities/host/linux/proxmox.test.ts). They act on the lab: the cluster's configuration lives in
 * <lab>/pve as pmxcfs keeps /etc/pve (nodes/<node>/qemu-server/<vmid>.conf; each pve host's /etc/pve
 * links to it), a VM runs where the lab says it runs, and `qm migrate --online` is the lab's real
 * migration (QMP for QEMU guests, the veth for namespace VMs). The pve lab hosts are the cluster's
 * nodes, named by their host ids. What the real commands do that refit does not use is refused,
 * saying so.
 */

/** The lab's pmxcfs: what every node sees as /etc/pve. */
export const pveDir = (labDir: string) => path.join(labDir, 'pve');
/** The stand-ins' own state that Proxmox keeps elsewhere (HA manager status, powered-off namespace VMs). */
const pveLabDir = (labDir: string) => path.join(labDir, 'pve-lab');
export const confPath = (labDir: string, node: string, vmid: number) =>
  path.join(pveDir(labDir), 'nodes', node, 'qemu-server', `${vmid}.conf`);
/**
 * Where each stand-in call on a node is logged: `<ISO time> <argv>`, then what it printed (and the
 * log of a task it ran), indented. A live migration's line `refit lab: <vm>→<node> (<loss>)` says what
 * the lab measured.
 */
export const standinLog = (host: LabHost) => hostPaths(host).pveStandinLog;
/** What a lab node's kernel reports as its memory (pvestatd's maxmem): <root>/proc/meminfo. */
export const labMeminfo = (host: LabHost) => path.join(host.root, 'proc/meminfo');
/** A lab node's memory unless its meminfo says otherwise: 4 GiB. */
export const LAB_NODE_MEMORY = 4 * 2 ** 30;
/** What a lab node uses besides its VMs (pvestatd's mem includes the host's own use). */
export const LAB_NODE_BASE_USE = 256 * 2 ** 20;

export interface StandinResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** What the stand-ins do to the lab's VMs; the lab's own by default (labWorld), fakes in unit tests. */
export interface PveWorld {
  running(vm: LabVm, node: LabHost): Promise<boolean>;
  /**
   * A live migration; returns what it measured (loss, downtime). `tag`, here and in start: the VLAN of
   * the VM's net0 as its configuration says, which its tap gets on the node (the config travels with
   * a Proxmox VM; without a tag the lab's choice, the node's native VLAN, stays).
   */
  migrateLive(vm: LabVm, from: LabHost, to: LabHost, tag: number | undefined): Promise<string>;
  /** A stopped VM's move (its disks would go; the lab's namespace VM takes its veth along). */
  moveStopped(vm: LabVm, from: LabHost, to: LabHost, tag: number | undefined): Promise<void>;
  stop(vm: LabVm, node: LabHost): Promise<void>;
  start(vm: LabVm, node: LabHost, tag: number | undefined): Promise<void>;
  /** A running VM's NIC (its tap) on another VLAN at once, as qemu-server hotplugs a changed `tag=`. */
  retag(vm: LabVm, node: LabHost, tag: number | undefined): Promise<void>;
}

const stoppedMark = (labDir: string, vm: LabVm) => path.join(pveLabDir(labDir), `stopped-${vm.vmid}`);

/** The lab's VMs: QEMU guests run where their QEMU runs; a namespace VM where its veth is, unless powered off. */
export function labWorld(lab: LabState): PveWorld {
  const link = (node: LabHost, vm: LabVm, state: 'up' | 'down') =>
    rootRunner(['ip', '-n', node.ns, 'link', 'set', 'dev', vm.port, state]);
  // Where the namespace VMs are, read once per call until something moves.
  let where: Promise<Map<string, string>> | undefined;
  return {
    async running(vm, node) {
      if (vm.kind === 'qemu') return (await guestPid(node, vm)) !== undefined;
      where ??= locateVms(lab);
      return (await where).get(vm.name) === node.id && !existsSync(stoppedMark(lab.labDir, vm));
    },
    async migrateLive(vm, _from, to, tag) {
      where = undefined;
      return describeMove(await migrateVm(lab, vm.name, to.id, { tag }));
    },
    async moveStopped(vm, _from, to, tag) {
      where = undefined;
      if (vm.kind === 'qemu') return;
      await migrateVm(lab, vm.name, to.id, { tag });
      await link(to, vm, 'down');
    },
    async stop(vm, node) {
      if (vm.kind === 'qemu') return stopGuest(node, vm);
      await mkdir(pveLabDir(lab.labDir), { recursive: true });
      await writeFile(stoppedMark(lab.labDir, vm), `${new Date().toISOString()}\n`);
      await link(node, vm, 'down');
    },
    async start(vm, node, tag) {
      if (vm.kind === 'qemu') {
        await startGuest(lab, node, vm, undefined, tag);
        return waitForGuest(node, vm);
      }
      await link(node, vm, 'up');
      await rm(stoppedMark(lab.labDir, vm), { force: true });
    },
    // On an OVS bridge the port's tag, as qemu-server's tap_plug sets it. The lab's Linux bridges are
    // not VLAN-aware and Proxmox would move the tap to a vmbr0v<tag> bridge there: not modelled.
    async retag(vm, node, tag) {
      const bridge = await runningBridge(lab, node);
      if (bridge.type === 'ovs' && bridge.ports.includes(vm.port))
        await hostRunner(lab, node)(ovsPortTagArgv(ifName(vm.port), tag));
    },
  };
}

/** The configuration file of a lab VM as `qm create` would leave it (keys sorted, as qemu-server writes them). */
export function labVmConfig(vm: LabVm, memoryMb: number): string {
  const hex = (x: number) => x.toString(16).padStart(2, '0');
  const mac = vm.mac ?? `52:54:00:77:${hex(Math.floor(vm.vmid / 100) % 256)}:${hex(vm.vmid % 100)}`;
  return [
    'boot: order=net0',
    'cores: 1',
    `memory: ${memoryMb}`,
    `name: ${vm.name}`,
    `net0: virtio=${mac.toUpperCase()},bridge=vmbr0,firewall=0`,
    'ostype: l26',
    '',
  ].join('\n');
}

class PveError extends Error {}
const fail = (message: string): never => {
  throw new PveError(message);
};

/** `key: value` lines of a configuration's current section, in file order. */
function configLines(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('[')) break;
    const m = /^([a-z][a-z0-9_-]*):\s?(.*)$/.exec(line);
    if (m !== null) out.push([m[1] as string, m[2] as string]);
  }
  return out;
}

const timestamp = () => new Date().toISOString().replace('T', ' ').slice(0, 19);
const upid = (node: string, type: string, id: number) =>
  `UPID:${node}:${process.pid.toString(16).toUpperCase().padStart(8, '0')}:00000000:${Math.floor(Date.now() / 1000)
    .toString(16)
    .toUpperCase()}:${type}:${id}:root@pam:`;

/** One stand-in call on `node`: `program` is qm, pvesh or ha-manager, `args` what followed it. */
export async function standin(
  lab: LabState,
  node: string,
  program: string,
  args: readonly string[],
  world: PveWorld = labWorld(lab),
): Promise<StandinResult> {
  const nodes = lab.hosts.filter((h) => h.flavour === 'pve');
  const local = nodes.find((h) => h.id === node);
  if (local === undefined) return { code: 255, stdout: '', stderr: `refit lab: ${node} is no pve lab host\n` };
  const out: string[] = [];
  const say = (line: string) => out.push(line);
  await mkdir(path.dirname(standinLog(local)), { recursive: true });
  await appendFile(standinLog(local), `${new Date().toISOString()} ${[program, ...args].join(' ')}\n`);
  try {
    const cluster = new Cluster(lab, nodes, world);
    if (program === 'qm') await qm(cluster, local, args, say);
    else if (program === 'pvesh') await pvesh(cluster, local, args, say);
    else if (program === 'ha-manager') await haManager(cluster, args, say);
    else fail(`refit lab: no stand-in for ${program}`);
    const stdout = out.map((l) => `${l}\n`).join('');
    await appendFile(standinLog(local), stdout.replace(/^(?=.)/gm, '  '));
    return { code: 0, stdout, stderr: '' };
  } catch (err) {
    if (!(err instanceof PveError)) throw err;
    await appendFile(standinLog(local), `  error: ${err.message}\n`);
    return { code: 255, stdout: out.map((l) => `${l}\n`).join(''), stderr: `${err.message}\n` };
  }
}

class Cluster {
  constructor(
    readonly lab: LabState,
    readonly nodes: LabHost[],
    readonly world: PveWorld,
  ) {}

  node(name: string): LabHost {
    return this.nodes.find((n) => n.id === name) ?? fail(`no such cluster node '${name}'`);
  }

  /** The node whose directory holds the VM's configuration. */
  nodeOf(vmid: number): LabHost | undefined {
    return this.nodes.find((n) => existsSync(confPath(this.lab.labDir, n.id, vmid)));
  }

  vm(vmid: number): LabVm {
    return this.lab.vms.find((v) => v.vmid === vmid) ?? fail(`refit lab: VM ${vmid} is no lab VM`);
  }

  async config(node: LabHost, vmid: number): Promise<[string, string][]> {
    const file = confPath(this.lab.labDir, node.id, vmid);
    const text = await readFile(file, 'utf8').catch(() =>
      fail(`Configuration file 'nodes/${node.id}/qemu-server/${vmid}.conf' does not exist`),
    );
    return configLines(text);
  }

  async writeConfig(node: LabHost, vmid: number, lines: [string, string][]): Promise<void> {
    const file = confPath(this.lab.labDir, node.id, vmid);
    const sorted = [...lines].sort(([a], [b]) => a.localeCompare(b));
    await writeFile(`${file}.new`, sorted.map(([k, v]) => `${k}: ${v}\n`).join(''));
    await rename(`${file}.new`, file);
  }

  async vmids(node: LabHost): Promise<number[]> {
    const dir = path.dirname(confPath(this.lab.labDir, node.id, 100));
    const names = await readdir(dir).catch(() => [] as string[]);
    return names.flatMap((n) => (/^\d+\.conf$/.test(n) ? [Number(n.slice(0, -5))] : [])).sort((a, b) => a - b);
  }

  /** A VM of the lab on this node, as qemu-server's vmlist reports it. */
  async status(node: LabHost, vmid: number) {
    const conf = new Map(await this.config(node, vmid));
    const maxmem = Number(conf.get('memory') ?? 512) * 2 ** 20;
    const vm = this.lab.vms.find((v) => v.vmid === vmid);
    const running = vm !== undefined && (await this.world.running(vm, node));
    return {
      cpu: 0,
      cpus: Number(conf.get('cores') ?? 1),
      disk: 0,
      maxdisk: 0,
      maxmem,
      mem: running ? Math.round(maxmem / 2) : 0,
      ...(conf.has('name') ? { name: conf.get('name') } : {}),
      status: running ? 'running' : 'stopped',
      uptime: 0,
      vmid,
    };
  }

  /** A node's memory as pvestatd reports it: its meminfo's total, its own use plus its running VMs' memory. */
  async resources(node: LabHost) {
    const meminfo = parseMeminfo(await readFile(labMeminfo(node), 'utf8').catch(() => ''));
    const maxmem = meminfo?.totalBytes ?? LAB_NODE_MEMORY;
    let used = LAB_NODE_BASE_USE;
    for (const vmid of await this.vmids(node)) {
      const s = await this.status(node, vmid);
      if (s.status === 'running') used += s.maxmem;
    }
    return {
      cpu: 0,
      disk: 0,
      id: `node/${node.id}`,
      level: '',
      maxcpu: os.cpus().length,
      maxdisk: 0,
      maxmem,
      mem: Math.min(maxmem, used),
      node: node.id,
      status: 'online',
      type: 'node',
      uptime: Math.round(os.uptime()),
    };
  }

  /**
   * `qm migrate` as qemu-server does it (PVE/QemuMigrate.pm `prepare`): a running VM only with
   * --online; a VM with a local (passed-through) device never live, and offline only with --force;
   * the configuration moves to the target's directory when the VM runs there.
   */
  async migrate(
    from: LabHost,
    vmid: number,
    target: string,
    how: { online: boolean; force: boolean },
    say: (l: string) => void,
  ) {
    const { online } = how;
    const to = this.node(target);
    if (to.id === from.id) fail(`target is local node.`);
    const vm = this.vm(vmid);
    const conf = await this.config(from, vmid);
    const running = await this.world.running(vm, from);
    if (running && !online) fail(`can't migrate running VM without --online`);
    const local = conf.map(([k]) => k).filter((k) => /^hostpci\d+$/.test(k));
    const tag = net0Tag(conf);
    if (local.length > 0 && (running || !how.force))
      fail(`can't migrate VM which uses local devices: ${local.join(', ')}`);
    if (local.length > 0) say(`${timestamp()} migrating VM which uses local devices`);
    const started = Date.now();
    say(`${timestamp()} starting migration of VM ${vmid} to node '${to.id}' (${to.address.split('/')[0]})`);
    if (running) {
      say(`${timestamp()} starting VM ${vmid} on remote node '${to.id}'`);
      const measured = await this.world.migrateLive(vm, from, to, tag);
      if (measured) say(`${timestamp()} refit lab: ${vm.name}→${to.id} (${measured})`);
    } else {
      await this.world.moveStopped(vm, from, to, tag);
    }
    await rename(confPath(this.lab.labDir, from.id, vmid), confPath(this.lab.labDir, to.id, vmid));
    const s = Math.round((Date.now() - started) / 1000);
    const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60].map((n) => String(n).padStart(2, '0'));
    say(`${timestamp()} migration finished successfully (duration ${hms.join(':')})`);
  }

  async power(node: LabHost, vmid: number, on: boolean): Promise<void> {
    const conf = await this.config(node, vmid);
    const vm = this.vm(vmid);
    const running = await this.world.running(vm, node);
    if (on && running) fail(`VM ${vmid} already running`);
    if (on) await this.world.start(vm, node, net0Tag(conf));
    else if (running) await this.world.stop(vm, node);
  }

  maintenanceFile = (node: string) => path.join(pveLabDir(this.lab.labDir), `maintenance-${node}`);
}

/** The VLAN of a configuration's net0 (the lab VM's one NIC, on its tap), undefined without a tag. */
function net0Tag(conf: [string, string][]): number | undefined {
  const net0 = conf.find(([k]) => k === 'net0')?.[1];
  return net0 === undefined ? undefined : qmNetPlacement(net0).tag;
}

/** `--name value` options after the positional arguments; a flag alone is `1`. */
function options(args: readonly string[], allowed: readonly string[], flags: readonly string[] = []) {
  const positional: string[] = [];
  const opts = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const name = a.slice(2);
    if (flags.includes(name) && (args[i + 1] === undefined || args[i + 1]?.startsWith('--'))) opts.set(name, '1');
    else if (allowed.includes(name) || flags.includes(name)) {
      const value = args[++i];
      if (value === undefined) fail(`400 not enough arguments: --${name} needs a value`);
      opts.set(name, value as string);
    } else fail(`refit lab: this stand-in does not know the option --${name}`);
  }
  return { positional, opts };
}

const vmidOf = (s: string | undefined) =>
  s !== undefined && /^\d+$/.test(s) && Number(s) >= 100
    ? Number(s)
    : fail(`400 Parameter verification failed.\nvmid: invalid format - value '${s ?? ''}' is not a valid VM ID`);

async function qm(c: Cluster, local: LabHost, args: readonly string[], say: (l: string) => void): Promise<void> {
  const [command, ...rest] = args;
  switch (command) {
    case 'config': {
      const { positional } = options(rest, [], ['current']);
      for (const [k, v] of await c.config(local, vmidOf(positional[0]))) say(`${k}: ${v}`);
      return;
    }
    case 'status': {
      const { positional } = options(rest, []);
      say(`status: ${(await c.status(local, vmidOf(positional[0]))).status}`);
      return;
    }
    case 'migrate': {
      const { positional, opts } = options(rest, [], ['online', 'with-local-disks', 'force']);
      const [id, target] = positional;
      if (target === undefined) fail('400 not enough arguments');
      const how = { online: opts.get('online') === '1', force: opts.get('force') === '1' };
      await c.migrate(local, vmidOf(id), target as string, how, say);
      return;
    }
    case 'shutdown':
    case 'stop':
    case 'start': {
      const { positional } = options(rest, ['timeout']);
      await c.power(local, vmidOf(positional[0]), command === 'start');
      return;
    }
    case 'set': {
      const id = vmidOf(rest[0]);
      const settable = /^(net\d+|hostpci\d+|memory)$/;
      const conf = new Map(await c.config(local, id));
      const tagBefore = net0Tag([...conf]);
      for (let i = 1; i < rest.length; i += 2) {
        const key = (rest[i] ?? '').replace(/^--/, '');
        const value = rest[i + 1];
        if (value === undefined) fail(`400 not enough arguments: --${key} needs a value`);
        if (key === 'delete') for (const k of (value as string).split(',')) conf.delete(k);
        else if (settable.test(key)) conf.set(key, value as string);
        else fail(`refit lab: this qm stand-in sets only netN, hostpciN and memory, not ${key}`);
      }
      await c.writeConfig(local, id, [...conf]);
      // A running VM's changed VLAN applies at once (qemu-server's vmconfig_update_net re-plugs the
      // tap with the new tag). The lab's VMs have one NIC, net0, on their tap.
      const tagAfter = net0Tag([...conf]);
      const vm = c.vm(id);
      if (tagAfter !== tagBefore && (await c.world.running(vm, local))) await c.world.retag(vm, local, tagAfter);
      return;
    }
    default:
      fail(
        `refit lab: this qm stand-in knows config, status, migrate, shutdown, stop, start and set, not ${command ?? '(none)'}`,
      );
  }
}

const NODE_PATH = /^\/nodes\/([A-Za-z0-9-]+)\/(.+)$/;

async function pvesh(c: Cluster, local: LabHost, args: readonly string[], say: (l: string) => void): Promise<void> {
  const [verb, apiPath, ...rest] = args;
  if (apiPath === undefined) fail('400 not enough arguments');
  const { opts } = options(rest, ['output-format', 'type', 'target', 'online', 'with-local-disks', 'force', 'timeout']);
  const json = (value: unknown) => {
    if (opts.get('output-format') !== 'json') fail('refit lab: this pvesh stand-in prints only --output-format json');
    say(JSON.stringify(value));
  };
  const m = NODE_PATH.exec(apiPath as string);
  if (verb === 'get' && apiPath === '/cluster/resources') {
    const type = opts.get('type');
    const list: object[] = [];
    if (type === undefined || type === 'node') for (const n of c.nodes) list.push(await c.resources(n));
    if (type === undefined || type === 'vm')
      for (const n of c.nodes)
        for (const id of await c.vmids(n))
          list.push({ ...(await c.status(n, id)), id: `qemu/${id}`, node: n.id, type: 'qemu', template: 0 });
    return json(list);
  }
  if (m === null) return fail(`refit lab: this pvesh stand-in does not know ${verb ?? ''} ${apiPath as string}`);
  const node = c.node(m[1] as string);
  const rel = m[2] as string;
  if (verb === 'get' && rel === 'qemu') {
    const list = [];
    for (const id of await c.vmids(node)) list.push(await c.status(node, id));
    return json(list);
  }
  if (verb === 'get' && rel === 'storage')
    return json([
      { active: 1, content: 'iso,vztmpl,backup', enabled: 1, shared: 0, storage: 'local', type: 'dir' },
      { active: 1, content: 'images,rootdir', enabled: 1, shared: 0, storage: 'local-lvm', type: 'lvmthin' },
    ]);
  const vmPath = /^qemu\/(\d+)\/(status\/start|status\/shutdown|status\/stop|migrate)$/.exec(rel);
  if (verb === 'create' && vmPath !== null) {
    const id = vmidOf(vmPath[1]);
    if (vmPath[2] === 'migrate') {
      const target =
        opts.get('target') ??
        fail('400 Parameter verification failed.\ntarget: property is missing and it is not optional');
      const task: string[] = [];
      const how = { online: opts.get('online') === '1', force: opts.get('force') === '1' };
      await c.migrate(node, id, target, how, (l) => task.push(l));
      say(upid(node.id, 'qmigrate', id));
      await appendFile(standinLog(local), task.map((l) => `  task: ${l}\n`).join(''));
      return;
    }
    await c.power(node, id, vmPath[2] === 'status/start');
    say(upid(node.id, vmPath[2] === 'status/start' ? 'qmstart' : 'qmshutdown', id));
    return;
  }
  fail(`refit lab: this pvesh stand-in does not know ${verb ?? ''} ${apiPath as string}`);
}

async function haManager(c: Cluster, args: readonly string[], say: (l: string) => void): Promise<void> {
  if (args[0] === 'crm-command' && args[1] === 'node-maintenance' && (args[2] === 'enable' || args[2] === 'disable')) {
    const node = c.node(args[3] ?? '').id;
    await mkdir(path.dirname(c.maintenanceFile(node)), { recursive: true });
    if (args[2] === 'enable') await writeFile(c.maintenanceFile(node), `${new Date().toISOString()}\n`);
    else await rm(c.maintenanceFile(node), { force: true });
    return;
  }
  if (args[0] === 'status') {
    say('quorum OK');
    for (const n of c.nodes)
      say(
        `lrm ${n.id} (${existsSync(c.maintenanceFile(n.id)) ? 'maintenance mode' : 'idle'}, ${new Date().toString()})`,
      );
    return;
  }
  fail(`refit lab: this ha-manager stand-in knows crm-command node-maintenance enable|disable <node> and status`);
}

/** Whether the lab's HA manager has this node in maintenance mode. */
export const inMaintenance = (labDir: string, node: string) =>
  existsSync(path.join(pveLabDir(labDir), `maintenance-${node}`));
