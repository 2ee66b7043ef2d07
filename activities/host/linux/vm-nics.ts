import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { readStateFile } from '../../files.js';
import { StepFailedError, throwIfAborted, type StepContext } from '../driver.js';
import type { CommandRunner } from './command.js';
import { writeTextAtomic } from './host-env.js';
import { ifName, type IfName } from './names.js';
import { parseOvsPorts, ovsListPortsJsonArgv } from './ovs-vsctl.js';
import { parseQemuList, parseQmConfig, pveshQemuListArgv, qmConfigArgv, vmid as vmidArg } from './proxmox.js';
import { parseVirshList, virshDumpxmlArgv, virshListArgv } from './virsh.js';
import { vmArg } from './names.js';
import {
  libvirtVlanTag,
  ovsPortTagArgv,
  qmNetPlacement,
  withLibvirtVlan,
  withQmTag,
  VmNicFormatError,
} from './vm-nic-vlan.js';

/**
 * The VLAN tag of VM NICs on a bridge, read and written through whoever runs the VMs: Proxmox
 * (`qm config` / `qm set --netN`), libvirt (`virsh dumpxml` / `virsh update-device --live --config`)
 * or, where the VMs are plain taps on Open vSwitch (the lab), the port's tag (`ovs-vsctl set port`).
 * ovs-convert tags the NICs on the converted bridge and its revert puts the old values back; undrain
 * gives the VMs it brings back the tag of the bridge they land on. What was changed is kept in the
 * state dir (vm-vlan.json) before each write, so a revert finds the old values after a crash too.
 */

/** One NIC of a VM on a bridge, with its whole current value (what a revert writes back). */
export interface VmNic {
  /** The VM as the backend names it: Proxmox vmid, libvirt domain, lab VM name. */
  vm: string;
  /** The NIC within the VM: Proxmox `netN`, libvirt MAC address, the lab's tap. */
  nic: string;
  /** Proxmox: the netN value; libvirt: the `<interface>` element; OVS: the port's tag or ''. */
  value: string;
  tag: number | undefined;
  /** libvirt: whether the domain runs (update-device --live as well as --config). */
  running?: boolean;
  /** OVS: whether the tap is a port of the Open vSwitch bridge now. */
  onOvs?: boolean;
}

export interface VmNicBackend {
  readonly kind: 'proxmox' | 'libvirt' | 'ovs';
  /** The NICs on `bridge` of the VMs on this host (only those of `vms` when given). */
  nicsOn(bridge: IfName, vms?: readonly string[]): Promise<VmNic[]>;
  /** The NIC's value with `tag`, or without a tag. */
  withTag(nic: VmNic, tag: number | undefined): string;
  /** Make `value` the NIC's value (running and persistent). */
  write(nic: VmNic, value: string): Promise<void>;
}

export class VmNicError extends StepFailedError {}

/** A `qm set` property value: what qemu-server's property strings consist of, no spaces or quotes. */
const QmValue = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9=,:;._/-]{0,511}$/, 'must be a Proxmox property string');
const QmNetKey = z.string().regex(/^net\d{1,2}$/, 'must be netN');

/** `qm set <vmid> --netN <value>`, every part checked before it reaches the command line. */
export function qmSetNetArgv(id: number, key: string, value: string): string[] {
  const k = QmNetKey.safeParse(key);
  const v = QmValue.safeParse(value);
  if (!k.success || !v.success)
    throw new VmNicError(`qm set: refusing ${JSON.stringify(key)}=${JSON.stringify(value)} (not a netN value)`);
  return ['qm', 'set', vmidArg(id), `--${k.data}`, v.data];
}

/** Proxmox VE: every VM of this node (running or not: its config is on this node), its `netN` on the bridge. */
export function proxmoxVmNics(run: CommandRunner, node: string): VmNicBackend {
  return {
    kind: 'proxmox',
    async nicsOn(bridge, vms) {
      const listed = parseQemuList((await run(pveshQemuListArgv(node))).stdout).sort((a, b) => a.vmid - b.vmid);
      const nics: VmNic[] = [];
      for (const vm of listed) {
        if (vms !== undefined && !vms.includes(String(vm.vmid))) continue;
        const config = parseQmConfig((await run(qmConfigArgv(vm.vmid))).stdout);
        for (const [key, value] of config) {
          if (!/^net\d+$/.test(key)) continue;
          const placement = (() => {
            try {
              return qmNetPlacement(value);
            } catch (err) {
              if (err instanceof VmNicFormatError)
                throw new VmNicError(`${vm.vmid}/${key}: ${err.message}`, { cause: err });
              throw err;
            }
          })();
          if (placement.bridge === bridge)
            nics.push({ vm: String(vm.vmid), nic: key, value, tag: placement.tag, running: vm.status === 'running' });
        }
      }
      return nics;
    },
    withTag: (nic, tag) => withQmTag(nic.value, tag),
    async write(nic, value) {
      // qemu-server applies a changed tag to a running VM at once (it re-plugs the tap), and keeps it.
      await run(qmSetNetArgv(Number(nic.vm), nic.nic, value), { timeoutMs: 60_000 });
    },
  };
}

/** The `<interface>` elements of a domain's XML whose `<source bridge=…>` is `bridge`. */
export function libvirtInterfacesOn(domainXml: string, bridge: string): { mac: string; xml: string }[] {
  const found: { mac: string; xml: string }[] = [];
  for (const m of domainXml.matchAll(/([ \t]*)<interface\b[^>]*>[\s\S]*?<\/interface>/g)) {
    const xml = m[0];
    const source = /<source\b[^>]*\bbridge=['"]([^'"]+)['"]/.exec(xml)?.[1];
    const mac = /<mac\b[^>]*\baddress=['"]([0-9A-Fa-f:]{17})['"]/.exec(xml)?.[1];
    if (source === bridge && mac !== undefined) found.push({ mac: mac.toLowerCase(), xml });
  }
  return found;
}

/** `virsh update-device --domain <dom> --file <xml> --config [--live]`: the interface changed where it runs and in its definition. */
export function virshUpdateDeviceArgv(uri: string, domain: string, file: string, live: boolean): string[] {
  return [
    'virsh',
    '-c',
    uri,
    'update-device',
    '--domain',
    vmArg(domain),
    '--file',
    file,
    '--config',
    ...(live ? ['--live'] : []),
  ];
}

/** libvirt: every domain this host defines; its `<interface type='bridge'>` on the bridge, by MAC. */
export function libvirtVmNics(run: CommandRunner, uri: string, stateDir: string): VmNicBackend {
  return {
    kind: 'libvirt',
    async nicsOn(bridge, vms) {
      const nics: VmNic[] = [];
      for (const dom of parseVirshList((await run(virshListArgv(uri))).stdout)) {
        if (vms !== undefined && !vms.includes(dom.name)) continue;
        const xml = (await run(virshDumpxmlArgv(uri, dom.name))).stdout;
        for (const i of libvirtInterfacesOn(xml, bridge))
          nics.push({
            vm: dom.name,
            nic: i.mac,
            value: i.xml.trim(),
            tag: libvirtVlanTag(i.xml),
            running: dom.state === 'running',
          });
      }
      return nics;
    },
    withTag: (nic, tag) => withLibvirtVlan(nic.value, tag),
    async write(nic, value) {
      const dir = path.join(stateDir, 'vm-nics');
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const file = path.join(dir, `${vmArg(nic.vm)}-${nic.nic.replace(/:/g, '')}.xml`);
      await writeFile(file, `${value}\n`, { mode: 0o600 });
      try {
        await run(virshUpdateDeviceArgv(uri, nic.vm, file, nic.running === true), { timeoutMs: 60_000 });
      } finally {
        await rm(file, { force: true });
      }
    },
  };
}

/** VMs as plain taps on Open vSwitch (the lab): `ports()` says which port is whose; the tag is the port's. */
export function ovsPortVmNics(run: CommandRunner, ports: () => Promise<{ vm: string; port: string }[]>): VmNicBackend {
  return {
    kind: 'ovs',
    async nicsOn(bridge, vms) {
      const mine = (await ports()).filter((p) => vms === undefined || vms.includes(p.vm));
      if (mine.length === 0) return [];
      const onBridge = new Set(
        (await run(['ovs-vsctl', '--timeout=5', 'list-ports', ifName(bridge)], { okExitCodes: [1] })).stdout
          .split('\n')
          .filter((l) => l !== ''),
      );
      const rows = new Map(parseOvsPorts((await run(ovsListPortsJsonArgv())).stdout).map((p) => [p.name, p]));
      // A tap not on the OVS bridge (it is a Linux bridge again) has no tag: there is nothing to put back.
      return mine.map((p) => {
        const tag = onBridge.has(p.port) ? rows.get(p.port)?.tag : undefined;
        return { vm: p.vm, nic: p.port, value: tag === undefined ? '' : String(tag), tag, onOvs: onBridge.has(p.port) };
      });
    },
    withTag: (_nic, tag) => (tag === undefined ? '' : String(tag)),
    async write(nic, value) {
      if (nic.onOvs === false) {
        if (value === '') return;
        throw new VmNicError(`${nic.nic} is not a port of the Open vSwitch bridge; cannot tag it`);
      }
      await run(ovsPortTagArgv(ifName(nic.nic), value === '' ? undefined : Number(value)));
    },
  };
}

const Change = z.object({ vm: z.string(), nic: z.string(), before: z.string(), after: z.string() });
export type VmNicChange = z.infer<typeof Change>;
const VlanState = z.object({
  bridge: z.string(),
  /** The tag VMs landing on the bridge get; null after a revert (the bridge is Linux again). */
  tag: z.number().int().nullable(),
  /** NICs refit changed and has not put back yet, with their values from before. */
  changes: z.array(Change),
});
type VlanState = z.infer<typeof VlanState>;

const stateFile = (stateDir: string) => path.join(stateDir, 'vm-vlan.json');
export const readVmVlanState = (stateDir: string) => readStateFile(stateFile(stateDir), VlanState);
async function save(stateDir: string, s: VlanState): Promise<void> {
  if (s.tag === null && s.changes.length === 0) await rm(stateFile(stateDir), { force: true });
  else await writeTextAtomic(stateFile(stateDir), JSON.stringify(s, null, 2) + '\n');
}

/** What tagging or untagging did: each NIC changed (before → after) and each left as it was. */
export interface VmNicReport {
  backend: VmNicBackend['kind'];
  changed: VmNicChange[];
  unchanged: { vm: string; nic: string; value: string }[];
}

const describe = (n: { vm: string; nic: string }) => `${n.vm}/${n.nic}`;

/**
 * Give every NIC on `bridge` (of `vms`, when given) the tag, recording each old value before it is
 * written. Idempotent: a NIC with the tag already is left alone. Remembers the tag for undrain.
 */
export async function tagVmNics(
  backend: VmNicBackend,
  stateDir: string,
  bridge: IfName,
  tag: number,
  ctx: StepContext,
  vms?: readonly string[],
): Promise<VmNicReport> {
  const state: VlanState = (await readVmVlanState(stateDir)) ?? { bridge, tag, changes: [] };
  state.bridge = bridge;
  state.tag = tag;
  await save(stateDir, state);
  const report: VmNicReport = { backend: backend.kind, changed: [], unchanged: [] };
  for (const nic of await backend.nicsOn(bridge, vms)) {
    throwIfAborted(ctx.signal);
    const after = wanted(backend, nic, tag);
    if (after === nic.value) {
      report.unchanged.push({ vm: nic.vm, nic: nic.nic, value: nic.value });
      continue;
    }
    const earlier = state.changes.find((c) => c.vm === nic.vm && c.nic === nic.nic);
    const change = { vm: nic.vm, nic: nic.nic, before: earlier?.before ?? nic.value, after };
    state.changes = [...state.changes.filter((c) => c !== earlier), change];
    await save(stateDir, state);
    ctx.progress(90, `VLAN ${tag} on ${describe(nic)}`);
    await backend.write(nic, after).catch((err: unknown) => {
      throw new VmNicError(`could not put ${describe(nic)} on VLAN ${tag}: ${String(err)}`, { cause: err });
    });
    report.changed.push(change);
  }
  return report;
}

function wanted(backend: VmNicBackend, nic: VmNic, tag: number | undefined): string {
  try {
    return backend.withTag(nic, tag);
  } catch (err) {
    if (err instanceof VmNicFormatError) throw new VmNicError(`${describe(nic)}: ${err.message}`, { cause: err });
    throw err;
  }
}

/**
 * Put back the values refit changed, for the NICs on `bridge` here (of `vms`, when given) that still
 * have the value refit wrote; a NIC changed by someone else since is left and reported. NICs of VMs
 * not here now stay recorded, so that undrain puts them back when the VMs return. Forgets the tag.
 */
export async function untagVmNics(
  backend: VmNicBackend,
  stateDir: string,
  bridge: IfName,
  ctx: StepContext,
  vms?: readonly string[],
): Promise<VmNicReport & { changedSince: string[] }> {
  const state = await readVmVlanState(stateDir);
  const report: VmNicReport & { changedSince: string[] } = {
    backend: backend.kind,
    changed: [],
    unchanged: [],
    changedSince: [],
  };
  if (state === undefined) return report;
  if (vms === undefined) state.tag = null;
  const here = new Map((await backend.nicsOn(bridge, vms)).map((n) => [`${n.vm}\n${n.nic}`, n]));
  for (const change of [...state.changes]) {
    throwIfAborted(ctx.signal);
    const nic = here.get(`${change.vm}\n${change.nic}`);
    if (nic === undefined) continue;
    if (nic.value !== change.after && nic.value !== change.before) report.changedSince.push(describe(nic));
    else if (nic.value !== change.before) {
      ctx.progress(90, `${describe(nic)} back to its value from before`);
      await backend.write(nic, change.before);
      report.changed.push({ ...change, before: nic.value, after: change.before });
    }
    state.changes = state.changes.filter((c) => c !== change);
    await save(stateDir, state);
  }
  await save(stateDir, state);
  return report;
}

/**
 * After undrain brought `vms` back: on a bridge refit converted, they get its tag; where the conversion
 * was reverted meanwhile, the values they had before it. Nothing where refit never tagged this host.
 */
export async function fitArrivedVmNics(
  backend: VmNicBackend,
  stateDir: string,
  vms: readonly string[],
  ctx: StepContext,
): Promise<(VmNicReport & { tag: number | undefined; summary: string }) | undefined> {
  const state = await readVmVlanState(stateDir);
  if (state === undefined || vms.length === 0) return undefined;
  const bridge = ifName(state.bridge, 'bridge');
  const tag = state.tag ?? undefined;
  const report =
    tag === undefined
      ? await untagVmNics(backend, stateDir, bridge, ctx, vms)
      : await tagVmNics(backend, stateDir, bridge, tag, ctx, vms);
  return { ...report, tag, summary: vmNicSummary(report, tag) };
}

/** One line for a summary: "VLAN 30 on 2 VM NICs (101/net0, 102/net0)". */
export function vmNicSummary(report: VmNicReport, tag: number | undefined): string {
  const n = report.changed.length;
  if (n === 0)
    return report.unchanged.length > 0 ? `VM NICs already ${tag === undefined ? 'untagged' : `on VLAN ${tag}`}` : '';
  const names = report.changed.map(describe).join(', ');
  return tag === undefined
    ? `${n} VM NIC${n === 1 ? '' : 's'} back to their values from before (${names})`
    : `VLAN ${tag} on ${n} VM NIC${n === 1 ? '' : 's'} (${names})`;
}
