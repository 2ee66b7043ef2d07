import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { ReceivedCommand } from '../../../schemas/command.js';
import type { StepContext } from '../driver.js';
import { CommandFailedError, type CommandResult, type CommandRunner } from './command.js';

/** Real captured output of a command, from test/fixtures/captured. */
export function captured(name: string): string {
  return readFileSync(new URL(`../../../test/fixtures/captured/${name}`, import.meta.url), 'utf8');
}

/** A step context that logs nothing and is never cancelled. */
export const quietCtx = (): StepContext => ({
  signal: new AbortController().signal,
  progress: () => undefined,
  log: pino({ level: 'silent' }),
  recovering: false,
});

/** An apply command of `kind` for host hv1, as the host worker receives it. */
export const applyCommand = (kind: ReceivedCommand['kind'], params: Record<string, unknown>): ReceivedCommand => ({
  commandId: `t/${kind}/${randomUUID()}`,
  hostId: 'hv1',
  kind,
  mode: 'apply',
  params,
  rolloutId: 'r',
  workflowId: 'w',
  issuedAt: new Date().toISOString(),
});

/** Temporary directories for one test file: `tmp()` makes one, `removeAll()` (for its afterAll) removes them all. */
export function tempDirs(prefix: string) {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(path.join(os.tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
  const removeAll = () => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  };
  return { tmp, removeAll };
}

/** How a fake Proxmox command answers: `ok(stdout)` succeeds; `fail(stderr)` throws as qm/pvesh fail (exit 255 unless told). */
export interface PveReply {
  ok: (stdout?: string) => CommandResult;
  fail: (stderr: string, exitCode?: number) => never;
}

/**
 * A fake Proxmox VE node or cluster behind the real runner interface: records every command in `calls`
 * and answers it with `answer` (in the formats pinned by proxmox.test.ts).
 */
export function fakePveCluster(answer: (argv: readonly string[], reply: PveReply) => CommandResult) {
  const calls: string[][] = [];
  const run: CommandRunner = async (argv) => {
    calls.push([...argv]);
    return answer(argv, {
      ok: (stdout = '') => ({ argv, stdout, stderr: '', exitCode: 0 }),
      fail: (stderr, exitCode = 255) => {
        throw new CommandFailedError({ argv, stdout: '', stderr, exitCode });
      },
    });
  };
  return { run, calls };
}

/** `ip -j` output of a lab host on a Linux bridge, for runners whose tests read the facts; undefined for other commands. */
export function ipOnLinuxBridge(argv: readonly string[]): string | undefined {
  if (argv[0] !== 'ip' || !argv.includes('-j')) return undefined;
  return captured(argv.includes('link') ? 'ip-j-d-link-linux-bridge-host.json' : 'ip-j-addr-linux-bridge-host.json');
}

/** A PVE-style /etc/network/interfaces: vmbr0 a Linux bridge on ens6 with the host address. */
export const LINUX_BRIDGE_INTERFACES = `auto lo
iface lo inet loopback

iface ens6 inet manual

auto vmbr0
iface vmbr0 inet static
\taddress 10.77.0.11/24
\tgateway 10.77.0.1
\tbridge-ports ens6
\tbridge-stp off
\tbridge-fd 0
`;

/** A host's files under a temporary directory, which is its state dir too (no ifupdown2 there: classic ifupdown). */
export function hostPathsIn(dir: string) {
  return {
    interfaces: path.join(dir, 'interfaces'),
    backupDir: path.join(dir, 'backups'),
    grub: path.join(dir, 'grub'),
    sriovRules: path.join(dir, 'rules'),
    procCmdline: path.join(dir, 'cmdline'),
    bootId: path.join(dir, 'boot_id'),
    stateDir: dir,
    ifupdown2: path.join(dir, 'no-ifupdown2'),
  };
}

/** The two ends of one VXLAN (VNI 100) over the lab's underlay: h1 on Open vSwitch, h2 a Linux vxlan device. */
export const VXLAN_ENDS = {
  ovs: {
    type: 'ovs',
    name: 'vx100',
    vni: 100,
    remote: '10.77.0.12',
    local: '10.77.0.11',
    underlay: 'ens6',
    bridge: 'vmbr0',
    tag: 100,
  },
  linux: {
    type: 'linux',
    name: 'vx100',
    vni: 100,
    remote: '10.77.0.11',
    local: '10.77.0.12',
    underlay: 'vmbr0',
    address: '192.168.100.2/24',
  },
} as const;
