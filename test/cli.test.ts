import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, tempDir } from './helpers/controller.js';

const dir = tempDir('cli');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const COMMANDS = [
  'dev',
  'worker',
  'host',
  'sim-fleet',
  'hosts',
  'enroll',
  'operator',
  'rollout',
  'audit',
  'ui',
  'completion',
  'lab',
  'ovs-config',
];

/** Run the built `refit` without a stack; `traceTemporal` reports every @temporalio module it loads. */
function refit(args: string[], traceTemporal = false) {
  // Nothing listens there: a command that gets past its arguments fails fast instead of finding a stack.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REFIT_HOME: dir,
    REFIT_TEMPORAL_ADDRESS: '127.0.0.1:1',
    REFIT_NATS_URL: 'nats://127.0.0.1:1',
  };
  if (traceTemporal) {
    const hooks = path.join(dir, 'hooks.mjs');
    writeFileSync(
      hooks,
      `export async function resolve(s, c, next) { const r = await next(s, c); if (r.url.includes('@temporalio')) process.stderr.write('LOADED ' + r.url + '\\n'); return r; }\n`,
    );
    const register = path.join(dir, 'register.mjs');
    writeFileSync(
      register,
      `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
    );
    env.NODE_OPTIONS = `--import=${pathToFileURL(register).href}`;
  }
  return spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 60_000 });
}

describe('refit command line', () => {
  it('lists every command in its help', () => {
    const out = refit(['--help']);
    expect(out.status).toBe(0);
    for (const command of COMMANDS) expect(out.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
  });

  it('suggests the command meant by a typo, and exits 2 as for any usage error', () => {
    const out = refit(['rollot']);
    expect(out.status).toBe(2);
    expect(out.stderr).toContain('Did you mean rollout?');
  });

  it('exits 2 on an unknown option or a missing argument, and 0 on --help and --version', () => {
    const unknown = refit(['rollout', 'list', '--lmit', '3']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("error: unknown option '--lmit'");
    const missing = refit(['rollout', 'status']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("error: missing required argument 'rolloutId'");
    expect(refit(['rollout', 'list', '--help']).status).toBe(0);
    expect(refit(['--version']).status).toBe(0);
  });

  it.each([
    [
      ['rollout', 'list', '--limit', 'abc'],
      "option '--limit <n>' argument 'abc' is invalid. Expected a whole number above 0.",
    ],
    [
      ['rollout', 'list', '--limit', '0'],
      "option '--limit <n>' argument '0' is invalid. Expected a whole number above 0.",
    ],
    [
      ['sim-fleet', '--hosts', '2.5'],
      "option '--hosts <n>' argument '2.5' is invalid. Expected a whole number above 0.",
    ],
    [
      ['host', '--id', 'h1', '--driver', 'sim', '--presence-interval', '1e3'],
      "option '--presence-interval <ms>' argument '1e3' is invalid. Expected a whole number above 0.",
    ],
    [
      ['host', '--id', 'h1', '--speed', '-2'],
      "option '--speed <x>' argument '-2' is invalid. Expected a number above 0.",
    ],
    [
      ['lab', 'up', '--vms', 'two'],
      "option '--vms <m>' argument 'two' is invalid. Expected a whole number, 0 or more.",
    ],
    [['lab', 'up', '--hosts', '0'], "option '--hosts <n>' argument '0' is invalid. Expected a whole number above 0."],
    [
      ['dev', 'up', '--nats-port', '70000'],
      "option '--nats-port <port>' argument '70000' is invalid. Expected a port number (1-65535).",
    ],
    [
      ['ovs-config', '--interfaces', 'x', '--host-vlan', '5000'],
      "option '--host-vlan <tag>' argument '5000' is invalid. Expected a VLAN tag (1-4094).",
    ],
    [
      ['ovs-config', '--interfaces', 'x', '--ifupdown', '3'],
      "option '--ifupdown <1|2>' argument '3' is invalid. Expected 1 (classic ifupdown) or 2 (ifupdown2).",
    ],
    [
      ['lab', 'up', '--vm-kind', 'kvm'],
      "option '--vm-kind <kind>' argument 'kvm' is invalid. Expected qemu (real QEMU guests) or netns (namespace VMs).",
    ],
    [
      ['lab', 'up', '--flavour', 'proxmox'],
      "option '--flavour <flavour>' argument 'proxmox' is invalid. Expected debian, pve, or per host",
    ],
    [
      ['audit', 'log', '--since', 'yesterday'],
      "option '--since <time>' argument 'yesterday' is invalid. Expected a time",
    ],
  ])('refuses a bad number before the command runs: refit %j', (args, message) => {
    const out = refit(args);
    expect(out.stderr).toContain(`error: ${message}`);
    expect(out.status).toBe(2);
  });

  // Every command that reads and shows something can print it as JSON for scripts.
  it.each(
    [
      ['hosts'],
      ['rollout', 'list'],
      ['rollout', 'status'],
      ['rollout', 'watch'],
      ['rollout', 'plan'],
      ['audit', 'log'],
      ['audit', 'show'],
      ['audit', 'verify'],
      ['operator', 'list'],
      ['dev', 'status'],
      ['lab', 'status'],
      ['ovs-config'],
    ].map((command) => [command.join(' '), command] as const),
  )('refit %s has --json', (_name, command) => {
    const out = refit([...command, '--help']);
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/^ {2}--json\b/m);
  });

  it('ovs-config --json gives the file it prints, and what it is for', () => {
    const file = path.join(dir, 'interfaces');
    writeFileSync(
      file,
      'auto lo\niface lo inet loopback\n\niface eno1 inet manual\n\nauto vmbr0\niface vmbr0 inet static\n\taddress 192.0.2.5/24\n\tbridge-ports eno1\n',
    );
    const args = ['ovs-config', '--interfaces', file, '--ifupdown', '1'];
    const text = refit(args);
    expect(text.status, text.stderr).toBe(0);
    const json = refit([...args, '--json']);
    expect(json.status, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ interfaces: file, bridge: 'vmbr0', ifupdown: 1, text: text.stdout });
    expect(text.stdout).toContain('ovs_type OVSBridge');
  });

  it('loads no Temporal module for the host worker, and does for the controller', () => {
    const host = refit(['host', '--help'], true);
    expect(host.status).toBe(0);
    expect(host.stdout).toContain('--driver');
    expect(host.stderr).not.toContain('LOADED');
    const worker = refit(['worker', '--help'], true);
    expect(worker.status).toBe(0);
    expect(worker.stderr).toContain('LOADED');
  });
});
