import { z } from 'zod';
import { RefitError } from '../../../schemas/errors.js';
import { InvalidStepParamsError } from '../driver.js';

/**
 * The Proxmox VE commands refit runs on a node, and the parsers of their output. Formats as the
 * Proxmox sources define them: `pvesh get /nodes/<node>/qemu` is qemu-server's vmlist
 * (PVE/API2/Qemu.pm: vmid, name, status, maxmem in bytes, ...), `/cluster/resources` is pve-manager's
 * (PVE/API2/Cluster.pm: per node id, node, status, maxmem, mem, maxcpu), `/nodes/<node>/storage` is
 * pve-manager's storage index (storage, type, shared 0|1), `qm config` prints the VM's current
 * configuration as `key: value` lines (qm(1); PVE/CLI/qm.pm). Every name and id is checked by schema
 * before it reaches a command line.
 */

/** A Proxmox VE node name: a DNS label, as the installer and pvecm accept them. */
export const PveNode = z
  .string()
  .regex(/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/, 'must be a Proxmox node name (a DNS label)');

/** A guest id: 100 to 999999999 (the datacenter's next-id range). */
export const Vmid = z.number().int().min(100).max(999_999_999);

export class ProxmoxOutputError extends RefitError {}

function checked<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new InvalidStepParamsError(
      `${what} ${JSON.stringify(value)} is not valid: ${parsed.error.issues[0]?.message ?? 'rejected'}`,
    );
  return parsed.data;
}

export const pveNode = (value: unknown, what = 'Proxmox node name') => checked(PveNode, value, what);
export const vmid = (value: unknown) => String(checked(Vmid, value, 'vmid'));

const json = ['--output-format', 'json'];

export const pveshQemuListArgv = (node: string) => ['pvesh', 'get', `/nodes/${pveNode(node)}/qemu`, ...json];
export const pveshNodeResourcesArgv = () => ['pvesh', 'get', '/cluster/resources', '--type', 'node', ...json];
export const pveshStorageArgv = (node: string) => ['pvesh', 'get', `/nodes/${pveNode(node)}/storage`, ...json];
export const qmConfigArgv = (id: number) => ['qm', 'config', vmid(id)];

/** `qm migrate <vmid> <target> --online [--with-local-disks]`: a live migration. */
export function qmMigrateOnlineArgv(id: number, target: string, localDisks: boolean): string[] {
  return ['qm', 'migrate', vmid(id), pveNode(target), '--online', ...(localDisks ? ['--with-local-disks'] : [])];
}

/**
 * `qm migrate <vmid> <target> [--with-local-disks] [--force 1]` of a stopped VM: an offline migration.
 * qemu-server refuses to move a VM with a local device (`hostpciN`) even offline unless `--force`
 * (root only): refit runs as root and asks for it only for such a VM (nonMigratable: shutdown).
 */
export function qmMigrateOfflineArgv(id: number, target: string, localDisks: boolean, localDevices = false): string[] {
  return [
    'qm',
    'migrate',
    vmid(id),
    pveNode(target),
    ...(localDisks ? ['--with-local-disks'] : []),
    ...(localDevices ? ['--force', '1'] : []),
  ];
}

/** `qm shutdown <vmid> --timeout <s>`: an ACPI shutdown, waited for up to the timeout. */
export const qmShutdownArgv = (id: number, timeoutS: number) => [
  'qm',
  'shutdown',
  vmid(id),
  '--timeout',
  String(Math.max(1, Math.round(timeoutS))),
];

/** Start a VM on another node of the cluster: the API call `qm start` makes, proxied by pvesh to that node. */
export const pveshStartArgv = (node: string, id: number) => [
  'pvesh',
  'create',
  `/nodes/${pveNode(node)}/qemu/${vmid(id)}/status/start`,
];

/** `ha-manager crm-command node-maintenance enable|disable <node>` (ha-manager(1), PVE 7.3 and later). */
export const haMaintenanceArgv = (on: boolean, node: string) => [
  'ha-manager',
  'crm-command',
  'node-maintenance',
  on ? 'enable' : 'disable',
  pveNode(node),
];

function parseJson(stdout: string, what: string): unknown {
  try {
    return JSON.parse(stdout) as unknown;
  } catch (err) {
    throw new ProxmoxOutputError(`${what}: not JSON (${(err as Error).message})`);
  }
}

function parsed<T>(schema: z.ZodType<T>, stdout: string, what: string): T {
  const result = schema.safeParse(parseJson(stdout, what));
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ProxmoxOutputError(
      `${what}: ${issue ? `${issue.path.join('.') || '(top)'}: ${issue.message}` : 'rejected'}`,
    );
  }
  return result.data;
}

// pvesh prints numbers as JSON numbers; a few fields are strings in older releases. Both are taken.
const Num = z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]);

const QemuListEntry = z.object({
  vmid: z.union([Vmid, z.string().regex(/^\d+$/).transform(Number).pipe(Vmid)]),
  name: z.string().max(200).optional(),
  status: z.string().max(64),
  maxmem: Num.optional(),
  cpus: Num.optional(),
});
export type QemuListEntry = z.infer<typeof QemuListEntry>;

/** `pvesh get /nodes/<node>/qemu --output-format json`: the node's VMs. */
export const parseQemuList = (stdout: string): QemuListEntry[] =>
  parsed(z.array(QemuListEntry), stdout, 'pvesh get /nodes/<node>/qemu');

const NodeResource = z.object({
  type: z.literal('node'),
  node: z.string(),
  status: z.string().optional(),
  maxmem: Num.optional(),
  mem: Num.optional(),
  maxcpu: Num.optional(),
});
export type NodeResource = z.infer<typeof NodeResource>;

/** `pvesh get /cluster/resources --type node --output-format json`: each node's memory and CPUs. */
export const parseNodeResources = (stdout: string): NodeResource[] =>
  parsed(z.array(z.looseObject({ type: z.string() })), stdout, 'pvesh get /cluster/resources --type node')
    .filter((r) => r.type === 'node')
    .map((r) => parsed(NodeResource, JSON.stringify(r), 'pvesh get /cluster/resources --type node'));

const StorageEntry = z.object({ storage: z.string(), type: z.string().optional(), shared: Num.optional() });

/** `pvesh get /nodes/<node>/storage --output-format json`: the storages this node sees and which are shared. */
export function parseStorages(stdout: string): Map<string, boolean> {
  const list = parsed(z.array(StorageEntry), stdout, 'pvesh get /nodes/<node>/storage');
  return new Map(list.map((s) => [s.storage, s.shared === 1]));
}

/**
 * `qm config <vmid>`: `key: value` lines of the current configuration (a pending or snapshot section,
 * `[name]`, ends it: qm config prints only the current one unless asked).
 */
export function parseQmConfig(stdout: string): Map<string, string> {
  const config = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    if (/^\s*\[/.test(line)) break;
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = /^([a-z][a-z0-9_-]*):\s?(.*)$/.exec(line);
    if (m === null) throw new ProxmoxOutputError(`qm config: cannot read the line ${JSON.stringify(line)}`);
    config.set(m[1] as string, (m[2] as string).trim());
  }
  return config;
}

/** The devices that pin a VM to its node: PCI passthrough (`hostpciN`, SR-IOV VFs included). */
export const passthroughDevices = (config: Map<string, string>): string[] =>
  [...config.keys()].filter((k) => /^hostpci\d+$/.test(k)).sort();

const DISK_KEY = /^(ide|sata|scsi|virtio|efidisk|tpmstate)\d+$/;

/**
 * Whether any disk of the VM is on storage only this node has: a volume on a storage that is not
 * `shared`, one on a storage this node does not list, or a raw path. CD-ROMs and `none` do not count.
 */
export function hasLocalDisk(config: Map<string, string>, shared: Map<string, boolean>): boolean {
  for (const [key, value] of config) {
    if (!DISK_KEY.test(key)) continue;
    const [volume = '', ...options] = value.split(',');
    if (volume === 'none' || options.includes('media=cdrom')) continue;
    const storage = /^([A-Za-z][A-Za-z0-9_.-]*):/.exec(volume)?.[1];
    if (storage === undefined || shared.get(storage) !== true) return true;
  }
  return false;
}

/** This node's memory and CPUs from /cluster/resources. */
export function nodeCapacity(
  resources: readonly NodeResource[],
  node: string,
): { memory?: { totalBytes: number; freeBytes: number }; cpus?: number } {
  const mine = resources.find((r) => r.node === node);
  if (mine === undefined) throw new ProxmoxOutputError(`/cluster/resources lists no node ${node}`);
  const { maxmem, mem, maxcpu } = mine;
  return {
    ...(maxmem !== undefined && mem !== undefined
      ? { memory: { totalBytes: maxmem, freeBytes: Math.max(0, maxmem - mem) } }
      : {}),
    ...(maxcpu !== undefined && maxcpu > 0 ? { cpus: maxcpu } : {}),
  };
}
