import { z } from 'zod';
import { RefitError } from '../../../schemas/errors.js';
import { ifName, type IfName } from './names.js';

/**
 * ethtool 6.1 (Debian 12): `--json` works for `-k` only; `-g` and `-l` refuse it ("bad command line
 * argument(s)"), so their text is parsed. A device without ring or channel controls answers
 * "netlink error: Operation not supported".
 */
export const OFFLOADS = ['tso', 'gso', 'gro', 'lro', 'rx', 'tx'] as const;
export type Offload = (typeof OFFLOADS)[number];

/** The feature each `ethtool -K` short name sets, as `ethtool -k` names it. */
export const OFFLOAD_FEATURE: Readonly<Record<Offload, string>> = {
  tso: 'tcp-segmentation-offload',
  gso: 'generic-segmentation-offload',
  gro: 'generic-receive-offload',
  lro: 'large-receive-offload',
  rx: 'rx-checksumming',
  tx: 'tx-checksumming',
};

export interface OffloadState {
  on: boolean;
  /** The driver does not let it change ("[fixed]"); null for a group of features (tso, tx) that ethtool only sums up. */
  fixed: boolean | null;
}

export interface RingSizes {
  max: { rx?: number; tx?: number };
  current: { rx?: number; tx?: number };
}
export const CHANNEL_KINDS = ['combined', 'rx', 'tx'] as const;
export type ChannelKind = (typeof CHANNEL_KINDS)[number];
/** A kind the device does not have ("n/a") is absent. */
export interface Channels {
  max: Partial<Record<ChannelKind, number>>;
  current: Partial<Record<ChannelKind, number>>;
}

export class EthtoolOutputError extends RefitError {}

export const ethtoolFeaturesArgv = (dev: IfName) => ['ethtool', '--json', '-k', ifName(dev)];
export const ethtoolRingsArgv = (dev: IfName) => ['ethtool', '-g', ifName(dev)];
export const ethtoolChannelsArgv = (dev: IfName) => ['ethtool', '-l', ifName(dev)];

const count = (n: number) => String(z.number().int().min(0).max(1_000_000).parse(n));

/** `ethtool -K <dev> gro on tso off …` */
export function ethtoolSetOffloadsArgv(dev: IfName, set: Partial<Record<Offload, boolean | undefined>>): string[] {
  return [
    'ethtool',
    '-K',
    ifName(dev),
    ...OFFLOADS.flatMap((o) => {
      const v = set[o];
      return v === undefined ? [] : [o, v ? 'on' : 'off'];
    }),
  ];
}
/** `ethtool -G <dev> rx N tx N` */
export function ethtoolSetRingsArgv(dev: IfName, set: { rx?: number | undefined; tx?: number | undefined }): string[] {
  return [
    'ethtool',
    '-G',
    ifName(dev),
    ...(['rx', 'tx'] as const).flatMap((k) => {
      const v = set[k];
      return v === undefined ? [] : [k, count(v)];
    }),
  ];
}
/** `ethtool -L <dev> combined N rx N tx N` */
export function ethtoolSetChannelsArgv(dev: IfName, set: Partial<Record<ChannelKind, number | undefined>>): string[] {
  return [
    'ethtool',
    '-L',
    ifName(dev),
    ...CHANNEL_KINDS.flatMap((k) => {
      const v = set[k];
      return v === undefined ? [] : [k, count(v)];
    }),
  ];
}

const Feature = z.looseObject({ active: z.boolean(), fixed: z.boolean().nullable() });
const Features = z.array(z.looseObject({ ifname: z.string() }).catchall(z.unknown())).length(1);

/** `ethtool --json -k <dev>`: the six offloads refit tunes; one ethtool does not list is absent. */
export function parseEthtoolFeatures(stdout: string): Partial<Record<Offload, OffloadState>> {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (err) {
    throw new EthtoolOutputError('ethtool --json -k printed no JSON', { cause: err });
  }
  const dev = Features.parse(json)[0] as Record<string, unknown>;
  const out: Partial<Record<Offload, OffloadState>> = {};
  for (const o of OFFLOADS) {
    const f = Feature.safeParse(dev[OFFLOAD_FEATURE[o]]);
    if (f.success) out[o] = { on: f.data.active, fixed: f.data.fixed };
  }
  return out;
}

/** The `Key: value` lines under "Pre-set maximums:" and "Current hardware settings:"; "n/a" is absent. */
function sections(stdout: string): { max: Map<string, number>; current: Map<string, number> } {
  const max = new Map<string, number>();
  const current = new Map<string, number>();
  let into: Map<string, number> | undefined;
  for (const line of stdout.split('\n')) {
    if (/^Pre-set maximums:/.test(line)) into = max;
    else if (/^Current hardware settings:/.test(line)) into = current;
    else {
      const m = /^([A-Za-z][A-Za-z ]*?):\s+(\S+)\s*$/.exec(line);
      if (m !== null && into !== undefined && /^\d+$/.test(m[2] as string))
        into.set((m[1] as string).toLowerCase(), Number(m[2]));
    }
  }
  if (max.size === 0 && current.size === 0) throw new EthtoolOutputError('ethtool printed no settings to read');
  return { max, current };
}

const pick = <K extends string>(m: Map<string, number>, keys: readonly K[]): Partial<Record<K, number>> =>
  Object.fromEntries(keys.flatMap((k) => (m.has(k) ? [[k, m.get(k)]] : []))) as Partial<Record<K, number>>;

/** `ethtool -g <dev>` (ioctl and netlink layouts alike). */
export function parseEthtoolRings(stdout: string): RingSizes {
  const s = sections(stdout);
  return { max: pick(s.max, ['rx', 'tx']), current: pick(s.current, ['rx', 'tx']) };
}

/** `ethtool -l <dev>`. */
export function parseEthtoolChannels(stdout: string): Channels {
  const s = sections(stdout);
  return { max: pick(s.max, CHANNEL_KINDS), current: pick(s.current, CHANNEL_KINDS) };
}

/** ethtool's way of saying the device has no such control at all. */
export const notSupported = (stderr: string) => /Operation not supported/i.test(stderr);
