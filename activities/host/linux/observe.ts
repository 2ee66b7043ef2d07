import { createHash } from 'node:crypto';
import { CommandFailedError } from './command.js';
import type { HostEnv } from './host-env.js';
import { inet4Of, ipAddrsArgv, ipLinksArgv, parseIpAddrs, parseIpLinks } from './ip.js';
import type { IfName } from './names.js';
import { ovsShowArgv, parseOvsShow } from './ovs-vsctl.js';

export interface BridgeObservation {
  name: string;
  type: 'linux' | 'ovs' | 'none';
  ports: string[];
  /** IPv4 addresses on the bridge (Linux) or on its internal ports (OVS). */
  addresses: string[];
}

/** What the bridge is right now in the running system (not in the file). */
export async function observeBridge(env: HostEnv, bridge: IfName): Promise<BridgeObservation> {
  const links = parseIpLinks((await env.run(ipLinksArgv())).stdout);
  const addrs = parseIpAddrs((await env.run(ipAddrsArgv())).stdout);
  if (links.some((l) => l.name === bridge && l.kind === 'bridge')) {
    return {
      name: bridge,
      type: 'linux',
      ports: links.filter((l) => l.master === bridge).map((l) => l.name),
      addresses: inet4Of(addrs, bridge),
    };
  }
  let show;
  try {
    show = parseOvsShow((await env.run(ovsShowArgv(), { timeoutMs: 15_000 })).stdout);
  } catch (err) {
    if (err instanceof CommandFailedError) return { name: bridge, type: 'none', ports: [], addresses: [] };
    throw err;
  }
  const br = show.bridges.find((b) => b.name === bridge);
  if (br === undefined) return { name: bridge, type: 'none', ports: [], addresses: [] };
  const ports = br.ports.map((p) => p.name).filter((p) => p !== bridge);
  const internal = br.ports.filter((p) => p.interfaces.some((i) => i.type === 'internal')).map((p) => p.name);
  return { name: bridge, type: 'ovs', ports, addresses: internal.flatMap((p) => inet4Of(addrs, p)) };
}

export const sha256 = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 16);

/** A unified-diff-like list of the lines that differ, for the audit trail (not for patching). */
export function lineDiff(before: string, after: string): string[] {
  const a = before.split('\n');
  const b = after.split('\n');
  const common = new Set(a.filter((l) => b.includes(l)));
  return [
    ...a.filter((l) => !common.has(l)).map((l) => `-${l}`),
    ...b.filter((l) => !common.has(l)).map((l) => `+${l}`),
  ];
}
