import { z } from 'zod';
import { vmArg } from './names.js';
import { RefitError } from '../../../schemas/errors.js';

/** A libvirt connection URI such as `qemu:///system`, `qemu+ssh://host/system` or `test:///default`. */
export const LibvirtUri = z
  .string()
  .regex(/^[a-z][a-z0-9+]*:\/\/[A-Za-z0-9.:@_-]*\/[A-Za-z0-9_/.-]*$/, 'must be a libvirt URI');

const virsh = (uri: string) => ['virsh', '-c', LibvirtUri.parse(uri)];

export const virshListArgv = (uri: string): string[] => [...virsh(uri), 'list', '--all'];

export const virshDominfoArgv = (uri: string, domain: string): string[] => [
  ...virsh(uri),
  'dominfo',
  '--domain',
  vmArg(domain),
];

/**
 * Live-migrate a running domain to another host, keeping its definition there and removing it here,
 * so that a drained host no longer claims the VM.
 */
export function virshMigrateLiveArgv(uri: string, domain: string, destinationUri: string): string[] {
  return [
    ...virsh(uri),
    'migrate',
    '--live',
    '--persistent',
    '--undefinesource',
    '--verbose',
    '--domain',
    vmArg(domain),
    '--desturi',
    LibvirtUri.parse(destinationUri),
  ];
}

export interface VirshDomain {
  /** Undefined for a domain that is not running ("-"). */
  id: number | undefined;
  name: string;
  state: string;
}

export class VirshOutputError extends RefitError {}

/** Parse `virsh list --all`: the table after the " Id   Name   State" header and its dashes. */
export function parseVirshList(stdout: string): VirshDomain[] {
  const lines = stdout.split('\n');
  const header = lines.findIndex((l) => /^\s*Id\s+Name\s+State\s*$/.test(l));
  if (header < 0) throw new VirshOutputError('virsh list: no "Id Name State" header');
  return lines
    .slice(header + 2)
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^(\S+)\s+(\S+)\s+(.+)$/.exec(l);
      if (m === null) throw new VirshOutputError(`virsh list: cannot read the row "${l}"`);
      const [, id, name, state] = m as unknown as [string, string, string, string];
      return { id: id === '-' ? undefined : Number(id), name, state: state.trim() };
    });
}

/** Parse `virsh dominfo`: "Key:   value" lines into a record keyed as printed. */
export function parseVirshDominfo(stdout: string): Record<string, string> {
  const info: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^([A-Za-z][A-Za-z ()]*?):\s*(.*)$/.exec(line);
    if (m !== null) info[m[1] as string] = (m[2] as string).trim();
  }
  if (info.Name === undefined) throw new VirshOutputError('virsh dominfo: no "Name:" line');
  return info;
}
