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
import {
  BondPlanError,
  linuxBondIn,
  memberOptionsIn,
  ovsBondOptions,
  ovsBondSettingsFor,
  parseOvsBondOptions,
  renderLinuxBond,
  renderOvsBond,
} from './bond-plan.js';

export interface OvsConversionParams {
  bridge: string;
  /** The physical uplink; by default the Linux bridge's single port. */
  uplink?: string | undefined;
  hostVlan: number;
  /** `netdev` for Open vSwitch's userspace datapath (the lab); the kernel datapath needs nothing. */
  datapathType?: 'netdev' | undefined;
  /** Which ifupdown brings the file up (default 1, classic): see {@link IfupdownFlavour}. */
  ifupdown?: IfupdownFlavour | undefined;
}

/** What a planner intends for /etc/network/interfaces. `changed` false: the file is already as wanted. */
export interface InterfacesPlan {
  changed: boolean;
  text: string;
  bridge: string;
  uplink: string;
  /** The OVS internal port carrying the host address (`vlan<tag>`), or the bridge itself for a Linux bridge. */
  hostPort: string;
  summary: string;
}

/** The file cannot be converted as asked (no such bridge, ambiguous uplink, ...): retrying cannot help. */
export class InterfacesPlanError extends RefitError {}

const isBridgeOption = (key: string) => /^bridge[-_]/.test(key);
const isOvsOption = (key: string) => /^ovs[-_]/.test(key);
const ovsType = (s: IfaceStanza) => optionValue(s, 'ovs_type');

/** Every option of a stanza that is about the address (address, gateway, dns-*, up/down hooks, ...). */
const addressOptions = (s: IfaceStanza): [string, string][] =>
  s.options.filter((o) => !isBridgeOption(o.key) && !isOvsOption(o.key)).map((o) => [o.key, o.value]);

/**
 * Plan the move of a Linux bridge to Open vSwitch, written the way Proxmox and the ifupdown in use
 * expect it: an OVSBridge, the uplink as an OVSPort mapping untagged traffic to the host VLAN
 * (`vlan_mode=native-untagged`), and an OVSIntPort `vlan<tag>` carrying the host address that the
 * Linux bridge had. Classic ifupdown (1) brings the ports up through Open vSwitch's hook, which needs
 * them announced with `allow-<bridge>`; ifupdown2 (2) ignores `allow-<bridge>` and brings up only
 * what is marked `auto`, as Proxmox VE 7+ writes it. Every other stanza, comment and blank line is kept byte for byte.
 */
export function planOvsConversion(observed: string, params: OvsConversionParams): InterfacesPlan {
  const bridge = ifName(params.bridge, 'bridge');
  const hostPort = ifName(`vlan${params.hostVlan}`, 'host port');
  const blocks = parseInterfaces(observed);
  const stanzas = ifaceStanzas(blocks, bridge);
  if (stanzas.some((s) => ovsType(s) === 'OVSBridge')) return alreadyOvs(observed, blocks, bridge);
  const inet = stanzas.find((s) => s.family === 'inet' && optionValue(s, 'bridge_ports') !== undefined);
  if (inet === undefined)
    throw new InterfacesPlanError(`no Linux bridge "${bridge}" (an inet stanza with bridge-ports) in the file`);
  const ports = (optionValue(inet, 'bridge_ports') ?? '').split(/\s+/).filter((p) => p !== '' && p !== 'none');
  const uplink = ifName(params.uplink ?? pickUplink(ports, bridge), 'uplink');
  if (!ports.includes(uplink))
    throw new InterfacesPlanError(`${uplink} is not a port of ${bridge} (its ports: ${ports.join(' ') || 'none'})`);
  if (ifaceStanzas(blocks, hostPort).length > 0)
    throw new InterfacesPlanError(`the file already defines ${hostPort}; choose another host VLAN`);

  const uplinkExtra = ifaceStanzas(blocks, uplink).flatMap((s) =>
    s.options.map((o): [string, string] => [o.key, o.value]),
  );
  const tag = String(params.hostVlan);
  const v2 = params.ifupdown === 2;
  const portClass = (name: string) => (v2 ? `auto ${name}` : `allow-${bridge} ${name}`);
  const bond = linuxBondIn(blocks, uplink);
  const uplinkGroup =
    bond === undefined
      ? renderStanza([portClass(uplink)], uplink, 'inet', 'manual', [
          ['ovs_bridge', bridge],
          ['ovs_type', 'OVSPort'],
          ['ovs_options', `tag=${tag} vlan_mode=native-untagged`],
          ...uplinkExtra.filter(([k]) => !isOvsOption(k)),
        ])
      : renderOvsBond({
          bridge,
          bond: uplink,
          members: bond.members,
          options: ovsBondOptions(bondSettings(bond), [`tag=${tag}`, 'vlan_mode=native-untagged']),
          ifupdown: params.ifupdown ?? 1,
          memberOptions: memberOptionsIn(blocks),
        });
  const group = [
    uplinkGroup,
    renderStanza(v2 ? [`auto ${bridge}`] : [`auto ${bridge}`, `allow-ovs ${bridge}`], bridge, 'inet', 'manual', [
      ['ovs_type', 'OVSBridge'],
      ['ovs_ports', `${uplink} ${hostPort}`],
      ...(params.datapathType !== undefined
        ? [['ovs_extra', `set bridge ${bridge} datapath_type=${params.datapathType}`] as [string, string]]
        : []),
    ]),
    ...stanzas.map((s, i) =>
      renderStanza(i === 0 ? [portClass(hostPort)] : [], hostPort, s.family, s.method, [
        ['ovs_type', 'OVSIntPort'],
        ['ovs_bridge', bridge],
        ['ovs_options', `tag=${tag}`],
        ...addressOptions(s),
      ]),
    ),
  ].join('\n');

  const replaced = new Set([bridge, uplink, ...(bond?.members ?? [])]);
  const text = printInterfaces(replaceStanzas(blocks, replaced, bridge, group));
  const uplinkAs =
    bond === undefined
      ? `uplink ${uplink} as OVSPort`
      : `Linux bond ${uplink} (${bond.mode}) as OVSBond over ${bond.members.join(' ')} (${ovsBondOptions(bondSettings(bond))})`;
  return {
    changed: true,
    text,
    bridge,
    uplink,
    hostPort,
    summary: `${bridge}: Linux bridge → OVSBridge, ${uplinkAs} (tag=${tag} vlan_mode=native-untagged), host address on OVSIntPort ${hostPort} (${v2 ? 'ports marked auto, for ifupdown2' : `ports announced with allow-${bridge}, for classic ifupdown`})`,
  };
}

/**
 * The reverse: an OVS bridge with one OVSPort uplink and an OVSIntPort carrying the host address goes
 * back to a Linux bridge `bridge-ports <uplink>` holding that address. A file without the OVS bridge is left as it is.
 */
export function planLinuxBridgeRestore(observed: string, params: { bridge: string }): InterfacesPlan {
  const bridge = ifName(params.bridge, 'bridge');
  const blocks = parseInterfaces(observed);
  const stanzas = ifaceStanzas(blocks, bridge);
  const ovsBridge = stanzas.find((s) => ovsType(s) === 'OVSBridge');
  if (ovsBridge === undefined) {
    const linux = stanzas.find((s) => optionValue(s, 'bridge_ports') !== undefined);
    if (linux === undefined) throw new InterfacesPlanError(`no bridge "${bridge}" in the file`);
    const ports = (optionValue(linux, 'bridge_ports') ?? '').split(/\s+/);
    return {
      changed: false,
      text: observed,
      bridge,
      uplink: ports[0] ?? '',
      hostPort: bridge,
      summary: `${bridge} is already a Linux bridge`,
    };
  }
  const members = blocks.filter((b): b is IfaceStanza => b.type === 'iface' && optionValue(b, 'ovs_bridge') === bridge);
  const uplinkStanzas = members.filter((s) => ovsType(s) === 'OVSPort' || ovsType(s) === 'OVSBond');
  const uplinks = [...new Set(uplinkStanzas.map((s) => s.name))];
  if (uplinks.length !== 1)
    throw new InterfacesPlanError(
      `${bridge} has ${uplinks.length} OVSPort or OVSBond uplinks; only one can go back to a Linux bridge`,
    );
  const uplink = uplinks[0] as string;
  const ovsBond = uplinkStanzas.find((s) => ovsType(s) === 'OVSBond');
  const bondMembers = (ovsBond === undefined ? '' : (optionValue(ovsBond, 'ovs_bonds') ?? ''))
    .split(/\s+/)
    .filter((m) => m !== '');
  const intPorts = members.filter((s) => ovsType(s) === 'OVSIntPort');
  const hostPortName =
    intPorts.find((s) => optionValue(s, 'address') !== undefined || s.method !== 'manual')?.name ?? intPorts[0]?.name;
  const hostStanzas = intPorts.filter((s) => s.name === hostPortName);
  const families =
    hostStanzas.length > 0
      ? hostStanzas
      : [{ family: 'inet', method: 'manual', options: [] } as unknown as IfaceStanza];
  const uplinkExtra = ifaceStanzas(blocks, uplink).flatMap((s) =>
    s.options.filter((o) => !isOvsOption(o.key)).map((o): [string, string] => [o.key, o.value]),
  );
  const group = [
    ovsBond === undefined
      ? renderStanza([], uplink, 'inet', 'manual', uplinkExtra)
      : renderLinuxBond(uplink, bondMembers, parseOvsBondOptions(optionValue(ovsBond, 'ovs_options') ?? '').settings),
    families
      .map((s, i) =>
        renderStanza(i === 0 ? [`auto ${bridge}`] : [], bridge, s.family, s.method, [
          ...addressOptions(s),
          ...(i === 0
            ? ([
                ['bridge-ports', uplink],
                ['bridge-stp', 'off'],
                ['bridge-fd', '0'],
              ] as [string, string][])
            : []),
        ]),
      )
      .join('\n'),
  ].join('\n');
  const names = new Set([bridge, uplink, ...bondMembers, ...intPorts.map((s) => s.name)]);
  return {
    changed: true,
    text: printInterfaces(replaceStanzas(blocks, names, bridge, group)),
    bridge,
    uplink,
    hostPort: bridge,
    summary: `${bridge}: OVSBridge → Linux bridge with bridge-ports ${uplink}${hostPortName ? `, host address back from ${hostPortName}` : ''}`,
  };
}

/** The OVS bond a Linux bond uplink becomes in ovs-convert: as ovs-bond would make it, from the bond's own settings. */
function bondSettings(bond: NonNullable<ReturnType<typeof linuxBondIn>>) {
  try {
    return ovsBondSettingsFor(bond, {});
  } catch (err) {
    if (err instanceof BondPlanError) throw new InterfacesPlanError(err.message, { cause: err });
    throw err;
  }
}

function pickUplink(ports: string[], bridge: string): string {
  if (ports.length === 1) return ports[0] as string;
  throw new InterfacesPlanError(
    ports.length === 0
      ? `${bridge} has no ports; name the uplink`
      : `${bridge} has ${ports.length} ports (${ports.join(' ')}); name the uplink`,
  );
}

function alreadyOvs(observed: string, blocks: InterfacesBlock[], bridge: string): InterfacesPlan {
  const members = blocks.filter((b): b is IfaceStanza => b.type === 'iface' && optionValue(b, 'ovs_bridge') === bridge);
  return {
    changed: false,
    text: observed,
    bridge,
    uplink: members.find((s) => ovsType(s) === 'OVSPort' || ovsType(s) === 'OVSBond')?.name ?? '',
    hostPort: members.find((s) => ovsType(s) === 'OVSIntPort')?.name ?? '',
    summary: `${bridge} is already an OVSBridge in the file`,
  };
}
