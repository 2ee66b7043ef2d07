import type { NicSettings } from '../../../schemas/steps.js';
import {
  CHANNEL_KINDS,
  OFFLOADS,
  type ChannelKind,
  type Channels,
  type Offload,
  type OffloadState,
  type RingSizes,
} from './ethtool.js';
import type { IfupdownFlavour } from './ifupdown.js';
import {
  ifaceStanzas,
  parseInterfaces,
  printInterfaces,
  withoutClassNames,
  type IfaceStanza,
} from './interfaces-file.js';

/** The settings of one interface refit tunes; a setting left out is not touched. */
export type NicValues = Omit<NicSettings, 'name'>;

/** One interface as ethtool and ip show it. A control the device does not have at all is undefined. */
export interface NicObserved {
  name: string;
  offloads: Partial<Record<Offload, OffloadState>>;
  rings: RingSizes | undefined;
  channels: Channels | undefined;
  mtu: number;
  txqueuelen: number;
  minMtu?: number | undefined;
  maxMtu?: number | undefined;
}

const entries = <K extends string, V>(o: Partial<Record<K, V | undefined>> | undefined) =>
  (Object.entries(o ?? {}) as [K, V | undefined][]).filter((e): e is [K, V] => e[1] !== undefined);

/**
 * The wanted settings this interface cannot take, each named: an offload its driver fixes, rings or
 * channels it has no control of (or not of that kind), values beyond its maximums.
 */
export function unsupportedSettings(o: NicObserved, want: NicValues): string[] {
  const out: string[] = [];
  for (const [k, on] of entries(want.offloads)) {
    const have = o.offloads[k];
    if (have === undefined) out.push(`${o.name} offload ${k} (ethtool -k does not list it)`);
    else if (have.fixed === true && have.on !== on)
      out.push(`${o.name} offload ${k} ${on ? 'on' : 'off'} (fixed ${have.on ? 'on' : 'off'} by its driver)`);
  }
  if (want.rings !== undefined && Object.keys(want.rings).length > 0) {
    if (o.rings === undefined) out.push(`${o.name} rings (ethtool -g: Operation not supported)`);
    else
      for (const [k, n] of entries(want.rings)) {
        const max = o.rings.max[k];
        if (max === undefined) out.push(`${o.name} rings ${k} (ethtool -g shows no ${k} ring)`);
        else if (n > max) out.push(`${o.name} rings ${k} ${n} (its maximum is ${max})`);
      }
  }
  if (want.channels !== undefined && Object.keys(want.channels).length > 0) {
    if (o.channels === undefined) out.push(`${o.name} channels (ethtool -l: Operation not supported)`);
    else
      for (const [k, n] of entries(want.channels)) {
        const max = o.channels.max[k];
        if (max === undefined) out.push(`${o.name} channels ${k} (ethtool -l shows ${k}: n/a)`);
        else if (n > max) out.push(`${o.name} channels ${k} ${n} (its maximum is ${max})`);
      }
  }
  if (want.mtu !== undefined && o.maxMtu !== undefined && want.mtu > o.maxMtu)
    out.push(`${o.name} mtu ${want.mtu} (its maximum is ${o.maxMtu})`);
  if (want.mtu !== undefined && o.minMtu !== undefined && want.mtu < o.minMtu)
    out.push(`${o.name} mtu ${want.mtu} (its minimum is ${o.minMtu})`);
  return out;
}

/** The interface's current values of the settings `want` names: what a revert goes back to. */
export function currentValues(o: NicObserved, want: NicValues): NicValues {
  const out: NicValues = {};
  const offloads = entries(want.offloads).flatMap(([k]) =>
    o.offloads[k] === undefined ? [] : [[k, o.offloads[k].on] as const],
  );
  if (offloads.length > 0) out.offloads = Object.fromEntries(offloads);
  const rings = entries(want.rings).flatMap(([k]) =>
    o.rings?.current[k] === undefined ? [] : [[k, o.rings.current[k]] as const],
  );
  if (rings.length > 0) out.rings = Object.fromEntries(rings);
  const channels = entries(want.channels).flatMap(([k]) =>
    o.channels?.current[k] === undefined ? [] : [[k, o.channels.current[k]] as const],
  );
  if (channels.length > 0) out.channels = Object.fromEntries(channels);
  if (want.txqueuelen !== undefined) out.txqueuelen = o.txqueuelen;
  if (want.mtu !== undefined) out.mtu = o.mtu;
  return out;
}

/** The settings of `want` that `have` does not match yet (each category only with its differing keys). */
export function differences(have: NicValues, want: NicValues): NicValues {
  const out: NicValues = {};
  const diff = <K extends string, V>(
    w: Partial<Record<K, V | undefined>> | undefined,
    h: Partial<Record<K, V | undefined>> | undefined,
  ) => {
    const d = entries(w).filter(([k, v]) => h?.[k] !== v);
    return d.length > 0 ? (Object.fromEntries(d) as Partial<Record<K, V>>) : undefined;
  };
  const offloads = diff(want.offloads, have.offloads);
  const rings = diff(want.rings, have.rings);
  const channels = diff(want.channels, have.channels);
  if (offloads !== undefined) out.offloads = offloads;
  if (rings !== undefined) out.rings = rings;
  if (channels !== undefined) out.channels = channels;
  if (want.txqueuelen !== undefined && want.txqueuelen !== have.txqueuelen) out.txqueuelen = want.txqueuelen;
  if (want.mtu !== undefined && want.mtu !== have.mtu) out.mtu = want.mtu;
  return out;
}

/** Each difference as `<name> <setting>: <want> wanted, <have> now`. */
export function describeDifferences(name: string, have: NicValues, want: NicValues): string[] {
  const d = differences(have, want);
  const show = (v: boolean | number | undefined) =>
    v === true ? 'on' : v === false ? 'off' : v === undefined ? 'unknown' : String(v);
  return [
    ...entries(d.offloads).map(([k, v]) => `${name} ${k}: ${show(v)} wanted, ${show(have.offloads?.[k])} now`),
    ...entries(d.rings).map(([k, v]) => `${name} rings ${k}: ${v} wanted, ${show(have.rings?.[k])} now`),
    ...entries(d.channels).map(([k, v]) => `${name} channels ${k}: ${v} wanted, ${show(have.channels?.[k])} now`),
    ...(d.txqueuelen !== undefined ? [`${name} txqueuelen: ${d.txqueuelen} wanted, ${show(have.txqueuelen)} now`] : []),
    ...(d.mtu !== undefined ? [`${name} mtu: ${d.mtu} wanted, ${show(have.mtu)} now`] : []),
  ];
}

/** ifupdown2's ethtool addon attribute for each offload (addons/ethtool.py of ifupdown2 3.0.0). */
export const IFUPDOWN2_OFFLOAD_ATTR: Readonly<Record<Offload, string>> = {
  tso: 'tso-offload',
  gso: 'gso-offload',
  gro: 'gro-offload',
  lro: 'lro-offload',
  rx: 'rx-offload',
  tx: 'tx-offload',
};

const onOff = (v: boolean) => (v ? 'on' : 'off');

/** `post-up <argv>` lines refit writes for `name`, recognised by their command. */
const POST_UP = {
  offloads: (name: string) => ['ethtool', '-K', name],
  rings: (name: string) => ['ethtool', '-G', name],
  channels: (name: string) => ['ethtool', '-L', name],
  txqueuelen: (name: string) => ['ip', 'link', 'set', 'dev', name, 'txqueuelen'],
} as const;

const startsWith = (value: string, head: readonly string[]) => {
  const words = value.trim().split(/\s+/);
  return head.every((w, i) => words[i] === w);
};

/** `k v k v` pairs after the head of an existing post-up line, so that a setting the plan leaves out stays. */
function pairs(value: string, head: readonly string[]): Map<string, string> {
  const words = value.trim().split(/\s+/).slice(head.length);
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < words.length; i += 2) out.set(words[i] as string, words[i + 1] as string);
  return out;
}

/**
 * The stanza of `name` with `want` persisted the way the host's ifupdown reads it: `mtu` in both;
 * offloads as ifupdown2's ethtool attributes (`gro-offload off`) or, under classic ifupdown, a
 * `post-up ethtool -K` line; rings, channels and txqueuelen (no attribute in either) as `post-up`
 * lines. Options of the stanza refit does not set are kept; a post-up line for the same command is
 * merged (its other settings kept).
 */
export function persistedStanza(stanza: IfaceStanza, flavour: IfupdownFlavour, want: NicValues): string {
  const name = stanza.name;
  const opts = stanza.options.map((o) => ({ ...o }));
  const setOption = (key: string, value: string) => {
    const at = opts.findIndex((o) => o.key === key || o.key === key.replace(/-/g, '_'));
    if (at >= 0) opts[at] = { key, value };
    else opts.push({ key, value });
  };
  const setPostUp = (head: readonly string[], values: [string, string][]) => {
    const at = opts.findIndex((o) => o.key === 'post-up' && startsWith(o.value, head));
    const merged = at >= 0 ? pairs((opts[at] as { value: string }).value, head) : new Map<string, string>();
    for (const [k, v] of values) merged.set(k, v);
    const value = [...head, ...[...merged].flat()].join(' ');
    if (at >= 0) opts[at] = { key: 'post-up', value };
    else opts.push({ key: 'post-up', value });
  };
  if (want.mtu !== undefined) setOption('mtu', String(want.mtu));
  const offloads = entries(want.offloads);
  if (flavour === 2) for (const [k, v] of offloads) setOption(IFUPDOWN2_OFFLOAD_ATTR[k], onOff(v));
  else if (offloads.length > 0)
    setPostUp(
      POST_UP.offloads(name),
      OFFLOADS.flatMap((k): [string, string][] => {
        const v = want.offloads?.[k];
        return v === undefined ? [] : [[k, onOff(v)]];
      }),
    );
  const rings = (['rx', 'tx'] as const).flatMap((k): [string, string][] =>
    want.rings?.[k] === undefined ? [] : [[k, String(want.rings[k])]],
  );
  if (rings.length > 0) setPostUp(POST_UP.rings(name), rings);
  const channels = CHANNEL_KINDS.flatMap((k: ChannelKind): [string, string][] =>
    want.channels?.[k] === undefined ? [] : [[k, String(want.channels[k])]],
  );
  if (channels.length > 0) setPostUp(POST_UP.channels(name), channels);
  if (want.txqueuelen !== undefined) {
    const head = POST_UP.txqueuelen(name);
    const at = opts.findIndex((o) => o.key === 'post-up' && startsWith(o.value, head));
    const value = [...head, String(want.txqueuelen)].join(' ');
    if (at >= 0) opts[at] = { key: 'post-up', value };
    else opts.push({ key: 'post-up', value });
  }
  const head = stanza.raw.split('\n')[0] as string;
  return [head, ...opts.map((o) => `\t${o.key} ${o.value}`)].join('\n') + '\n';
}

/** The interfaces file with the stanza of `name` replaced by `stanzaText`; undefined when it has no such stanza. */
export function withStanza(text: string, name: string, stanzaText: (s: IfaceStanza) => string): string | undefined {
  const blocks = parseInterfaces(text);
  const stanza = ifaceStanzas(blocks, name)[0];
  if (stanza === undefined) return undefined;
  return printInterfaces(blocks.map((b) => (b === stanza ? { ...stanza, raw: stanzaText(stanza) } : b)));
}

/** The raw text of the first stanza of `name`, as a revert puts it back. */
export function stanzaText(text: string, name: string): string | undefined {
  return ifaceStanzas(parseInterfaces(text), name)[0]?.raw;
}

/**
 * Classic ifupdown runs a stanza's `mtu` and `post-up` lines only for an interface it brings up itself
 * (a bridge port without `auto` is only enslaved); ifupdown2 brings up a bridge's ports with their
 * stanzas. For classic ifupdown the interface gets an `auto` line before its stanza when no `auto` or
 * `allow-*` line names it. Returns the text unchanged when one does.
 */
export function withAutoLine(text: string, name: string): string {
  const blocks = parseInterfaces(text);
  if (blocks.some((b) => b.type === 'class' && b.names.includes(name))) return text;
  const stanza = ifaceStanzas(blocks, name)[0];
  if (stanza === undefined) return text;
  const at = blocks.indexOf(stanza);
  return printInterfaces([
    ...blocks.slice(0, at),
    { type: 'class', cls: 'auto', names: [name], raw: `auto ${name}\n` },
    ...blocks.slice(at),
  ]);
}

/** The text without `name` on its `auto` line (what {@link withAutoLine} added). */
export function withoutAutoLine(text: string, name: string): string {
  const blocks = parseInterfaces(text);
  const autos = blocks.filter((b) => b.type === 'class' && b.cls === 'auto' && b.names.includes(name));
  if (autos.length === 0) return text;
  return printInterfaces(withoutClassNames(blocks, new Set([name])));
}
