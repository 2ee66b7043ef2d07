import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RefitError } from '../../../schemas/errors.js';
import { attachVmPort } from './attach.js';
import { rootRunner } from './exec.js';
import { hostPaths } from './layout.js';
import { belongsTo, stopProcesses } from './ovs-daemons.js';
import type { LabHost, LabState, LabVm } from './state.js';

export class GuestError extends RefitError {}

/** Each guest: one vCPU under TCG (nested KVM hangs on this kind of machine), 128 MB. */
export const GUEST_MEMORY_MB = 128;
/** What lab/guest/init prints on the serial console once eth0 has its address. */
const READY = 'refit-guest: ready';

export function guestFiles(host: LabHost, vm: LabVm) {
  const dir = hostPaths(host).qemuServer;
  return {
    dir,
    qmp: path.join(dir, `${vm.vmid}.qmp`),
    pid: path.join(dir, `${vm.vmid}.pid`),
    console: path.join(dir, `${vm.vmid}.console.log`),
  };
}

/** The port a destination QEMU listens on for the migration stream (Proxmox uses 60000 and up too). */
export const migrationPort = (vm: LabVm) => 60000 + (vm.vmid % 5000);

/**
 * The QEMU command line of a lab guest on a host: the lab's kernel and initramfs, its static address
 * on the kernel command line (lab/guest/init sets it), one virtio NIC on the tap `tap<vmid>i0` that
 * QEMU makes in the host's namespace, a QMP socket and a pid file. A migration destination gets the
 * very same line plus `-incoming`.
 */
export function guestArgv(lab: LabState, host: LabHost, vm: LabVm, incoming?: string): string[] {
  if (lab.guest === undefined) throw new GuestError(`${vm.name} is a QEMU guest but the lab records no guest image`);
  if (vm.mac === undefined) throw new GuestError(`${vm.name} is a QEMU guest without a MAC`);
  const f = guestFiles(host, vm);
  const gateway = lab.switch.address.split('/')[0] as string;
  return [
    'qemu-system-x86_64',
    '-name',
    vm.name,
    '-accel',
    'tcg',
    '-m',
    String(GUEST_MEMORY_MB),
    '-smp',
    '1',
    '-nodefaults',
    '-display',
    'none',
    '-kernel',
    lab.guest.kernel,
    '-initrd',
    lab.guest.initrd,
    '-append',
    `console=ttyS0 quiet refit.ip=${vm.address} refit.gw=${gateway}`,
    '-serial',
    `file:${f.console}`,
    '-netdev',
    `tap,id=net0,ifname=${vm.port},script=no,downscript=no`,
    '-device',
    `virtio-net-pci,netdev=net0,mac=${vm.mac}`,
    '-qmp',
    `unix:${f.qmp},server=on,wait=off`,
    '-pidfile',
    f.pid,
    '-daemonize',
    ...(incoming !== undefined ? ['-incoming', incoming] : []),
  ];
}

/**
 * Start a guest's QEMU inside the host's namespace (daemonized: it lives on after this call) and
 * plug its tap into the host's bridge, as Proxmox's tap script does. With `incoming` it waits for a
 * migration stream instead of booting.
 */
export async function startGuest(
  lab: LabState,
  host: LabHost,
  vm: LabVm,
  incoming?: string,
  tag?: number,
): Promise<void> {
  const f = guestFiles(host, vm);
  await mkdir(f.dir, { recursive: true });
  await Promise.all([f.qmp, f.pid].map((file) => rm(file, { force: true })));
  await rootRunner(['ip', 'netns', 'exec', host.ns, ...guestArgv(lab, host, vm, incoming)], { timeoutMs: 30_000 });
  await attachVmPort(lab, host, vm.port, undefined, tag);
}

/** Wait until the guest's init says on its serial console that its NIC is up. */
export async function waitForGuest(host: LabHost, vm: LabVm, timeoutMs = 180_000): Promise<void> {
  const f = guestFiles(host, vm);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await readFile(f.console, 'utf8').catch(() => '')).includes(READY)) return;
    if ((await guestPid(host, vm)) === undefined)
      throw new GuestError(`${vm.name}: QEMU on ${host.id} exited while booting (console: ${f.console})`);
    await sleep(250);
  }
  throw new GuestError(`${vm.name} did not come up on ${host.id} within ${timeoutMs / 1000} s (console: ${f.console})`);
}

/** The pid of the guest's QEMU on this host, when it runs (a recycled pid does not count). */
export async function guestPid(host: LabHost, vm: LabVm): Promise<number | undefined> {
  const pid = Number((await readFile(guestFiles(host, vm).pid, 'utf8').catch(() => '')).trim());
  return pid > 0 && (await belongsTo(pid, guestFiles(host, vm).dir)) ? pid : undefined;
}

/** Power the guest off: QMP `quit`, or its process stopped. Its tap goes with it. */
export async function stopGuest(host: LabHost, vm: LabVm): Promise<void> {
  const pid = await guestPid(host, vm);
  if (pid === undefined) return;
  await qmp(guestFiles(host, vm).qmp, [{ execute: 'quit' }]).catch(() => undefined);
  for (let i = 0; i < 30 && (await guestPid(host, vm)) !== undefined; i++) await sleep(100);
  await stopProcesses([pid]);
}

/** Pause or resume a guest's vCPU (QMP `stop`/`cont`): what the lab does to guests while their host is down. */
export async function setGuestRunning(host: LabHost, vm: LabVm, running: boolean): Promise<void> {
  if ((await guestPid(host, vm)) === undefined) return;
  await qmp(guestFiles(host, vm).qmp, [{ execute: running ? 'cont' : 'stop' }]);
}

export interface GuestMigration {
  /** QEMU's own figures from `query-migrate`. */
  downtimeMs: number | undefined;
  totalMs: number | undefined;
}

/**
 * A real live migration: a QEMU with the same command line and `-incoming tcp:<destination>:<port>`
 * in the destination host's namespace, its tap on that host's bridge; QMP `migrate` on the source
 * sends the guest's memory over the lab network (from the source host's address to the
 * destination's). The source saying `completed` only means it has sent everything: the destination
 * still loads the last of it, then announces the guest (RARP from its new port) and runs it, which
 * under TCG on a busy machine was measured taking up to ~1 s (decision 0035). So the move is done,
 * and the source quits (its tap with it), once the destination's QEMU says it runs the guest — as
 * a hypervisor's migration returns only once the guest is resumed on the target. On failure the
 * destination is stopped and the source resumed.
 */
export async function migrateGuest(
  lab: LabState,
  vm: LabVm,
  from: LabHost,
  to: LabHost,
  tag?: number,
): Promise<GuestMigration> {
  const uri = `tcp:${to.address.split('/')[0] as string}:${migrationPort(vm)}`;
  await startGuest(lab, to, vm, uri, tag);
  const source = guestFiles(from, vm).qmp;
  try {
    const [before] = (await qmp(source, [{ execute: 'query-status' }])) as [{ status?: unknown }];
    // A guest paused on its source (its host down) arrives paused; a running one must run on arrival.
    const sourceRunning = before.status === 'running';
    await qmp(source, [{ execute: 'migrate', arguments: { uri } }]);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const [info] = (await qmp(source, [{ execute: 'query-migrate' }])) as [Record<string, unknown>];
      const status = info.status;
      if (status === 'completed') {
        await waitForIncoming(to, vm, sourceRunning ? 'running' : 'paused', deadline);
        await stopGuest(from, vm);
        return {
          downtimeMs: typeof info.downtime === 'number' ? info.downtime : undefined,
          totalMs: typeof info['total-time'] === 'number' ? info['total-time'] : undefined,
        };
      }
      if (status === 'failed' || status === 'cancelled')
        throw new GuestError(
          `${vm.name}: migration to ${to.id} ${status}: ${typeof info['error-desc'] === 'string' ? info['error-desc'] : ''}`,
        );
      if (Date.now() > deadline) {
        await qmp(source, [{ execute: 'migrate_cancel' }]).catch(() => undefined);
        throw new GuestError(
          `${vm.name}: migration to ${to.id} did not complete within 120 s (status ${String(status)})`,
        );
      }
      await sleep(50);
    }
  } catch (err) {
    await stopGuest(to, vm).catch(() => undefined);
    await qmp(source, [{ execute: 'cont' }]).catch(() => undefined);
    throw err;
  }
}

/**
 * Wait until the destination QEMU of a migration has loaded the guest (`query-status` leaves
 * `inmigrate`) and is in the state the guest had on its source; fails naming the status it ended in.
 */
async function waitForIncoming(
  to: LabHost,
  vm: LabVm,
  expected: 'running' | 'paused',
  deadline: number,
): Promise<void> {
  const socket = guestFiles(to, vm).qmp;
  for (;;) {
    const [info] = (await qmp(socket, [{ execute: 'query-status' }])) as [{ status?: unknown }];
    if (info.status === expected) return;
    if (info.status !== 'inmigrate' && info.status !== 'prelaunch')
      throw new GuestError(
        `${vm.name}: on ${to.id} after the migration, QEMU is ${String(info.status)}, not ${expected}`,
      );
    if (Date.now() > deadline)
      throw new GuestError(`${vm.name}: QEMU on ${to.id} still ${String(info.status)} after the migration completed`);
    await sleep(20);
  }
}

/**
 * Talk QMP (QEMU's JSON machine protocol) on a guest's socket: read the greeting, `qmp_capabilities`,
 * then each command in turn; returns each command's `return`. Events in between are skipped; an
 * `error` answer fails with its description.
 */
export async function qmp(socket: string, commands: { execute: string; arguments?: object }[]): Promise<unknown[]> {
  if (!existsSync(socket)) throw new GuestError(`no QMP socket at ${socket}`);
  const conn = net.createConnection(socket);
  const lines: string[] = [];
  let buffer = '';
  let waiting: (() => void) | undefined;
  let closed: Error | undefined;
  conn.setEncoding('utf8');
  conn.on('data', (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      lines.push(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
    }
    waiting?.();
  });
  const onEnd = (err?: Error) => {
    closed = err ?? new GuestError(`QMP ${socket} closed`);
    waiting?.();
  };
  conn.on('error', onEnd);
  conn.on('close', () => onEnd());
  const next = async (): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const line = lines.shift();
      if (line !== undefined) {
        const msg = JSON.parse(line) as Record<string, unknown>;
        if (!('event' in msg)) return msg;
        continue;
      }
      if (closed !== undefined) throw closed;
      if (Date.now() > deadline) throw new GuestError(`QMP ${socket}: no answer within 30 s`);
      await new Promise<void>((resolve) => {
        waiting = resolve;
        setTimeout(resolve, 1000).unref();
      });
      waiting = undefined;
    }
  };
  const call = async (command: { execute: string; arguments?: object }) => {
    conn.write(JSON.stringify(command) + '\n');
    const answer = await next();
    if ('error' in answer) {
      const error = answer.error as { desc?: string };
      throw new GuestError(`QMP ${command.execute} on ${socket}: ${error.desc ?? JSON.stringify(error)}`);
    }
    return answer.return;
  };
  try {
    await next(); // the greeting
    await call({ execute: 'qmp_capabilities' });
    const out: unknown[] = [];
    for (const command of commands) out.push(await call(command));
    return out;
  } finally {
    conn.destroy();
  }
}
