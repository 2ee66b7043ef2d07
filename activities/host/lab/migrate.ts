import { execa } from 'execa';
import { setTimeout as sleep } from 'node:timers/promises';
import { SWITCH_ADDRESS } from './layout.js';
import { attachVmPort, detachVmPort, runningBridge } from './attach.js';
import { rootRunner, vmRunner } from './exec.js';
import { hpingArgv, parseHpingStats } from '../linux/hping.js';
import { migrateGuest } from './qemu.js';
import { labHost, labVm, type LabHost, type LabState, type LabVm } from './state.js';
import { RefitError } from '../../../schemas/errors.js';

export class VmNotFoundError extends RefitError {}

/** Where each VM is now: the host whose namespace holds the host end of its veth. */
export async function locateVms(lab: LabState): Promise<Map<string, string>> {
  const where = new Map<string, string>();
  const ports = new Map(lab.vms.map((v) => [v.port, v.name]));
  for (const host of lab.hosts) {
    const listed = await rootRunner(['ip', '-n', host.ns, '-o', 'link', 'show']).catch(() => ({ stdout: '' }));
    for (const line of listed.stdout.split('\n')) {
      const name = /^\d+:\s+([^:@]+)/.exec(line)?.[1];
      const vm = name === undefined ? undefined : ports.get(name);
      if (vm !== undefined) where.set(vm, host.id);
    }
  }
  return where;
}

/** The VMs on one host: whose veth is in its namespace (one `ip link` there, not a scan of the lab). */
export async function vmsOn(lab: LabState, hostId: string): Promise<LabVm[]> {
  const host = labHost(lab, hostId);
  const listed = await rootRunner(['ip', '-n', host.ns, '-o', 'link', 'show']);
  const names = new Set(listed.stdout.split('\n').map((line) => /^\d+:\s+([^:@]+)/.exec(line)?.[1]));
  return lab.vms.filter((v) => names.has(v.port));
}

/** What a ping stream from the lab switch saw while a VM migrated: one ICMP echo every 10 ms. */
export interface MigrationLoss {
  sent: number;
  received: number;
  lost: number;
  /** The longest stretch without an answer it implies: lost packets × the interval. */
  lostMs: number;
}

export interface VmMove {
  moved: boolean;
  from: string;
  to: string;
  /** Measured on every move: the VM's answers to a ping stream from the switch across the migration. */
  loss?: MigrationLoss;
  /** A QEMU guest's downtime as QEMU reports it (`query-migrate`). */
  downtimeMs?: number;
}

/** The loss and QEMU's downtime of a move, for summaries: "3/152 pings lost (~30 ms), QEMU downtime 41 ms". */
export function describeMove(move: VmMove): string {
  const parts: string[] = [];
  if (move.loss !== undefined) parts.push(`${move.loss.lost}/${move.loss.sent} pings lost (~${move.loss.lostMs} ms)`);
  if (move.downtimeMs !== undefined) parts.push(`QEMU downtime ${move.downtimeMs} ms`);
  return parts.join(', ');
}

const STREAM_INTERVAL_MS = 10;

/**
 * Live-migrate a lab VM while the lab switch sends it a ping stream, and report what the stream lost.
 * A QEMU guest migrates for real (migrateGuest: QMP `migrate` to a QEMU started with `-incoming` in
 * the destination host's namespace, over the lab network); a namespace VM's veth moves to the
 * destination's namespace and bridge and the VM announces itself as QEMU does. Either way the VM
 * keeps its MAC and addresses. Returns moved: false when it was there already. `tag`: the VLAN its
 * port gets on an OVS destination (a Proxmox VM's configured `tag=`, which travels with the VM);
 * without it, the VLAN attachVmPort chooses.
 */
export async function migrateVm(
  lab: LabState,
  vmName: string,
  toHostId: string,
  opts: { tag?: number | undefined } = {},
): Promise<VmMove> {
  const vm = labVm(lab, vmName);
  const to = labHost(lab, toHostId);
  const fromId = (await locateVms(lab)).get(vm.name);
  if (fromId === undefined) throw new VmNotFoundError(`${vm.name} is on no lab host`);
  if (fromId === to.id) return { moved: false, from: fromId, to: to.id };
  const from = labHost(lab, fromId);
  const { result, loss } = await withPingStream(lab, vm.address.split('/')[0] as string, async () => {
    if (vm.kind === 'qemu') return migrateGuest(lab, vm, from, to, opts.tag);
    await moveNamespaceVm(lab, vm, from, to, opts.tag);
    return { downtimeMs: undefined };
  });
  return {
    moved: true,
    from: from.id,
    to: to.id,
    ...(loss !== undefined ? { loss } : {}),
    ...(result.downtimeMs !== undefined ? { downtimeMs: result.downtimeMs } : {}),
  };
}

/**
 * Run `during` while hping3 in the switch's namespace sends ICMP echoes to `address` every 10 ms
 * (from 300 ms before to 300 ms after); its statistics on SIGINT give the loss. A stream that could
 * not be read leaves the loss undefined rather than failing the migration.
 */
async function withPingStream<T>(
  lab: LabState,
  address: string,
  during: () => Promise<T>,
): Promise<{ result: T; loss: MigrationLoss | undefined }> {
  const stream = execa(
    'ip',
    ['netns', 'exec', lab.switch.ns, ...hpingArgv({ address, count: 100_000, intervalUs: STREAM_INTERVAL_MS * 1000 })],
    { reject: false, stdin: 'ignore', env: { LC_ALL: 'C' } },
  );
  try {
    await sleep(300);
    const result = await during();
    await sleep(300);
    stream.kill('SIGINT');
    const done = await stream;
    try {
      const stats = parseHpingStats(typeof done.stderr === 'string' ? done.stderr : '');
      const lost = stats.transmitted - stats.received;
      return {
        result,
        loss: { sent: stats.transmitted, received: stats.received, lost, lostMs: lost * STREAM_INTERVAL_MS },
      };
    } catch {
      return { result, loss: undefined };
    }
  } finally {
    if (stream.exitCode === null) stream.kill('SIGKILL');
  }
}

/**
 * A namespace VM's move: its veth goes to the destination host's namespace and bridge (Linux or
 * OVS), then the VM sends one packet, so the switch learns where it went.
 */
async function moveNamespaceVm(lab: LabState, vm: LabVm, from: LabHost, to: LabHost, tag?: number): Promise<void> {
  // Look at both bridges first: between detach and announce the VM is unreachable, so that window
  // holds only the four commands that move it.
  const [fromBridge, toBridge] = await Promise.all([runningBridge(lab, from), runningBridge(lab, to)]);
  await detachVmPort(lab, from, vm.port, fromBridge);
  await rootRunner(['ip', '-n', from.ns, 'link', 'set', 'dev', vm.port, 'netns', to.ns]);
  await attachVmPort(lab, to, vm.port, toBridge, tag);
  await announce(vm);
}

/** One packet from the VM to the lab switch: the switch's bridge learns the VM's new port from it. */
async function announce(vm: LabVm): Promise<void> {
  await vmRunner(vm)(hpingArgv({ address: SWITCH_ADDRESS, count: 1 }), { okExitCodes: [1] });
}

export type { LabHost };
