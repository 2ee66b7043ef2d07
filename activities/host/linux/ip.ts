import { z } from 'zod';
import { ifName, type IfName } from './names.js';
import { RefitError } from '../../../schemas/errors.js';
import { VfSettings } from '../../../schemas/steps.js';
import { vfSettingWords, type VfState } from './sriov.js';

/** `ip -j -d link show [dev]`: every link with its kind, master and (on SR-IOV NICs) its VFs. */
export function ipLinksArgv(dev?: IfName): string[] {
  return dev === undefined
    ? ['ip', '-j', '-d', 'link', 'show']
    : ['ip', '-j', '-d', 'link', 'show', 'dev', ifName(dev)];
}

export function ipAddrsArgv(): string[] {
  return ['ip', '-j', 'addr', 'show'];
}

export function ipLinkUpArgv(dev: IfName): string[] {
  return ['ip', 'link', 'set', 'dev', ifName(dev), 'up'];
}

export function ipLinkMasterArgv(dev: IfName, master: IfName): string[] {
  return ['ip', 'link', 'set', 'dev', ifName(dev), 'master', ifName(master)];
}

export function ipLinkNoMasterArgv(dev: IfName): string[] {
  return ['ip', 'link', 'set', 'dev', ifName(dev), 'nomaster'];
}

export function ipLinkDeleteArgv(dev: IfName): string[] {
  return ['ip', 'link', 'delete', 'dev', ifName(dev)];
}

/**
 * `ip link set dev <pf> vf <n> [vlan <tag>] [mac <mac>] [spoofchk on|off] [trust on|off]`; `vlan 0` clears
 * the VF's tag (as the SR-IOV seed, 001_f590dfafc891b798.txt, does).
 */
export function ipVfArgv(pf: IfName, vf: number, settings: VfSettings): string[] {
  const n = z.number().int().min(0).max(1023).parse(vf);
  const checked = VfSettings.parse(settings);
  const words = vfSettingWords(checked);
  if (words.length === 0) throw new Error(`nothing to set on vf ${n}`);
  return ['ip', 'link', 'set', 'dev', ifName(pf), 'vf', String(n), ...words];
}

const VfInfo = z.looseObject({
  vf: z.number().int(),
  /** `address` since iproute2 4.18 (with `link_type`), `mac` before. */
  address: z.string().optional(),
  mac: z.string().optional(),
  vlan_list: z.array(z.looseObject({ vlan: z.number().int().optional() })).optional(),
  /** Older iproute2 and drivers without VLAN lists print the tag here. */
  vlan: z.number().int().optional(),
  spoofchk: z.boolean().optional(),
  trust: z.boolean().optional(),
});

const IpLink = z.looseObject({
  ifindex: z.number().int(),
  ifname: z.string(),
  flags: z.array(z.string()).default([]),
  operstate: z.string().optional(),
  master: z.string().optional(),
  address: z.string().optional(),
  linkinfo: z.looseObject({ info_kind: z.string().optional(), info_slave_kind: z.string().optional() }).optional(),
  vfinfo_list: z.array(VfInfo).optional(),
});

export interface Link {
  name: string;
  index: number;
  up: boolean;
  /** "bridge", "veth", "tun", "openvswitch", ... ; undefined for plain devices. */
  kind: string | undefined;
  master: string | undefined;
  /** "bridge" for a Linux bridge port, "openvswitch" for a port of the kernel OVS datapath. */
  portKind: string | undefined;
  mac: string | undefined;
  vfs: ({ vf: number } & VfState)[];
}

export class IpOutputError extends RefitError {}

function parseJson<T extends z.ZodType>(stdout: string, schema: T, what: string): z.output<T> {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (cause) {
    throw new IpOutputError(`${what}: not JSON`, { cause });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success)
    throw new IpOutputError(`${what}: ${parsed.error.issues[0]?.message ?? 'unexpected shape'}`, {
      cause: parsed.error,
    });
  return parsed.data;
}

/** Parse `ip -j [-d] link show`. */
export function parseIpLinks(stdout: string): Link[] {
  return parseJson(stdout, z.array(IpLink), 'ip -j link').map((l) => ({
    name: l.ifname,
    index: l.ifindex,
    up: l.flags.includes('UP'),
    kind: l.linkinfo?.info_kind,
    master: l.master,
    portKind: l.linkinfo?.info_slave_kind,
    mac: l.address,
    vfs: (l.vfinfo_list ?? []).map((v) => ({
      vf: v.vf,
      mac: v.address ?? v.mac,
      // iproute2 leaves out a VLAN of 0 (no tag).
      vlan: v.vlan_list?.[0]?.vlan ?? v.vlan ?? 0,
      spoofchk: v.spoofchk,
      trust: v.trust,
    })),
  }));
}

const IpAddrLink = z.looseObject({
  ifname: z.string(),
  addr_info: z.array(z.looseObject({ family: z.string(), local: z.string(), prefixlen: z.number().int() })).default([]),
});

export interface InterfaceAddress {
  name: string;
  family: 'inet' | 'inet6';
  /** CIDR notation, e.g. 10.77.0.11/16. */
  cidr: string;
}

/** Parse `ip -j addr show`: every address of every link. */
export function parseIpAddrs(stdout: string): InterfaceAddress[] {
  return parseJson(stdout, z.array(IpAddrLink), 'ip -j addr').flatMap((l) =>
    l.addr_info
      .filter((a) => a.family === 'inet' || a.family === 'inet6')
      .map((a) => ({ name: l.ifname, family: a.family as 'inet' | 'inet6', cidr: `${a.local}/${a.prefixlen}` })),
  );
}

/** The IPv4 addresses (CIDR) on one link. */
export function inet4Of(addrs: readonly InterfaceAddress[], name: string): string[] {
  return addrs.filter((a) => a.name === name && a.family === 'inet').map((a) => a.cidr);
}
