import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { rootRunner, hostRunner } from './exec.js';
import { hostPaths } from './layout.js';
import type { LabHost, LabState } from './state.js';

const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
const DAEMONS = ['ovs-vswitchd', 'ovsdb-server'] as const;

/**
 * Start the host's own Open vSwitch inside its namespace: ovsdb-server on its persistent database
 * and ovs-vswitchd without the kernel datapath (bridges use datapath_type=netdev). Sockets and pid
 * files land in the host's /run/openvswitch, logs in <root>/var/log.
 */
export async function startOvs(lab: LabState, host: LabHost): Promise<void> {
  const p = hostPaths(host);
  await mkdir(p.ovsRun, { recursive: true });
  if (!existsSync(p.ovsDb)) await rootRunner(['ovsdb-tool', 'create', p.ovsDb, SCHEMA]);
  const run = hostRunner(lab, host);
  await run([
    'ovsdb-server',
    p.ovsDb,
    '--remote=punix:/run/openvswitch/db.sock',
    '--pidfile=/run/openvswitch/ovsdb-server.pid',
    '--detach',
    '--no-chdir',
    `--log-file=${path.join(p.log, 'ovsdb-server.log')}`,
  ]);
  await run(['ovs-vsctl', '--no-wait', 'init']);
  await run([
    'ovs-vswitchd',
    'unix:/run/openvswitch/db.sock',
    '--disable-system',
    '--pidfile=/run/openvswitch/ovs-vswitchd.pid',
    '--detach',
    '--no-chdir',
    `--log-file=${path.join(p.log, 'ovs-vswitchd.log')}`,
  ]);
}

/** The pids of the host's OVS daemons that are alive and really are this host's (not a recycled pid). */
export async function ovsPids(host: LabHost): Promise<Partial<Record<(typeof DAEMONS)[number], number>>> {
  const out: Partial<Record<(typeof DAEMONS)[number], number>> = {};
  for (const daemon of DAEMONS) {
    const pid = Number(
      (await readFile(path.join(hostPaths(host).ovsRun, `${daemon}.pid`), 'utf8').catch(() => '')).trim(),
    );
    if (pid > 0 && (await belongsTo(pid, host.root))) out[daemon] = pid;
  }
  return out;
}

/** Does the process run with a command line that names this lab path? */
export async function belongsTo(pid: number, labPath: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.split('\0').some((arg) => arg.includes(labPath));
}

export async function stopOvs(host: LabHost): Promise<void> {
  const pids = Object.values(await ovsPids(host));
  await stopProcesses(pids);
}

/** SIGTERM, wait up to 3 s, then SIGKILL. */
export async function stopProcesses(pids: readonly number[]): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals | 0) => {
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false;
    }
  };
  let alive = pids.filter((pid) => signal(pid, 'SIGTERM'));
  for (let i = 0; i < 30 && alive.length > 0; i++) {
    await sleep(100);
    alive = alive.filter((pid) => signal(pid, 0) && !isZombie(pid));
  }
  for (const pid of alive) signal(pid, 'SIGKILL');
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}
