import {
  ifaceStanzas,
  optionValue,
  parseInterfaces,
  printInterfaces,
  renderStanza,
  replaceStanzas,
  type IfaceStanza,
  type InterfacesBlock,
} from './interfaces-file.js';
import type { IfupdownFlavour } from './ifupdown.js';
import { ifName } from './names.js';
import { RefitError } from '../../../schemas/errors.js';
import type { LacpMode, LacpTime, OvsBondMode } from '../../../schemas/steps.js';

/** The file's bond cannot become an OVS bond as asked: retrying cannot help. */
export class BondPlanError extends RefitError {}

/** A Linux bond as /etc/network/interfaces defines it (ifenslave's and ifupdown2's `bond-*` options). */
export interface LinuxBond {
  name: string;
  members: string[];
  /** As the kernel names it: `802.3ad`, `active-backup`, `balance-xor`, ... */
  mode: string;
  lacpRate: LacpTime | undefined;
  hashPolicy: string | undefined;
}

export interface OvsBondSettings {
  mode: OvsBondMode;
  lacp: LacpMode;
  lacpTime: LacpTime;
}
/** Settings a plan asks for; what it leaves out comes from the bond there. */
export type AskedBond = { [K in keyof OvsBondSettings]?: OvsBondSettings[K] | undefined };

const BOND_MODES = ['balance-rr', 'active-backup', 'balance-xor', 'broadcast', '802.3ad', 'balance-tlb', 'balance-alb'];
const HASH_POLICIES = ['layer2', 'layer3+4', 'layer2+3', 'encap2+3', 'encap3+4', 'vlan+srcmac'];
/** The kernel takes a mode, rate or policy by name or by number (`bond-mode 4`, `bond-lacp-rate 1`). */
const byNumber = (value: string | undefined, names: readonly string[]) =>
  value !== undefined && /^\d+$/.test(value) ? names[Number(value)] : value;

const isBondOption = (key: string) => /^bond[-_]/.test(key);

/** The Linux bond `name` in the file: its stanza's `bond-slaves`, or the members that name it in `bond-master`. */
export function linuxBondIn(blocks: readonly InterfacesBlock[], name: string): LinuxBond | undefined {
  const stanza = ifaceStanzas(blocks, name).find(
    (s) => optionValue(s, 'bond_slaves') !== undefined || optionValue(s, 'bond_mode') !== undefined,
  );
  const byMaster = blocks
    .filter((b): b is IfaceStanza => b.type === 'iface' && optionValue(b, 'bond_master') === name)
    .map((s) => s.name);
  if (stanza === undefined && byMaster.length === 0) return undefined;
  const slaves = (stanza === undefined ? '' : (optionValue(stanza, 'bond_slaves') ?? ''))
    .split(/\s+/)
    .filter((s) => s !== '' && s !== 'none');
  const members = [...new Set([...slaves, ...byMaster])].map((m) => ifName(m, 'bond member'));
  const option = (key: string) => (stanza === undefined ? undefined : optionValue(stanza, key));
  const rate = byNumber(option('bond_lacp_rate'), ['slow', 'fast']);
  return {
    name,
    members,
    mode: byNumber(option('bond_mode'), BOND_MODES) ?? 'balance-rr',
    lacpRate: rate === 'fast' || rate === 'slow' ? rate : undefined,
    hashPolicy: byNumber(option('bond_xmit_hash_policy'), HASH_POLICIES),
  };
}

/**
 * The OVS bond a Linux bond becomes, unless the plan says otherwise: 802.3ad hashing by layer 3+4
 * becomes `balance-tcp` with LACP, 802.3ad by layer 2 (or 2+3) `balance-slb` with LACP, active-backup
 * stays active-backup without LACP. The other kernel modes have no OVS counterpart; the plan names one.
 */
export function ovsBondSettingsFor(linux: LinuxBond | undefined, asked: AskedBond): OvsBondSettings {
  const lacpLinux = linux?.mode === '802.3ad';
  let mode = asked.mode;
  if (mode === undefined) {
    if (linux === undefined) throw new BondPlanError('no bond mode given and no Linux bond to take it from');
    if (lacpLinux) mode = /3\+4$/.test(linux.hashPolicy ?? '') ? 'balance-tcp' : 'balance-slb';
    else if (linux.mode === 'active-backup') mode = 'active-backup';
    else
      throw new BondPlanError(
        `${linux.name} is a Linux bond in mode ${linux.mode}, which Open vSwitch has no counterpart for; name the mode (active-backup, balance-slb or balance-tcp)`,
      );
  }
  const lacp = asked.lacp ?? (mode === 'balance-tcp' || (mode === 'balance-slb' && lacpLinux) ? 'active' : 'off');
  if (mode === 'balance-tcp' && lacp === 'off')
    throw new BondPlanError('balance-tcp needs LACP (lacp active or passive): Open vSwitch refuses it without');
  return { mode, lacp, lacpTime: asked.lacpTime ?? linux?.lacpRate ?? 'slow' };
}

/** `ovs_options` of an OVSBond: the bond's settings, then the port's own (VLAN tag and mode). */
export function ovsBondOptions(s: OvsBondSettings, portOptions: readonly string[] = []): string {
  return [
    `bond_mode=${s.mode}`,
    `lacp=${s.lacp}`,
    ...(s.lacp !== 'off' ? [`other_config:lacp-time=${s.lacpTime}`] : []),
    ...portOptions,
  ].join(' ');
}

const BOND_OPTION = /^(bond_mode|lacp|other_config:lacp-time)=/;

/** An OVSBond's `ovs_options` split into its bond settings and the rest (the port's VLAN options). */
export function parseOvsBondOptions(options: string): { settings: Partial<OvsBondSettings>; port: string[] } {
  const words = options.split(/\s+/).filter((w) => w !== '');
  const value = (key: string) => words.find((w) => w.startsWith(`${key}=`))?.slice(key.length + 1);
  const settings: Partial<OvsBondSettings> = {};
  const mode = value('bond_mode');
  if (mode === 'active-backup' || mode === 'balance-slb' || mode === 'balance-tcp') settings.mode = mode;
  const lacp = value('lacp');
  if (lacp === 'active' || lacp === 'passive' || lacp === 'off') settings.lacp = lacp;
  const time = value('other_config:lacp-time');
  if (time === 'fast' || time === 'slow') settings.lacpTime = time;
  return { settings, port: words.filter((w) => !BOND_OPTION.test(w)) };
}

/**
 * The stanzas of an OVSBond on `bridge` over `members`, as Proxmox VE writes them: each member a
 * manual interface (marked `auto` for ifupdown2, which brings up only that; classic ifupdown's OVS hook
 * brings the members up itself), then the bond, `auto` for ifupdown2 or announced with
 * `allow-<bridge>` for classic ifupdown. `memberOptions` keeps what the file said about a member
 * (an MTU, a comment-free `post-up`), without its `bond-*` options.
 */
export function renderOvsBond(opts: {
  bridge: string;
  bond: string;
  members: readonly string[];
  options: string;
  ifupdown: IfupdownFlavour;
  memberOptions?: (member: string) => [string, string][];
}): string {
  const v2 = opts.ifupdown === 2;
  return [
    ...opts.members.map((m) =>
      renderStanza(v2 ? [`auto ${m}`] : [], m, 'inet', 'manual', opts.memberOptions?.(m) ?? []),
    ),
    renderStanza([v2 ? `auto ${opts.bond}` : `allow-${opts.bridge} ${opts.bond}`], opts.bond, 'inet', 'manual', [
      ['ovs_bonds', opts.members.join(' ')],
      ['ovs_type', 'OVSBond'],
      ['ovs_bridge', opts.bridge],
      ['ovs_options', opts.options],
    ]),
  ].join('\n');
}

/** A member's own options from the file, without what made it a Linux bond's slave or an OVS port. */
export const memberOptionsIn =
  (blocks: readonly InterfacesBlock[]) =>
  (member: string): [string, string][] =>
    ifaceStanzas(blocks, member).flatMap((s) =>
      s.options
        .filter((o) => !isBondOption(o.key) && !/^ovs[-_]/.test(o.key))
        .map((o): [string, string] => [o.key, o.value]),
    );

/**
 * The Linux bond an OVSBond goes back to (ovs-convert's revert without a backup): 802.3ad for the
 * LACP modes (hash layer3+4 for balance-tcp, layer2+3 for balance-slb), active-backup otherwise.
 */
export function renderLinuxBond(bond: string, members: readonly string[], s: Partial<OvsBondSettings>): string {
  const lacp = s.lacp !== undefined && s.lacp !== 'off';
  return [
    ...members.map((m) => renderStanza([], m, 'inet', 'manual', [])),
    renderStanza([`auto ${bond}`], bond, 'inet', 'manual', [
      ['bond-slaves', members.join(' ')],
      ['bond-miimon', '100'],
      ['bond-mode', lacp ? '802.3ad' : 'active-backup'],
      ...(lacp
        ? ([
            ['bond-xmit-hash-policy', s.mode === 'balance-tcp' ? 'layer3+4' : 'layer2+3'],
            ['bond-lacp-rate', s.lacpTime ?? 'slow'],
          ] as [string, string][])
        : []),
    ]),
  ].join('\n');
}

export interface OvsBondPlanParams extends AskedBond {
  bridge: string;
  bond: string;
  ifupdown: IfupdownFlavour;
}

export interface OvsBondPlan {
  changed: boolean;
  text: string;
  members: string[];
  settings: OvsBondSettings;
  /** What the bond was in the file: a Linux bond under the OVS bridge, or an OVSBond already. */
  from: 'linux-bond' | 'ovs-bond';
  summary: string;
}

/**
 * Turn the bond under an OVS bridge into an OVSBond: a Linux bond that is an OVSPort of the bridge
 * (the mix Proxmox VE's documentation says never to make) becomes an OVSBond of the same name over
 * the same members, with the port's VLAN options kept; an OVSBond already there gets the asked
 * settings. Everything else in the file stays byte for byte.
 */
export function planOvsBond(observed: string, params: OvsBondPlanParams): OvsBondPlan {
  const bridge = ifName(params.bridge, 'bridge');
  const bond = ifName(params.bond, 'bond');
  const blocks = parseInterfaces(observed);
  if (!ifaceStanzas(blocks, bridge).some((s) => optionValue(s, 'ovs_type') === 'OVSBridge'))
    throw new BondPlanError(
      `${bridge} is not an OVSBridge in the file: ovs-convert turns the Linux bridge and its bond into an OVS bridge on an OVSBond`,
    );
  const asked = { mode: params.mode, lacp: params.lacp, lacpTime: params.lacpTime };
  const defined = (o: AskedBond) =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<OvsBondSettings>;
  const port = ifaceStanzas(blocks, bond).find((s) => optionValue(s, 'ovs_bridge') === bridge);
  if (port !== undefined && optionValue(port, 'ovs_type') === 'OVSBond') {
    const members = (optionValue(port, 'ovs_bonds') ?? '').split(/\s+/).filter((m) => m !== '');
    const current = parseOvsBondOptions(optionValue(port, 'ovs_options') ?? '');
    const settings = ovsBondSettingsFor(undefined, { ...current.settings, ...defined(asked) });
    const options = ovsBondOptions(settings, current.port);
    if (options === optionValue(port, 'ovs_options'))
      return {
        changed: false,
        text: observed,
        members,
        settings,
        from: 'ovs-bond',
        summary: `${bond} is already an OVSBond (${options})`,
      };
    const raw = port.raw.replace(/^(\s*ovs[-_]options\s+).*$/m, `$1${options}`);
    const text = printInterfaces(blocks.map((b) => (b === port ? { ...port, raw } : b)));
    return {
      changed: true,
      text,
      members,
      settings,
      from: 'ovs-bond',
      summary: `${bond}: OVSBond options now ${options}`,
    };
  }
  const linux = linuxBondIn(blocks, bond);
  if (linux === undefined)
    throw new BondPlanError(`no bond "${bond}" in the file (a Linux bond with bond-slaves, or an OVSBond)`);
  if (port === undefined || optionValue(port, 'ovs_type') !== 'OVSPort')
    throw new BondPlanError(`${bond} is a Linux bond but not a port of ${bridge}`);
  if (linux.members.length < 2)
    throw new BondPlanError(`${bond} has ${linux.members.length} member(s); an OVS bond needs two or more`);
  const settings = ovsBondSettingsFor(linux, defined(asked));
  const portOptions = (optionValue(port, 'ovs_options') ?? '').split(/\s+/).filter((w) => w !== '');
  const options = ovsBondOptions(settings, portOptions);
  const group = renderOvsBond({
    bridge,
    bond,
    members: linux.members,
    options,
    ifupdown: params.ifupdown,
    memberOptions: memberOptionsIn(blocks),
  });
  const text = printInterfaces(replaceStanzas(blocks, new Set([bond, ...linux.members]), bond, group));
  return {
    changed: true,
    text,
    members: linux.members,
    settings,
    from: 'linux-bond',
    summary: `${bond}: Linux bond (${linux.mode}${linux.hashPolicy ? `, ${linux.hashPolicy}` : ''}) → OVSBond over ${linux.members.join(' ')} (${options})`,
  };
}
