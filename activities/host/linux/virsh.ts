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

export const virshDumpxmlArgv = (uri: string, domain: string): string[] => [
  ...virsh(uri),
  'dumpxml',
  '--domain',
  vmArg(domain),
];

/**
 * From `virsh dumpxml`: the domain's memory in bytes (`<memory unit='KiB'>`) and the devices that pin
 * it to this host: each `<hostdev>` and each `<interface type='hostdev'>` (an SR-IOV VF), named
 * hostdev0, hostdev1, ... in document order.
 */
export function parseDomainXml(xml: string): { memoryBytes: number | undefined; passthrough: string[] } {
  if (!/<domain[\s>]/.test(xml)) throw new VirshOutputError('virsh dumpxml: no <domain> element');
  const mem = /<memory(?:\s+unit=['"](\w+)['"])?\s*>(\d+)<\/memory>/.exec(xml);
  const unit: Record<string, number> = {
    b: 1,
    bytes: 1,
    KiB: 1024,
    k: 1024,
    MiB: 2 ** 20,
    M: 2 ** 20,
    GiB: 2 ** 30,
    G: 2 ** 30,
  };
  const factor = mem === null ? undefined : unit[mem[1] ?? 'KiB'];
  const memoryBytes = mem === null || factor === undefined ? undefined : Number(mem[2]) * factor;
  const devices = xml.match(/<hostdev[\s>]|<interface\s+type=['"]hostdev['"]/g) ?? [];
  return { memoryBytes, passthrough: devices.map((_, i) => `hostdev${i}`) };
}
