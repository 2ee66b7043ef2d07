import { existsSync } from 'node:fs';
import type { CommandRunner } from './command.js';
import type { IfName } from './names.js';

/**
 * Which ifupdown brings /etc/network/interfaces up: 1 is Debian's classic `ifupdown` (`ifup`/`ifdown`,
 * Open vSwitch's hook brings an OVS bridge's ports up when they are announced with `allow-<bridge>`),
 * 2 is `ifupdown2` (`ifreload -a`, Proxmox VE's default since 7, which only brings up what is `auto`).
 * The two Debian packages conflict: a host has one or the other.
 */
export type IfupdownFlavour = 1 | 2;

/** Where ifupdown2 installs itself; Proxmox VE decides "ifupdown2 is installed" by this path existing. */
export const IFUPDOWN2_DIR = '/usr/share/ifupdown2';

/** The flavour of the host whose ifupdown2 directory would be `dir`, decided as Proxmox VE does (`-e '/usr/share/ifupdown2'`). */
export function detectIfupdown(dir: string = IFUPDOWN2_DIR): IfupdownFlavour {
  return existsSync(dir) ? 2 : 1;
}

/**
 * Bring `name` up from /etc/network/interfaces as the host's ifupdown does: classic ifupdown runs
 * `ifup <name>` (hooks such as Open vSwitch's bring up what the stanza names); ifupdown2 applies the
 * whole file with `ifreload -a`, as Proxmox VE's "Apply Configuration" does.
 */
export function ifupAs(run: CommandRunner, name: IfName, flavour: IfupdownFlavour, timeoutMs = 120_000) {
  return run(flavour === 2 ? ['ifreload', '-a'] : ['ifup', name], { timeoutMs });
}

export function describeIfupdown(flavour: IfupdownFlavour): string {
  return flavour === 2
    ? 'ifupdown2 (ports marked auto, applied with ifreload -a)'
    : 'classic ifupdown (ports announced with allow-<bridge>, applied with ifdown/ifup)';
}
