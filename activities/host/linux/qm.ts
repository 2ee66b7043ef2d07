import { z } from 'zod';
import { HostId } from '../../../schemas/common.js';

/** A Proxmox VM id. */
export const Vmid = z.number().int().min(100).max(999_999_999);

/** `qm migrate <vmid> <target> --online`: live-migrate a Proxmox VM to another cluster node. */
export function qmMigrateOnlineArgv(vmid: number, targetNode: string): string[] {
  return ['qm', 'migrate', String(Vmid.parse(vmid)), HostId.parse(targetNode), '--online'];
}

export const qmListArgv = (): string[] => ['qm', 'list'];

export interface QmVm {
  vmid: number;
  name: string;
  status: string;
}

export class QmOutputError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'QmOutputError';
  }
}

/** Parse `qm list`: fixed columns VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID. */
export function parseQmList(stdout: string): QmVm[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  const [header, ...rows] = lines;
  if (header === undefined || !/^\s*VMID\s+NAME\s+STATUS\b/.test(header))
    throw new QmOutputError('qm list: no "VMID NAME STATUS" header');
  return rows.map((row) => {
    const m = /^\s*(\d+)\s+(\S+)\s+(\S+)/.exec(row);
    if (m === null) throw new QmOutputError(`qm list: cannot read the row "${row.trim()}"`);
    return { vmid: Number(m[1]), name: m[2] as string, status: m[3] as string };
  });
}
