import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, tempDir } from './helpers/controller.js';

const dir = tempDir('cli');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const COMMANDS = ['dev', 'worker', 'host', 'sim-fleet', 'hosts', 'rollout', 'audit', 'lab', 'ovs-config'];

/** Run the built `refit` without a stack; `traceTemporal` reports every @temporalio module it loads. */
function refit(args: string[], traceTemporal = false) {
  const env: NodeJS.ProcessEnv = { ...process.env };
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

  it('suggests the command meant by a typo', () => {
    const out = refit(['rollot']);
    expect(out.status).toBe(1);
    expect(out.stderr).toContain('Did you mean rollout?');
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
