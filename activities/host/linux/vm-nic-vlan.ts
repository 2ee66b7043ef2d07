import { z } from 'zod';
import { RefitError } from '../../../schemas/errors.js';
import { ifName, type IfName } from './names.js';

/**
 * A VM NIC's VLAN tag as Proxmox and libvirt keep it, rewritten for ovs-convert: the VMs on the
 * converted bridge get the plan's tag, MAC and model kept. Pure text in, text out; the commands that
 * read and write them (`qm config`/`qm set`, `virsh dumpxml`/`update-device`) build on these.
 */

export class VmNicFormatError extends RefitError {}

/** The NIC models qemu-server takes as the first key of a netN value (`virtio=<mac>` or plain `virtio`). */
export const QM_NIC_MODELS = [
  'e1000',
  'e1000-82540em',
  'e1000-82544gc',
  'e1000-82545em',
  'e1000e',
  'i82551',
  'i82557b',
  'i82559er',
  'ne2k_isa',
  'ne2k_pci',
  'pcnet',
  'rtl8139',
  'virtio',
  'vmxnet3',
] as const;

/** One `netN` property string of `qm config`, its properties in their order. */
export interface QmNet {
  model: string;
  /** undefined where the value names no MAC (Proxmox then generates one). */
  mac: string | undefined;
  /** Every `key=value` after the model, in order (bridge, firewall, tag, trunks, ...). */
  options: [string, string][];
}

const Tag = z.number().int().min(1).max(4094);

/**
 * Parse a `netN` value as qemu-server documents it:
 * `[model=]<model>[,bridge=<bridge>][,firewall=<1|0>][,link_down=<1|0>][,macaddr=<mac>][,mtu=<n>]
 * [,queues=<n>][,rate=<n>][,tag=<vlan>][,trunks=<vlan;...>]`, the model written `<model>=<mac>` or alone.
 */
export function parseQmNet(value: string): QmNet {
  const parts = value.trim().split(',');
  let model: string | undefined;
  let mac: string | undefined;
  const options: [string, string][] = [];
  for (const part of parts) {
    const eq = part.indexOf('=');
    const [key, val] = eq === -1 ? [part, undefined] : [part.slice(0, eq), part.slice(eq + 1)];
    if ((QM_NIC_MODELS as readonly string[]).includes(key) && model === undefined) {
      model = key;
      mac = val;
    } else if (key === 'model' && val !== undefined && model === undefined) {
      model = val;
    } else if (key === 'macaddr' && val !== undefined) {
      mac = val;
    } else if (val !== undefined && key !== '') {
      options.push([key, val]);
    } else {
      throw new VmNicFormatError(`not a netN value: ${JSON.stringify(value)} (${JSON.stringify(part)})`);
    }
  }
  if (model === undefined) throw new VmNicFormatError(`no NIC model in ${JSON.stringify(value)}`);
  return { model, mac, options };
}

/** Write a QmNet back as `qm set <vmid> --netN` takes it: `<model>=<mac>` first, the options as they were. */
export function serializeQmNet(net: QmNet): string {
  const head = net.mac === undefined ? net.model : `${net.model}=${net.mac}`;
  return [head, ...net.options.map(([k, v]) => `${k}=${v}`)].join(',');
}

/** The value with `tag=<vlan>` (replacing any tag; appended where there was none), or without a tag. */
export function withQmTag(value: string, tag: number | undefined): string {
  const net = parseQmNet(value);
  const options = net.options.filter(([k]) => k !== 'tag');
  const at = net.options.findIndex(([k]) => k === 'tag');
  if (tag !== undefined) {
    const entry: [string, string] = ['tag', String(Tag.parse(tag))];
    if (at === -1) options.push(entry);
    else options.splice(at, 0, entry);
  }
  return serializeQmNet({ ...net, options });
}

/** The bridge and tag of a netN value. */
export function qmNetPlacement(value: string): { bridge: string | undefined; tag: number | undefined } {
  const options = new Map(parseQmNet(value).options);
  const tag = options.get('tag');
  return { bridge: options.get('bridge'), tag: tag === undefined ? undefined : Number(tag) };
}

const INTERFACE = /^\s*<interface\b[^>]*>[\s\S]*<\/interface>\s*$/;

/**
 * A libvirt `<interface>` element (as `virsh dumpxml` prints it) on an Open vSwitch bridge with a VLAN:
 * `<virtualport type='openvswitch'/>` and `<vlan><tag id='…'/></vlan>`, or without both for the Linux
 * bridge. Everything else (MAC, model, source, target, address) is kept as it was.
 */
export function withLibvirtVlan(interfaceXml: string, tag: number | undefined): string {
  if (!INTERFACE.test(interfaceXml)) throw new VmNicFormatError('not one <interface> element');
  const indent = /\n([ \t]*)<(?:mac|source|model)\b/.exec(interfaceXml)?.[1] ?? '  ';
  const ovsPort = /<virtualport\s+type=['"]openvswitch['"]/.test(interfaceXml);
  let xml = interfaceXml.replace(/\n?[ \t]*<vlan\b[^>]*>[\s\S]*?<\/vlan>/g, '');
  // Back on a Linux bridge: no virtual port; on OVS one of openvswitch's is kept (with its interfaceid).
  if (tag === undefined || !ovsPort)
    xml = xml
      .replace(/\n?[ \t]*<virtualport\b[^>]*\/>/g, '')
      .replace(/\n?[ \t]*<virtualport\b[^>]*>[\s\S]*?<\/virtualport>/g, '');
  if (tag === undefined) return xml;
  const id = Tag.parse(tag);
  const added = [
    ...(ovsPort ? [] : [`${indent}<virtualport type='openvswitch'/>`]),
    `${indent}<vlan>`,
    `${indent}  <tag id='${id}'/>`,
    `${indent}</vlan>`,
  ].join('\n');
  return xml.replace(
    /\n([ \t]*)<\/interface>(\s*)$/,
    (_m, end: string, tail: string) => `\n${added}\n${end}</interface>${tail}`,
  );
}

/** The VLAN tag of a libvirt `<interface>`; undefined without one. */
export function libvirtVlanTag(interfaceXml: string): number | undefined {
  const id = /<vlan\b[^>]*>\s*<tag\s+id=['"](\d+)['"]/.exec(interfaceXml)?.[1];
  return id === undefined ? undefined : Number(id);
}

/** `ovs-vsctl set port <port> tag=<vlan>`: a VM's running OVS port (tap, vnet) on the VLAN at once; without a tag, `clear port <port> tag`. */
export function ovsPortTagArgv(port: IfName, tag: number | undefined): string[] {
  return tag === undefined
    ? ['ovs-vsctl', 'clear', 'port', ifName(port), 'tag']
    : ['ovs-vsctl', 'set', 'port', ifName(port), `tag=${Tag.parse(tag)}`];
}
