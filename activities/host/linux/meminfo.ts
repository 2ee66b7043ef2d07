import { readFile } from 'node:fs/promises';
import os from 'node:os';

/**
 * The memory of a Linux host from /proc/meminfo (proc(5): "MemTotal:  16318436 kB" lines): total, and
 * free as MemAvailable (what can be given to new processes without swapping: the room a VM finds),
 * MemFree where the kernel is older than 3.14 and has no MemAvailable.
 */
export function parseMeminfo(text: string): { totalBytes: number; freeBytes: number } | undefined {
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text);
    return m === null ? undefined : Number(m[1]) * 1024;
  };
  const totalBytes = kb('MemTotal');
  const freeBytes = kb('MemAvailable') ?? kb('MemFree');
  return totalBytes === undefined || freeBytes === undefined ? undefined : { totalBytes, freeBytes };
}

/** This machine's memory and CPUs for the facts; nothing where /proc/meminfo cannot be read. */
export async function linuxCapacity(
  meminfo = '/proc/meminfo',
): Promise<{ memory?: { totalBytes: number; freeBytes: number }; cpus?: number }> {
  const memory = parseMeminfo(await readFile(meminfo, 'utf8').catch(() => ''));
  const cpus = os.availableParallelism();
  return { ...(memory !== undefined ? { memory } : {}), ...(cpus > 0 ? { cpus } : {}) };
}
