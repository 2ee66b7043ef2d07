import { RefitError } from '../../../schemas/errors.js';
import type { HostTools } from '../../../schemas/host.js';
import type { CommandRunner } from './command.js';

/** Programs refit's steps run on a host that a minimal install lacks: how each is asked whether it is there, and what needs it. */
const TOOLS = {
  hping3: { argv: ['hping3', '--version'], neededBy: 'verify (and the traffic baselines)', apt: 'hping3' },
} as const;
export type HostTool = keyof typeof TOOLS;

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
  const t = TOOLS[tool];
  return `${tool} is not installed on ${where}: ${t.neededBy} needs it (Debian/Proxmox: apt install ${t.apt})`;
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
