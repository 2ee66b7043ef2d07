import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { VmName } from '../../../schemas/common.js';
import type { VmFacts } from '../../../schemas/host.js';
import type { NonMigratable, StepOutcome } from '../../../schemas/steps.js';
import { StepFailedError, throwIfAborted, type StepContext } from '../driver.js';
import { readStateFile } from '../../files.js';
import type { CommandRunner } from './command.js';
import { writeTextAtomic } from './host-env.js';
import {
  haMaintenanceArgv,
  hasLocalDisk,
  nodeCapacity,
  parseNodeResources,
  parseQemuList,
  parseQmConfig,
  parseStorages,
  passthroughDevices,
  pveNode,
  pveshNodeResourcesArgv,
  pveshQemuListArgv,
  pveshStartArgv,
  pveshStorageArgv,
  qmConfigArgv,
  qmMigrateOfflineArgv,
  qmMigrateOnlineArgv,
  qmShutdownArgv,
  vmid as vmidArg,
} from './proxmox.js';
import { fitArrivedVmNics, proxmoxVmNics } from './vm-nics.js';

/** A Proxmox VE node as the drain sees it: `qm`, `pvesh` and `ha-manager` on this node. */
export interface ProxmoxHost {
  run: CommandRunner;
  /** This node's name in the cluster (default: the short hostname, as Proxmox names nodes). */
  node: string;
  /** The node name of a refit host id (default: the id itself). */
  nodeOf: (hostId: string) => string;
  stateDir: string;
  /** How long to wait for a migration the HA stack or a proxied API call finishes on its own; default 30 min. */
  settleTimeoutMs?: number;
  pollMs?: number;
}

export interface ProxmoxVm {
  vmid: number;
  /** The name refit reports: the VM's name where it is a valid, unique VM name on this node, else vm-<vmid>. */
  name: string;
  memoryBytes: number | undefined;
  passthrough: string[];
  config: Map<string, string>;
}

const Away = z.object({
  name: z.string(),
  hostId: z.string(),
  node: z.string(),
  offline: z.boolean(),
  localDisk: z.boolean(),
});
const State = z.object({
  away: z.record(z.string(), Away).default({}),
  /** VMs a drain under `skip` left running here: the host is not drained while they run. */
  left: z.array(z.string()).default([]),
  maintenance: z.boolean().default(false),
});
type State = z.infer<typeof State>;

const stateFile = (h: ProxmoxHost) => path.join(h.stateDir, 'proxmox-drain.json');
const cordonFile = (h: ProxmoxHost) => path.join(h.stateDir, 'cordoned');
export const isCordoned = (h: ProxmoxHost) => existsSync(cordonFile(h));

export async function drainState(h: ProxmoxHost): Promise<State> {
  return (await readStateFile(stateFile(h), State)) ?? State.parse({});
}
async function saveState(h: ProxmoxHost, s: State): Promise<void> {
  await writeTextAtomic(stateFile(h), JSON.stringify(s, null, 2) + '\n');
}

/** `qm config` answers kept for the facts, which are read every few seconds (a drain reads afresh). */
export type ConfigCache = Map<number, { at: number; config: Map<string, string> }>;
const CONFIG_TTL_MS = 60_000;

/**
 * This node's running VMs with their configuration (`pvesh get /nodes/<node>/qemu`, `qm config <vmid>`;
 * with `cache`, a configuration read in the last minute is not read again).
 */
export async function runningVms(h: ProxmoxHost, cache?: ConfigCache): Promise<ProxmoxVm[]> {
  const listed = parseQemuList((await h.run(pveshQemuListArgv(h.node))).stdout).filter((v) => v.status === 'running');
  const counts = new Map<string, number>();
  for (const v of listed) if (v.name !== undefined) counts.set(v.name, (counts.get(v.name) ?? 0) + 1);
  const vms: ProxmoxVm[] = [];
  for (const v of listed.sort((a, b) => a.vmid - b.vmid)) {
    const cached = cache?.get(v.vmid);
    const config =
      cached !== undefined && Date.now() - cached.at < CONFIG_TTL_MS
        ? cached.config
        : parseQmConfig((await h.run(qmConfigArgv(v.vmid))).stdout);
    if (cache !== undefined && cached?.config !== config) cache.set(v.vmid, { at: Date.now(), config });
    const named = v.name !== undefined && VmName.safeParse(v.name).success && counts.get(v.name) === 1;
    vms.push({
      vmid: v.vmid,
      name: named ? (v.name as string) : `vm-${v.vmid}`,
      memoryBytes: v.maxmem,
      passthrough: passthroughDevices(config),
      config,
    });
  }
  return vms;
}

/** The facts of a Proxmox node: its VMs with memory and passed-through devices, its memory and CPUs. */
export async function proxmoxFacts(
  h: ProxmoxHost,
  cache?: ConfigCache,
): Promise<{ vms: VmFacts[]; memory?: { totalBytes: number; freeBytes: number }; cpus?: number }> {
  const vms = await runningVms(h, cache);
  const capacity = nodeCapacity(parseNodeResources((await h.run(pveshNodeResourcesArgv())).stdout), h.node);
  return {
    vms: vms.map((vm) => ({
      name: vm.name,
      state: 'running',
      sriov: vm.passthrough.length > 0,
      ...(vm.memoryBytes !== undefined ? { memoryBytes: vm.memoryBytes } : {}),
      ...(vm.passthrough.length > 0 ? { passthrough: vm.passthrough } : {}),
    })),
    ...capacity,
  };
}

/** Ask `check` every poll interval until it holds, for up to the settle timeout. */
async function settle(h: ProxmoxHost, ctx: StepContext, what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + (h.settleTimeoutMs ?? 30 * 60_000);
  for (;;) {
    throwIfAborted(ctx.signal);
    if (await check()) return;
    if (Date.now() >= deadline)
      throw new StepFailedError(`${what}: not done after ${Math.round((h.settleTimeoutMs ?? 1_800_000) / 1000)} s`);
    await sleep(h.pollMs ?? 2_000);
  }
}

async function statusOn(h: ProxmoxHost, node: string, id: number): Promise<string | undefined> {
  return parseQemuList((await h.run(pveshQemuListArgv(node))).stdout).find((v) => v.vmid === id)?.status;
}

const label = (vm: ProxmoxVm) => `${vm.name} (${vm.passthrough.join(', ')})`;

/**
 * Drain a Proxmox node: every running VM live-migrated (`qm migrate <vmid> <target> --online`, with
 * `--with-local-disks` where a disk is on storage only this node has) to the node of the host the
 * controller chose for it; VMs with passed-through devices as `nonMigratable` says; then, when
 * nothing is left here, the node is put in Proxmox's maintenance mode (HA places no guest here and
 * moves none back) and the host cordoned.
 */
export async function drainProxmoxNode(
  h: ProxmoxHost,
  destinations: Record<string, string>,
  nonMigratable: NonMigratable,
  ctx: StepContext,
): Promise<StepOutcome> {
  const vms = await runningVms(h);
  const state = await drainState(h);
  const before = { node: h.node, vms: vms.map((v) => v.name), cordoned: isCordoned(h), maintenance: state.maintenance };
  if (vms.length === 0 && before.cordoned && state.maintenance)
    return {
      changed: false,
      summary: `already drained, cordoned and node ${h.node} in maintenance`,
      before,
      after: before,
    };
  const pinned = vms.filter((v) => v.passthrough.length > 0);
  if (pinned.length > 0 && nonMigratable === 'refuse')
    throw new StepFailedError(
      `drain: VMs with passed-through devices cannot be live-migrated: ${pinned.map(label).join(', ')} (nonMigratable: refuse)`,
    );
  const left = nonMigratable === 'skip' ? pinned : [];
  const moving = vms.filter((v) => !left.includes(v));
  const missing = moving.filter((v) => destinations[v.name] === undefined);
  if (missing.length > 0)
    throw new StepFailedError(
      `drain: no destination for ${missing.map((v) => v.name).join(', ')}; the controller must choose one per VM`,
    );
  const targets = new Map(
    moving.map((v) => [v.vmid, pveNode(h.nodeOf(destinations[v.name] as string), `node of ${destinations[v.name]}`)]),
  );
  const shared =
    moving.length > 0 ? parseStorages((await h.run(pveshStorageArgv(h.node))).stdout) : new Map<string, boolean>();
  await writeFile(cordonFile(h), `${new Date().toISOString()}\n`);
  const moves: string[] = [];
  const offline: string[] = [];
  for (const [i, vm] of moving.entries()) {
    throwIfAborted(ctx.signal);
    const target = targets.get(vm.vmid) as string;
    const localDisk = hasLocalDisk(vm.config, shared);
    const cold = vm.passthrough.length > 0;
    const pct = Math.round((i / moving.length) * 90);
    if (cold) {
      ctx.progress(pct, `qm shutdown ${vm.vmid} (${vm.name}), then an offline migration to ${target}`);
      await h.run(qmShutdownArgv(vm.vmid, 180), { timeoutMs: 240_000 });
      await settle(h, ctx, `shutdown of ${vm.name}`, async () => (await statusOn(h, h.node, vm.vmid)) === 'stopped');
      await h.run(qmMigrateOfflineArgv(vm.vmid, target, localDisk, true), { timeoutMs: 60 * 60_000 });
      await h.run(pveshStartArgv(target, vm.vmid), { timeoutMs: 300_000 });
      offline.push(vm.name);
    } else {
      ctx.progress(
        pct,
        `qm migrate ${vm.vmid} ${target} --online${localDisk ? ' --with-local-disks' : ''} (${vm.name})`,
      );
      await h.run(qmMigrateOnlineArgv(vm.vmid, target, localDisk), { timeoutMs: 60 * 60_000 });
    }
    state.away[String(vm.vmid)] = {
      name: vm.name,
      hostId: destinations[vm.name] as string,
      node: target,
      offline: cold,
      localDisk,
    };
    await saveState(h, state);
    moves.push(`${vm.name}→${target}`);
  }
  // An HA-managed guest's `qm migrate` only asks the HA stack, and a proxied start returns at once:
  // the drain is done when they run there, not here.
  await settle(h, ctx, 'migrations', async () => {
    const here = new Set((await runningVms(h)).map((v) => v.vmid));
    if (moving.some((v) => here.has(v.vmid))) return false;
    for (const vm of moving)
      if ((await statusOn(h, targets.get(vm.vmid) as string, vm.vmid)) !== 'running') return false;
    return true;
  });
  state.left = left.map((v) => v.name);
  if (left.length === 0 && !state.maintenance) {
    ctx.progress(95, `ha-manager crm-command node-maintenance enable ${h.node}`);
    await h.run(haMaintenanceArgv(true, h.node));
    state.maintenance = true;
  }
  await saveState(h, state);
  const away = Object.fromEntries(Object.values(state.away).map((a) => [a.name, a.hostId]));
  const parts = [
    `migrated ${moves.length} VMs away${moves.length ? ` (${moves.join(', ')})` : ''}`,
    ...(offline.length > 0 ? [`shut down, moved offline and started there: ${offline.join(', ')}`] : []),
    left.length > 0
      ? `host NOT drained: left ${left.map(label).join(', ')} running here (nonMigratable: skip); node not in maintenance`
      : `node ${h.node} in maintenance mode`,
    'host cordoned',
  ];
  return {
    changed: true,
    summary: parts.join('; '),
    before,
    after: { node: h.node, vms: state.left, cordoned: true, maintenance: state.maintenance, away, left: state.left },
  };
}

/**
 * `pvesh create /nodes/<there>/qemu/<vmid>/migrate --target <here> …`: the API call `qm migrate` makes,
 * run from this node. Offline, it is the way back of a VM with a local device: `--force 1`, as on the
 * way out.
 */
const pveshMigrateArgv = (from: string, id: number, target: string, online: boolean, localDisk: boolean) => [
  'pvesh',
  'create',
  `/nodes/${pveNode(from)}/qemu/${vmidArg(id)}/migrate`,
  '--target',
  pveNode(target),
  ...(online ? ['--online', '1'] : ['--force', '1']),
  ...(localDisk ? ['--with-local-disks', '1'] : []),
];

/**
 * Undrain a Proxmox node: out of maintenance mode first (so HA lets its guests come back), then each
 * VM the drain sent away is migrated back the way it left (live, or shut down, offline and started
 * here), and the host uncordoned.
 */
export async function undrainProxmoxNode(h: ProxmoxHost, ctx: StepContext): Promise<StepOutcome> {
  const state = await drainState(h);
  const before = { node: h.node, away: { ...state.away }, cordoned: isCordoned(h), maintenance: state.maintenance };
  if (Object.keys(state.away).length === 0 && !before.cordoned && !state.maintenance)
    return { changed: false, summary: 'not cordoned, not in maintenance, no VMs away', before, after: before };
  if (state.maintenance) {
    ctx.progress(5, `ha-manager crm-command node-maintenance disable ${h.node}`);
    await h.run(haMaintenanceArgv(false, h.node));
    state.maintenance = false;
    await saveState(h, state);
  }
  const back: string[] = [];
  const backIds: string[] = [];
  for (const [key, a] of Object.entries(state.away)) {
    throwIfAborted(ctx.signal);
    const id = Number(key);
    ctx.progress(50, `migrating ${a.name} (${id}) back from ${a.node}${a.offline ? ' offline' : ''}`);
    if (a.offline) {
      await h.run(
        ['pvesh', 'create', `/nodes/${pveNode(a.node)}/qemu/${vmidArg(id)}/status/shutdown`, '--timeout', '180'],
        {
          timeoutMs: 240_000,
        },
      );
      await settle(
        h,
        ctx,
        `shutdown of ${a.name} on ${a.node}`,
        async () => (await statusOn(h, a.node, id)) === 'stopped',
      );
      await h.run(pveshMigrateArgv(a.node, id, h.node, false, a.localDisk), { timeoutMs: 60 * 60_000 });
      await settle(h, ctx, `offline migration of ${a.name}`, async () => (await statusOn(h, h.node, id)) !== undefined);
      await h.run(pveshStartArgv(h.node, id), { timeoutMs: 300_000 });
    } else {
      await h.run(pveshMigrateArgv(a.node, id, h.node, true, a.localDisk), { timeoutMs: 60 * 60_000 });
    }
    await settle(h, ctx, `migration of ${a.name} back`, async () => (await statusOn(h, h.node, id)) === 'running');
    delete state.away[key];
    await saveState(h, state);
    back.push(a.name);
    backIds.push(key);
  }
  // The VM's config came back with it: its NICs get the tag of the bridge here (ovs-convert's, or none after its revert).
  const vmNics = await fitArrivedVmNics(proxmoxVmNics(h.run, h.node), h.stateDir, backIds, ctx);
  state.left = [];
  await saveState(h, state);
  await rm(cordonFile(h), { force: true });
  const tags = vmNics?.summary ?? '';
  return {
    changed: true,
    summary: `migrated ${back.length} VMs back${back.length ? ` (${back.join(', ')})` : ''}${tags ? `; ${tags}` : ''}; node ${h.node} out of maintenance; host uncordoned`,
    before,
    after: { node: h.node, away: {}, cordoned: false, maintenance: false, ...(vmNics ? { vmNics } : {}) },
  };
}

/**
 * Why a step that needs a drained host must not run here: a drain under `skip` left VMs running
 * that still run here. Undefined when the host may go on.
 */
export async function notDrained(h: ProxmoxHost): Promise<string | undefined> {
  const { left } = await drainState(h);
  if (left.length === 0) return undefined;
  const here = new Set((await runningVms(h)).map((v) => v.name));
  const still = left.filter((n) => here.has(n));
  return still.length === 0
    ? undefined
    : `this host is not drained: the drain left ${still.join(', ')} running here (nonMigratable: skip)`;
}
