import { existsSync } from 'node:fs';
import { readdir, readFile, readlink, rm } from 'node:fs/promises';
import path from 'node:path';
import { rootRunner } from '../activities/host/lab/exec.js';
import { DEFAULT_PREFIX } from '../activities/host/lab/layout.js';
import { stopProcesses } from '../activities/host/lab/ovs-daemons.js';
import { LabState, labStateFile } from '../activities/host/lab/state.js';

/** The lab's namespaces: <prefix>sw, <prefix>h<n>, <prefix>vm<id>; nothing else matches. */
export async function labNamespaces(prefix: string): Promise<string[]> {
  const listed = await rootRunner(['ip', 'netns', 'list']);
  const own = new RegExp(`^${prefix.replace(/[-]/g, '\\-')}(sw|h\\d+|vm\\d+)$`);
  return listed.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((name) => own.test(name));
}

export interface LabDownReport {
  namespaces: string[];
  processes: number[];
  removed: string[];
}

/**
 * Remove everything the lab made, found by name rather than trusted from a state file, so that it
 * also works after a crash: processes in the lab's namespaces or started from the lab dir, the
 * namespaces (and with them every veth, bridge and tap), /etc/netns/<ns>, and the lab dir.
 */
export async function labDown(opts: { labDir: string; prefix?: string }): Promise<LabDownReport> {
  const state = await readState(opts.labDir);
  const prefix = opts.prefix ?? state?.prefix ?? DEFAULT_PREFIX;
  const namespaces = await labNamespaces(prefix);
  const pids = new Set<number>();
  for (const ns of namespaces) {
    const listed = await rootRunner(['ip', 'netns', 'pids', ns]).catch(() => ({ stdout: '' }));
    for (const pid of listed.stdout.split('\n').map(Number)) if (pid > 0) pids.add(pid);
  }
  for (const pid of await processesMentioning(path.resolve(opts.labDir))) pids.add(pid);
  pids.delete(process.pid);
  await stopProcesses([...pids]);
  for (const ns of namespaces) await rootRunner(['ip', 'netns', 'delete', ns]).catch(() => undefined);
  const removed: string[] = [];
  const etcNetns = '/etc/netns';
  if (existsSync(etcNetns)) {
    const own = new RegExp(`^${prefix.replace(/[-]/g, '\\-')}(sw|h\\d+|vm\\d+)$`);
    for (const name of (await readdir(etcNetns)).filter((n) => own.test(n))) {
      await rm(path.join(etcNetns, name), { recursive: true, force: true });
      removed.push(path.join(etcNetns, name));
    }
  }
  if (state !== undefined || existsSync(path.join(opts.labDir, 'hosts'))) {
    await rm(opts.labDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    removed.push(opts.labDir);
  }
  return { namespaces, processes: [...pids], removed };
}

async function readState(labDir: string): Promise<LabState | undefined> {
  try {
    return LabState.parse(JSON.parse(await readFile(labStateFile(labDir), 'utf8')));
  } catch {
    return undefined;
  }
}

/**
 * Processes whose command line names the lab dir: OVS daemons whose namespace is already gone, and
 * host agents run from the lab's unpacked package whose `refit lab agents` died without stopping them.
 */
async function processesMentioning(labDir: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const exe = await readlink(`/proc/${entry}/exe`).catch(() => '');
    const args = cmdline.split('\0');
    const labAgent = args.some((arg) => arg.startsWith(`${labDir}/package/`));
    if ((exe.endsWith('/node') || exe.includes('vitest')) && !labAgent) continue;
    if (args.some((arg) => arg.startsWith(labDir + '/') || arg.includes(`=${labDir}/`))) found.push(Number(entry));
  }
  return found;
}
