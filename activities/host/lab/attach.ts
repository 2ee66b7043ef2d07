import { CommandFailedError } from '../linux/command.js';
import {
  ipLinkMasterArgv,
  ipLinkNoMasterArgv,
  ipLinksArgv,
  ipLinkUpArgv,
  parseIpLinks,
  type Link,
} from '../linux/ip.js';
import { ifName } from '../linux/names.js';
import { ovsAddPortArgv, ovsDelPortArgv, ovsListPortsJsonArgv, parseOvsPorts } from '../linux/ovs-vsctl.js';
import { hpingArgv, parseHpingStats } from '../linux/hping.js';
import { hostRunner, switchRunner } from './exec.js';
import { SWITCH_ADDRESS } from './layout.js';
import type { LabHost, LabState } from './state.js';

export const LAB_BRIDGE = 'vmbr0';

export type RunningBridge =
  | { type: 'linux'; ports: string[] }
  /** `tag`: the uplink's native VLAN, which VM ports join as access ports; `tags`: each port's own. */
  | { type: 'ovs'; ports: string[]; tag: number | undefined; tags: Map<string, number | undefined> }
  | { type: 'none'; ports: [] };

export async function hostLinks(lab: LabState, host: LabHost): Promise<Link[]> {
  return parseIpLinks((await hostRunner(lab, host)(ipLinksArgv())).stdout);
}

/** What vmbr0 is right now on a lab host: a Linux bridge, an OVS bridge (with its ports), or absent. */
export async function runningBridge(lab: LabState, host: LabHost, links?: Link[]): Promise<RunningBridge> {
  const all = links ?? (await hostLinks(lab, host));
  if (all.some((l) => l.name === LAB_BRIDGE && l.kind === 'bridge')) {
    return { type: 'linux', ports: all.filter((l) => l.master === LAB_BRIDGE).map((l) => l.name) };
  }
  const run = hostRunner(lab, host);
  try {
    await run(['ovs-vsctl', '--timeout=5', 'br-exists', LAB_BRIDGE]);
  } catch (err) {
    if (err instanceof CommandFailedError) return { type: 'none', ports: [] };
    throw err;
  }
  const names = (await run(['ovs-vsctl', '--timeout=5', 'list-ports', LAB_BRIDGE])).stdout
    .split('\n')
    .filter((l) => l !== '');
  const ports = parseOvsPorts((await run(ovsListPortsJsonArgv())).stdout);
  const uplink = ports.find((p) => p.name === (host.bond?.name ?? host.uplink));
  return { type: 'ovs', ports: names, tag: uplink?.tag, tags: new Map(ports.map((p) => [p.name, p.tag])) };
}

/**
 * Plug a VM's veth or tap into the host's bridge, the way the hypervisor does when the VM starts or
 * arrives. On OVS a Port row of that name is deleted first, in a transaction of its own, as
 * qemu-server's tap_plug does: a row left from an earlier device of the same name (the tap of a
 * guest that left this host with its QEMU, and now came back with a new one) would otherwise be kept
 * with the old device open, and the userspace datapath would receive nothing from the new tap
 * (decision 0035). The port comes back on `tag` when given (a Proxmox VM's configured `tag=`, which
 * travels with it), else on the VLAN its row had (the VM's own, as ovs-convert or undrain set it),
 * else on the uplink's native VLAN.
 */
export async function attachVmPort(
  lab: LabState,
  host: LabHost,
  port: string,
  bridge?: RunningBridge,
  tag?: number,
): Promise<RunningBridge> {
  const br = bridge ?? (await runningBridge(lab, host));
  const run = hostRunner(lab, host);
  const dev = ifName(port);
  if (br.type === 'linux') await run(ipLinkMasterArgv(dev, ifName(LAB_BRIDGE)));
  else if (br.type === 'ovs') {
    const had = br.ports.includes(port);
    if (had) await run(ovsDelPortArgv(ifName(LAB_BRIDGE), dev));
    await run(ovsAddPortArgv(ifName(LAB_BRIDGE), dev, tag ?? (had ? br.tags.get(port) : br.tag)));
  }
  await run(ipLinkUpArgv(dev));
  return br;
}

export async function detachVmPort(lab: LabState, host: LabHost, port: string, bridge?: RunningBridge): Promise<void> {
  const br = bridge ?? (await runningBridge(lab, host));
  const run = hostRunner(lab, host);
  if (br.type === 'linux' && br.ports.includes(port)) await run(ipLinkNoMasterArgv(ifName(port)));
  else if (br.type === 'ovs' && br.ports.includes(port)) await run(ovsDelPortArgv(ifName(LAB_BRIDGE), ifName(port)));
}

/**
 * Give a lab host's Linux vmbr0 its uplink's MAC for good, as a real host's bridge has one of its
 * own: udev sets it when ifupdown creates the bridge (MACAddressPolicy=persistent), and a MAC set
 * by hand stays. A lab host's namespace has no udev, and a Linux bridge left alone takes the lowest
 * MAC among its ports: a guest's tap with a lower random MAC joining it (an incoming migration) or
 * leaving it (a guest gone) changed the host's MAC under its peers' ARP entries, and the next
 * migration to it sent its SYNs to the old MAC until the source's entry was found dead, 30-130 s
 * (decision 0041). Called where the lab plays udev: after `ifup -a` at boot and after a step
 * rebuilt the bridge.
 */
export async function fixBridgeMac(lab: LabState, host: LabHost, links?: Link[]): Promise<void> {
  const all = links ?? (await hostLinks(lab, host));
  const uplink = all.find((l) => l.name === (host.bond?.name ?? host.uplink));
  if (!all.some((l) => l.name === LAB_BRIDGE && l.kind === 'bridge') || uplink?.mac === undefined) return;
  await hostRunner(lab, host)(['ip', 'link', 'set', 'dev', LAB_BRIDGE, 'address', uplink.mac]);
}

/**
 * One packet from the host to the lab switch, as a booted host talks to its gateway at once: the
 * switch refreshes its ARP entry for the host (whose MAC may be new) instead of waiting for it to go stale.
 */
export async function announceHost(lab: LabState, host: LabHost): Promise<void> {
  await hostRunner(lab, host)(hpingArgv({ address: SWITCH_ADDRESS, count: 1 }), {
    okExitCodes: [1],
    timeoutMs: 10_000,
  }).catch(() => undefined);
}

/** A few ICMP echoes from the lab switch to an address inside the lab. */
export async function reachableFromSwitch(lab: LabState, address: string, count = 3): Promise<boolean> {
  const res = await switchRunner(lab)(hpingArgv({ address, count, intervalUs: 20_000 }), {
    okExitCodes: [1],
    timeoutMs: 15_000,
  });
  return parseHpingStats(res.stderr).received > 0;
}
