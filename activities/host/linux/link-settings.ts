import { z } from 'zod';
import { IpOutputError } from './ip.js';
import { ifName, type IfName } from './names.js';

/** What `ip -j -d link show dev <dev>` says of a link's MTU (and its bounds) and transmit queue length. */
export interface LinkSettings {
  mtu: number;
  txqueuelen: number;
  minMtu: number | undefined;
  maxMtu: number | undefined;
}

const Link = z.looseObject({
  ifname: z.string(),
  mtu: z.number().int(),
  txqlen: z.number().int().default(0),
  min_mtu: z.number().int().optional(),
  max_mtu: z.number().int().optional(),
});

export const linkSettingsArgv = (dev: IfName) => ['ip', '-j', '-d', 'link', 'show', 'dev', ifName(dev)];

/** `ip link set dev <dev> mtu N txqueuelen N` (either may be left out). */
export function setLinkSettingsArgv(dev: IfName, set: { mtu?: number | undefined; txqueuelen?: number | undefined }) {
  const n = (v: number) => String(z.number().int().min(0).max(1_000_000).parse(v));
  return [
    'ip',
    'link',
    'set',
    'dev',
    ifName(dev),
    ...(set.mtu !== undefined ? ['mtu', n(set.mtu)] : []),
    ...(set.txqueuelen !== undefined ? ['txqueuelen', n(set.txqueuelen)] : []),
  ];
}

export function parseLinkSettings(stdout: string): LinkSettings {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (cause) {
    throw new IpOutputError('ip -j -d link: not JSON', { cause });
  }
  const parsed = z.array(Link).length(1).safeParse(json);
  if (!parsed.success) throw new IpOutputError('ip -j -d link show dev: expected one link', { cause: parsed.error });
  const l = parsed.data[0] as z.output<typeof Link>;
  return { mtu: l.mtu, txqueuelen: l.txqlen, minMtu: l.min_mtu, maxMtu: l.max_mtu };
}
