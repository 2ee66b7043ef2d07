import { RefitError } from '../../../schemas/errors.js';
import type { HostTools } from '../../../schemas/host.js';
import type { CommandRunner } from './command.js';

/** Programs refit's steps run on a host that a minimal install lacks: how each is asked whether it is there, and what needs it. */
const TOOLS = {
  hping3: { argv: ['hping3', '--version'], neededBy: 'verify (and the traffic baselines)' },
} as const;
export type HostTool = keyof typeof TOOLS;

/** The Debian or Proxmox VE package of each program refit's linux driver runs. */
const PACKAGES: Record<string, { apt: string; on?: string }> = {
  ip: { apt: 'iproute2' },
  bridge: { apt: 'iproute2' },
  ethtool: { apt: 'ethtool' },
  ping: { apt: 'iputils-ping' },
  hping3: { apt: 'hping3' },
  'ovs-vsctl': { apt: 'openvswitch-switch' },
  'ovs-appctl': { apt: 'openvswitch-switch' },
  'ovs-ofctl': { apt: 'openvswitch-switch' },
  ifup: { apt: 'ifupdown2 (or ifupdown, classic Debian)' },
  ifdown: { apt: 'ifupdown2 (or ifupdown, classic Debian)' },
  ifreload: { apt: 'ifupdown2' },
  'update-grub': { apt: 'grub2-common' },
  systemctl: { apt: 'systemd' },
  virsh: { apt: 'libvirt-clients' },
  qm: { apt: 'qemu-server', on: 'Proxmox VE' },
  pvesh: { apt: 'pve-manager', on: 'Proxmox VE' },
  'ha-manager': { apt: 'pve-ha-manager', on: 'Proxmox VE' },
  'proxmox-boot-tool': { apt: 'proxmox-kernel-helper', on: 'Proxmox VE' },
};

/**
 * "<program> is not installed on <where>: <step> needs it (Debian/Proxmox: apt install <package>)",
 * for a program not found on PATH; without a step (the facts) the middle part is left out.
 */
export function missingProgramMessage(program: string, where: string, neededBy?: string): string {
  const pkg = PACKAGES[program];
  const install =
    pkg === undefined
      ? `Debian/Proxmox: apt-file search --regexp 'bin/${program}$' finds its package`
      : `${pkg.on ?? 'Debian/Proxmox'}: apt install ${pkg.apt}`;
  return `${program} is not installed on ${where}${neededBy !== undefined ? `: ${neededBy} needs it` : ''} (${install})`;
}

/** A step needs a program the host does not have. Installing it is the fix; retrying is not. */
export class MissingToolError extends RefitError {}

/** Whether `tool` runs where `run` runs commands (on the host, in a lab host's namespace, in a VM). */
export async function toolPresent(run: CommandRunner, tool: HostTool): Promise<boolean> {
  return run(TOOLS[tool].argv, { timeoutMs: 10_000 }).then(
    () => true,
    () => false,
  );
}

/** What is missing where, what needs it and how to install it. */
export function missingToolMessage(tool: HostTool, where = 'this host'): string {
  return missingProgramMessage(tool, where, TOOLS[tool].neededBy);
}

/** Throws MissingToolError (missingToolMessage) when `tool` is not there. */
export async function requireTool(run: CommandRunner, tool: HostTool, where = 'this host'): Promise<void> {
  if (!(await toolPresent(run, tool))) throw new MissingToolError(missingToolMessage(tool, where));
}

/**
 * The host's tools for its facts, looked for again at most every `ttlMs` (facts are reported every
 * few seconds; an operator who installs a tool sees it within a minute).
 */
export function toolFacts(run: CommandRunner, ttlMs = 60_000): () => Promise<HostTools> {
  let cached: { at: number; tools: HostTools } | undefined;
  return async () => {
    if (cached !== undefined && Date.now() - cached.at < ttlMs) return cached.tools;
    const tools = { hping3: await toolPresent(run, 'hping3') };
    cached = { at: Date.now(), tools };
    return tools;
  };
}
