import { createHash } from 'node:crypto';
import { z } from 'zod';
import { IPv4 } from '../../../schemas/common.js';
import { RefitError } from '../../../schemas/errors.js';
import type { VxlanEnd } from '../../../schemas/steps.js';
import type { IfupdownFlavour } from './ifupdown.js';
import {
  ifaceStanzas,
  optionValue,
  parseInterfaces,
  printInterfaces,
  withoutClassNames,
  renderStanza,
  type IfaceStanza,
  type InterfacesBlock,
} from './interfaces-file.js';
import { ifName, type IfName } from './names.js';

export type VxlanParams = VxlanEnd;

/** What the tunnel is, as far as refit sets it: compared between the plan and the running host. */
export interface VxlanTunnel {
  type: 'ovs' | 'linux';
  name: string;
  vni: number;
  remote: string;
  local?: string | undefined;
  dstPort: number;
  /** ovs: the bridge and access tag; linux: the underlay device and MTU. */
  bridge?: string | undefined;
  tag?: number | undefined;
  underlay?: string | undefined;
  mtu?: number | undefined;
}

export class VxlanOutputError extends RefitError {}

const ip4 = (v: string) => IPv4.parse(v);
const vni = (v: number) => String(z.number().int().min(1).max(16_777_215).parse(v));
const port = (v: number) => String(z.number().int().min(1).max(65_535).parse(v));
const mtu = (v: number) => String(z.number().int().min(68).max(65_535).parse(v));

/** `ovs_tunnel_options` / the options of `set interface`: remote, key (the VNI), destination port, local. */
export function ovsTunnelOptions(t: Pick<VxlanTunnel, 'remote' | 'vni' | 'dstPort' | 'local'>): string[] {
  return [
    `options:remote_ip=${ip4(t.remote)}`,
    `options:key=${vni(t.vni)}`,
    `options:dst_port=${port(t.dstPort)}`,
    ...(t.local !== undefined ? [`options:local_ip=${ip4(t.local)}`] : []),
  ];
}

/**
 * The MAC address a Linux vxlan device keeps across reboots: locally administered, unicast, derived from
 * what the tunnel is (name, VNI, its two ends), so each end has its own. The kernel gives a new vxlan
 * device a random one at every boot, and the VMs at the other end keep sending to the old one from
 * their ARP caches until those expire (measured in the lab: no traffic across the tunnel for half a
 * minute after the Linux end rebooted), so the stanza sets it.
 */
export function vxlanMac(t: Pick<VxlanTunnel, 'name' | 'vni' | 'local' | 'remote'>): string {
  const digest = createHash('sha256')
    .update(`refit-vxlan ${t.name} ${t.vni} ${t.local ?? ''} ${t.remote}`)
    .digest();
  const bytes = [...digest.subarray(0, 6)];
  bytes[0] = ((bytes[0] as number) & 0xfc) | 0x02;
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** `ip link add <name> address <mac> mtu <mtu> type vxlan id <vni> dstport <port> remote <ip> local <ip> dev <underlay>`. */
export function ipLinkAddVxlanArgv(t: VxlanTunnel & { underlay: string; mtu: number }): string[] {
  return [
    'ip',
    'link',
    'add',
    ifName(t.name),
    'address',
    vxlanMac(t),
    'mtu',
    mtu(t.mtu),
    'type',
    'vxlan',
    'id',
    vni(t.vni),
    'dstport',
    port(t.dstPort),
    'remote',
    ip4(t.remote),
    ...(t.local !== undefined ? ['local', ip4(t.local)] : []),
    'dev',
    ifName(t.underlay),
  ];
}

/** The OVS row of one interface, empty when there is none. */
export const ovsFindInterfaceArgv = (name: IfName): string[] => [
  'ovs-vsctl',
  '--timeout=10',
  '--format=json',
  '--columns=name,type,options',
  'find',
  'Interface',
  `name=${ifName(name)}`,
];

const LinkJson = z.array(
  z.looseObject({
    ifname: z.string(),
    mtu: z.number().int().optional(),
    linkinfo: z
      .looseObject({
        info_kind: z.string().optional(),
        info_data: z
          .looseObject({
            id: z.number().int().optional(),
            remote: z.string().optional(),
            local: z.string().optional(),
            link: z.string().optional(),
            port: z.number().int().optional(),
          })
          .optional(),
      })
      .optional(),
  }),
);

/** One link of `ip -j -d link show dev <name>`: its kind and, for a vxlan device, what it is. */
export function parseLinkVxlan(stdout: string): {
  name: string;
  kind: string | undefined;
  mtu: number | undefined;
  tunnel: VxlanTunnel | undefined;
} {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (cause) {
    throw new VxlanOutputError('ip -j -d link: not JSON', { cause });
  }
  const parsed = LinkJson.safeParse(json);
  const link = parsed.success ? parsed.data[0] : undefined;
  if (link === undefined) throw new VxlanOutputError('ip -j -d link: no link in the output');
  const info = link.linkinfo;
  const data = info?.info_data;
  const tunnel: VxlanTunnel | undefined =
    info?.info_kind === 'vxlan' && data?.id !== undefined && data.remote !== undefined
      ? {
          type: 'linux',
          name: link.ifname,
          vni: data.id,
          remote: data.remote,
          local: data.local,
          dstPort: data.port ?? 8472,
          underlay: data.link,
          mtu: link.mtu,
        }
      : undefined;
  return { name: link.ifname, kind: info?.info_kind, mtu: link.mtu, tunnel };
}

/** A ping's `N packets transmitted, M received` (iputils); the rest of its output is ignored. */
export function parsePingCounts(stdout: string): { transmitted: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(stdout);
  if (m === null) throw new VxlanOutputError('ping: no "packets transmitted" summary in its output');
  return { transmitted: Number(m[1]), received: Number(m[2]) };
}

/** `ping -M do -s <payload>`: ICMP echo with the don't-fragment bit, never fragmented by the sender. */
export function pingDfArgv(address: string, payload: number, count: number): string[] {
  const size = z.number().int().min(0).max(65_507).parse(payload);
  const n = z.number().int().min(1).max(100).parse(count);
  return ['ping', '-n', '-q', '-M', 'do', '-s', String(size), '-c', String(n), '-i', '0.2', '-W', '1', ip4(address)];
}

/** What a planner wants /etc/network/interfaces to be. */
export interface VxlanFilePlan {
  changed: boolean;
  text: string;
  /** The stanza refit writes for the tunnel (also when the file has it already). */
  stanza: string;
}

const isOvsBridge = (s: IfaceStanza) => optionValue(s, 'ovs_type') === 'OVSBridge';

/** The bridge's stanza with `name` added to (or taken off) its `ovs_ports`; undefined when it has none. */
function withOvsPort(blocks: InterfacesBlock[], bridge: string, name: string, add: boolean): InterfacesBlock[] {
  return blocks.map((b) => {
    if (b.type !== 'iface' || b.name !== bridge || !isOvsBridge(b)) return b;
    const ports = (optionValue(b, 'ovs_ports') ?? '').split(/\s+/).filter((p) => p !== '' && p !== name);
    const next = add ? [...ports, name] : ports;
    const had = b.options.some((o) => o.key.replace(/-/g, '_') === 'ovs_ports');
    const lines = b.raw.split('\n');
    const raw = had
      ? lines.map((l) => (/^\s*ovs[-_]ports\b/.test(l) ? l.replace(/(ovs[-_]ports)\b.*$/, `$1 ${next.join(' ')}`) : l))
      : [lines[0] as string, `\tovs_ports ${next.join(' ')}`, ...lines.slice(1)];
    return { ...b, raw: raw.join('\n') };
  });
}

/**
 * The stanza that makes the tunnel at every boot, written the way the host's ifupdown expects it:
 * - ovs: an `OVSTunnel` (Open vSwitch's ifupdown hook and ifupdown2's openvswitch_port addon both take
 *   `ovs_tunnel_type` and `ovs_tunnel_options`), listed in the bridge's `ovs_ports`; `allow-<bridge>` for
 *   classic ifupdown, `auto` for ifupdown2 (which also removes ports missing from `ovs_ports`).
 * - linux: ifupdown2's own `vxlan-*` attributes (`vxlan-svcnodeip` is the device's `remote`; its
 *   `vxlan-remoteip` would add forwarding entries instead); classic ifupdown makes the device in `pre-up`.
 */
export function vxlanStanza(p: VxlanParams, flavour: IfupdownFlavour, tunnelMtu: number): string {
  const name = ifName(p.name);
  if (p.type === 'ovs') {
    const bridge = ifName(p.bridge);
    return renderStanza([flavour === 2 ? `auto ${name}` : `allow-${bridge} ${name}`], name, 'inet', 'manual', [
      ['ovs_type', 'OVSTunnel'],
      ['ovs_bridge', bridge],
      ['ovs_tunnel_type', 'vxlan'],
      ['ovs_tunnel_options', ovsTunnelOptions(p).join(' ')],
      ...(p.tag !== undefined ? [['ovs_options', `tag=${p.tag}`] as [string, string]] : []),
    ]);
  }
  const method = p.address !== undefined ? 'static' : 'manual';
  const address: [string, string][] = p.address !== undefined ? [['address', z.cidrv4().parse(p.address)]] : [];
  if (flavour === 2)
    return renderStanza([`auto ${name}`], name, 'inet', method, [
      ['vxlan-id', vni(p.vni)],
      ...(p.local !== undefined ? [['vxlan-local-tunnelip', ip4(p.local)] as [string, string]] : []),
      ['vxlan-svcnodeip', ip4(p.remote)],
      ['vxlan-port', port(p.dstPort)],
      ['vxlan-physdev', ifName(p.underlay)],
      ['hwaddress', vxlanMac(p)],
      ['mtu', mtu(tunnelMtu)],
      ...address,
    ]);
  const add = ipLinkAddVxlanArgv({ ...p, type: 'linux', mtu: tunnelMtu }).join(' ');
  return renderStanza([`auto ${name}`], name, 'inet', method, [
    ['pre-up', add],
    ...(method === 'manual' ? [['up', `ip link set dev ${name} up`] as [string, string]] : []),
    ...address,
    ['post-down', `ip link delete dev ${name}`],
  ]);
}

/** Add (or replace) the tunnel's stanza; every other block stays byte for byte. */
export function planVxlanFile(
  text: string,
  p: VxlanParams,
  flavour: IfupdownFlavour,
  tunnelMtu: number,
): VxlanFilePlan {
  const stanza = vxlanStanza(p, flavour, tunnelMtu);
  const without = removeVxlan(text, p.name, p.type === 'ovs' ? p.bridge : undefined);
  let blocks = parseInterfaces(without.text.replace(/\n*$/, '\n'));
  if (p.type === 'ovs') {
    const bridge = ifName(p.bridge);
    if (!ifaceStanzas(blocks, bridge).some(isOvsBridge))
      throw new VxlanPlanError(`no OVS bridge "${bridge}" (an OVSBridge stanza) in the file: run ovs-convert first`);
    blocks = withOvsPort(blocks, bridge, p.name, true);
  }
  const next = `${printInterfaces(blocks)}\n${stanza}`;
  const current = text.endsWith('\n') ? text : `${text}\n`;
  return { changed: next !== current, text: next === current ? text : next, stanza };
}

/** The file without the tunnel's stanza, its auto/allow names and its place in the bridge's ovs_ports. */
export function removeVxlan(
  text: string,
  name: string,
  bridge: string | undefined,
): { changed: boolean; text: string } {
  const blocks = parseInterfaces(text);
  let kept = withoutClassNames(
    blocks.filter((b) => !(b.type === 'iface' && b.name === name)),
    new Set([name]),
  );
  if (bridge !== undefined) kept = withOvsPort(kept, bridge, name, false);
  // The stanza refit added is preceded by one blank line; take it away with the stanza.
  const out = printInterfaces(kept).replace(/\n\n+$/, '\n');
  return { changed: out !== text, text: out === text ? text : out };
}

/** The file cannot take the tunnel as asked (no OVS bridge to join): retrying cannot help. */
export class VxlanPlanError extends RefitError {}

/** Differences between two descriptions of a tunnel, as `field: running → wanted`. */
export function tunnelDifferences(running: VxlanTunnel, wanted: VxlanTunnel): string[] {
  const keys = ['type', 'vni', 'remote', 'local', 'dstPort', 'bridge', 'tag', 'underlay', 'mtu'] as const;
  return keys
    .filter((k) => wanted[k] !== undefined && running[k] !== wanted[k])
    .map((k) => `${k}: ${String(running[k])} → ${String(wanted[k])}`);
}
