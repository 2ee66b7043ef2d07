import { z } from 'zod';
import { ifName, type IfName } from './names.js';
import { RefitError } from '../../../schemas/errors.js';

const OVS_VSCTL = ['ovs-vsctl', '--timeout=10'] as const;

export const ovsShowArgv = (): string[] => [...OVS_VSCTL, 'show'];

export const ovsListBridgesArgv = (): string[] => [...OVS_VSCTL, 'list-br'];

/** Ports with their VLAN settings, as JSON. */
export const ovsListPortsJsonArgv = (): string[] => [
  ...OVS_VSCTL,
  '--format=json',
  '--columns=name,tag,vlan_mode,interfaces',
  'list',
  'Port',
];

/** Add (or keep) a port on a bridge, as an access port of `tag` when given. */
export function ovsAddPortArgv(bridge: IfName, port: IfName, tag?: number): string[] {
  const tagArg = tag === undefined ? [] : [`tag=${z.number().int().min(0).max(4095).parse(tag)}`];
  return [...OVS_VSCTL, '--may-exist', 'add-port', ifName(bridge), ifName(port), ...tagArg];
}

export function ovsDelPortArgv(bridge: IfName, port: IfName): string[] {
  return [...OVS_VSCTL, '--if-exists', 'del-port', ifName(bridge), ifName(port)];
}

export function ovsDelBridgeArgv(bridge: IfName): string[] {
  return [...OVS_VSCTL, '--if-exists', 'del-br', ifName(bridge)];
}

export interface OvsInterface {
  name: string;
  type: string;
  options: Record<string, string>;
  error: string | undefined;
}
export interface OvsPort {
  name: string;
  tag: number | undefined;
  interfaces: OvsInterface[];
}
export interface OvsBridge {
  name: string;
  datapathType: string | undefined;
  ports: OvsPort[];
}
export interface OvsShow {
  uuid: string;
  bridges: OvsBridge[];
  version: string | undefined;
}

export class OvsOutputError extends RefitError {}

const unquote = (v: string) => (v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v);

function parseMap(text: string): Record<string, string> {
  const inner = text.trim().replace(/^\{/, '').replace(/\}$/, '');
  const out: Record<string, string> = {};
  for (const pair of inner.split(/,\s*/)) {
    const eq = pair.indexOf('=');
    if (eq > 0) out[pair.slice(0, eq).trim()] = unquote(pair.slice(eq + 1).trim());
  }
  return out;
}

/** Parse `ovs-vsctl show`: bridges, their ports (with access tag) and each port's interfaces (with type). */
export function parseOvsShow(stdout: string): OvsShow {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  const uuid = lines[0]?.trim() ?? '';
  if (!/^[0-9a-f-]{36}$/.test(uuid)) throw new OvsOutputError(`ovs-vsctl show: no database uuid on the first line`);
  const show: OvsShow = { uuid, bridges: [], version: undefined };
  let bridge: OvsBridge | undefined;
  let port: OvsPort | undefined;
  let iface: OvsInterface | undefined;
  for (const line of lines.slice(1)) {
    const depth = (line.length - line.trimStart().length) / 4;
    const text = line.trim();
    const colon = text.indexOf(': ');
    const [key, value] = colon > 0 ? [text.slice(0, colon), text.slice(colon + 2)] : [text, ''];
    if (depth === 1 && key.startsWith('Bridge ')) {
      bridge = { name: unquote(key.slice(7)), datapathType: undefined, ports: [] };
      show.bridges.push(bridge);
      port = iface = undefined;
    } else if (depth === 1 && key === 'ovs_version') {
      show.version = unquote(value);
    } else if (depth === 2 && key.startsWith('Port ') && bridge) {
      port = { name: unquote(key.slice(5)), tag: undefined, interfaces: [] };
      bridge.ports.push(port);
      iface = undefined;
    } else if (depth === 2 && key === 'datapath_type' && bridge) {
      bridge.datapathType = value;
    } else if (depth === 3 && key.startsWith('Interface ') && port) {
      iface = { name: unquote(key.slice(10)), type: '', options: {}, error: undefined };
      port.interfaces.push(iface);
    } else if (depth === 3 && key === 'tag' && port) {
      port.tag = Number(value);
    } else if (depth === 4 && iface) {
      if (key === 'type') iface.type = value;
      else if (key === 'options') iface.options = parseMap(value);
      else if (key === 'error') iface.error = unquote(value);
    }
  }
  return show;
}

/** An OVSDB JSON cell: atoms as they are, `["set", [...]]` as arrays, `["map", [...]]` as records, uuids as strings. */
export type OvsdbValue = string | number | boolean | OvsdbValue[] | { [k: string]: OvsdbValue };

function decodeCell(cell: unknown): OvsdbValue {
  if (Array.isArray(cell) && cell.length === 2 && typeof cell[0] === 'string') {
    const [tag, body] = cell as [string, unknown];
    if (tag === 'uuid' || tag === 'named-uuid') return String(body);
    if (tag === 'set' && Array.isArray(body)) return body.map(decodeCell);
    if (tag === 'map' && Array.isArray(body)) {
      return Object.fromEntries(
        body.map((pair) => [String((pair as unknown[])[0]), decodeCell((pair as unknown[])[1])]),
      );
    }
  }
  if (typeof cell === 'string' || typeof cell === 'number' || typeof cell === 'boolean') return cell;
  throw new OvsOutputError(`unexpected OVSDB cell ${JSON.stringify(cell)}`);
}

const OvsdbTable = z.object({ headings: z.array(z.string()), data: z.array(z.array(z.unknown())) });

/** Parse `ovs-vsctl --format=json list <table>` into one record per row. An empty set becomes []. */
export function parseOvsdbTable(stdout: string): Record<string, OvsdbValue>[] {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (cause) {
    throw new OvsOutputError('ovs-vsctl --format=json: not JSON', { cause });
  }
  const table = OvsdbTable.safeParse(json);
  if (!table.success) throw new OvsOutputError('ovs-vsctl --format=json: unexpected shape', { cause: table.error });
  const { headings, data } = table.data;
  return data.map((row) => Object.fromEntries(headings.map((h, i) => [h, decodeCell(row[i])])));
}

/** Port rows from ovsListPortsJsonArgv(): tag and vlan_mode undefined where unset. */
export function parseOvsPorts(
  stdout: string,
): { name: string; tag: number | undefined; vlanMode: string | undefined }[] {
  return parseOvsdbTable(stdout).map((row) => ({
    name: typeof row.name === 'string' ? row.name : '',
    tag: typeof row.tag === 'number' ? row.tag : undefined,
    vlanMode: typeof row.vlan_mode === 'string' ? row.vlan_mode : undefined,
  }));
}
