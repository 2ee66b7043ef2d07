import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHostPackage, PACKAGE_PATHS, type HostPackage } from '../scripts/package-host.js';
import { packageVersion } from '../lab/host-package.js';
import { environmentFiles, execStartArgv, parseEnvironmentFile, parseUnitFile } from '../lab/systemd-unit.js';

const have = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const missing = ['dpkg-deb', 'dpkg'].filter((t) => !have(t));
const skip = missing.length > 0 ? `package tests skipped: need ${missing.join(', ')} (Debian's dpkg)` : '';
if (skip) console.warn(skip);

const sh = (cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } });

/** dpkg with everything in a scratch root: its own admin dir, scripts run outside any chroot with DPKG_ROOT set. */
function scratchDpkg(root: string, args: string[]) {
  return sh('dpkg', [
    `--root=${root}`,
    '--force-not-root',
    '--force-script-chrootless',
    // nodejs is the host's to provide; the scratch root has no package database of its own.
    '--ignore-depends=nodejs',
    '--log=/dev/null',
    ...args,
  ]);
}

function emptyRoot(dir: string): string {
  for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'var/lib/dpkg/triggers'])
    mkdirSync(path.join(dir, d), { recursive: true });
  writeFileSync(path.join(dir, 'var/lib/dpkg/status'), '');
  writeFileSync(path.join(dir, 'var/lib/dpkg/available'), '');
  return dir;
}

describe.skipIf(skip !== '')(`the host package (npm run package)${skip ? ` — ${skip}` : ''}`, () => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'refit-package-test-'));
  let pkg: HostPackage;
  let root: string;

  beforeAll(async () => {
    pkg = await buildHostPackage({ outDir: path.join(work, 'out') });
    root = emptyRoot(path.join(work, 'root'));
  }, 60_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('is refit-host_<version>_all.deb with the control fields a Debian host needs', () => {
    expect(path.basename(pkg.deb)).toBe(`refit-host_${packageVersion()}_all.deb`);
    const field = (name: string) => execFileSync('dpkg-deb', ['--field', pkg.deb, name], { encoding: 'utf8' }).trim();
    expect(field('Package')).toBe('refit-host');
    expect(field('Version')).toBe(packageVersion());
    expect(field('Architecture')).toBe('all');
    expect(field('Depends')).toBe('nodejs (>= 18)');
    expect(Number(field('Installed-Size'))).toBeGreaterThan(pkg.bundle.bytes / 1024);
    const info = execFileSync('dpkg-deb', ['--info', pkg.deb], { encoding: 'utf8' });
    for (const script of ['postinst', 'prerm', 'postrm', 'conffiles']) expect(info).toContain(script);
    expect(execFileSync('dpkg-deb', ['--ctrl-tarfile', pkg.deb]).length).toBeGreaterThan(0);
  });

  it('holds the bundle, the wrapper, the unit and the env file, owned by root with their modes', () => {
    const listing = execFileSync('dpkg-deb', ['--contents', pkg.deb], { encoding: 'utf8' });
    const files = new Map(
      listing
        .trim()
        .split('\n')
        .map((line) => line.split(/\s+/))
        .filter((cols) => cols[0]?.startsWith('-'))
        .map((cols) => [(cols[5] as string).replace(/^\./, ''), { mode: cols[0], owner: cols[1] }]),
    );
    expect(Object.fromEntries(files)).toEqual({
      [PACKAGE_PATHS.bundle]: { mode: '-rw-r--r--', owner: 'root/root' },
      [PACKAGE_PATHS.wrapper]: { mode: '-rwxr-xr-x', owner: 'root/root' },
      [PACKAGE_PATHS.unit]: { mode: '-rw-r--r--', owner: 'root/root' },
      [PACKAGE_PATHS.env]: { mode: '-rw-r--r--', owner: 'root/root' },
    });
    const conffiles = execFileSync('sh', ['-c', `dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles`, 'sh', pkg.deb], {
      encoding: 'utf8',
    });
    expect(conffiles.trim().split('\n')).toEqual([PACKAGE_PATHS.env]);
  });

  it('installs with dpkg into a scratch root, touching nothing outside it, the files where the docs say', () => {
    const installed = scratchDpkg(root, ['-i', pkg.deb]);
    expect(installed.status, installed.stderr).toBe(0);
    const status = sh('dpkg-query', [`--admindir=${root}/var/lib/dpkg`, '-W', '-f=${Status} ${Version}', 'refit-host']);
    expect(status.stdout).toBe(`install ok installed ${packageVersion()}`);
    for (const p of Object.values(PACKAGE_PATHS)) expect(existsSync(path.join(root, p)), p).toBe(true);
    expect(statSync(path.join(root, PACKAGE_PATHS.wrapper)).mode & 0o777).toBe(0o755);
    expect(readFileSync(path.join(root, PACKAGE_PATHS.unit), 'utf8')).toBe(
      readFileSync(new URL('../deploy/debian/refit-host.service', import.meta.url), 'utf8'),
    );
    const unit = parseUnitFile(readFileSync(path.join(root, PACKAGE_PATHS.unit), 'utf8'), PACKAGE_PATHS.unit);
    expect(execStartArgv(unit, PACKAGE_PATHS.unit)).toEqual([PACKAGE_PATHS.wrapper, 'run']);
    expect(environmentFiles(unit)).toEqual([{ path: PACKAGE_PATHS.env, optional: false }]);
    const env = parseEnvironmentFile(readFileSync(path.join(root, PACKAGE_PATHS.env), 'utf8'), PACKAGE_PATHS.env);
    expect(env).toMatchObject({ REFIT_DRIVER: 'linux', REFIT_STATE_DIR: '/var/lib/refit' });
    expect(env.REFIT_NATS_URL).toMatch(/^nats:\/\//);
    // The maintainer scripts saw DPKG_ROOT and did not reach for this machine's systemd.
    const removed = scratchDpkg(root, ['--purge', 'refit-host']);
    expect(removed.status, removed.stderr).toBe(0);
    expect(existsSync(path.join(root, PACKAGE_PATHS.bundle))).toBe(false);
    expect(scratchDpkg(root, ['-i', pkg.deb]).status).toBe(0);
  });

  it(
    have('systemd-analyze')
      ? 'has a unit that systemd-analyze verify accepts, and one that names a missing program it refuses'
      : 'has a unit for systemd-analyze verify — skipped: systemd-analyze is not installed here',
    ({ skip: skipTest }) => {
      if (!have('systemd-analyze')) return skipTest();
      // The scratch root plays a host: this machine's own units (sysinit.target, …) beside the package's.
      const host = path.join(work, 'verify-root');
      cpSync(root, host, { recursive: true });
      const systemUnits = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((d) => existsSync(d)) as string;
      cpSync(systemUnits, path.join(host, 'usr/lib/systemd/system'), {
        recursive: true,
        force: false,
        dereference: false,
      });
      const verify = () => sh('systemd-analyze', ['verify', `--root=${host}`, PACKAGE_PATHS.unit]);
      const ok = verify();
      expect(ok.status, ok.stderr).toBe(0);
      expect(ok.stderr.trim()).toBe('');
      rmSync(path.join(host, PACKAGE_PATHS.wrapper));
      const broken = verify();
      expect(broken.status).not.toBe(0);
      expect(broken.stderr).toContain('/usr/bin/refit-host');
    },
  );

  it('runs as installed: --help, and enroll-request prints "<hostId> <publicKey>" from a key it made', () => {
    const wrapper = path.join(root, PACKAGE_PATHS.wrapper);
    const help = sh(wrapper, ['--help']);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^usage: refit-host/);
    const state = path.join(work, 'state');
    const env = { REFIT_STATE_DIR: state, REFIT_HOST_ID: 'pve-07' };
    const first = sh(wrapper, ['enroll-request'], env);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^pve-07 U[A-Z2-7]{55}\n$/);
    expect(sh(wrapper, ['enroll-request'], env).stdout).toBe(first.stdout);
    expect(sh(wrapper, ['no-such-command']).status).toBe(2);
  });

  it('bundles host-side code only: no Temporal, no build tools, one file of a few MB', () => {
    const modules = pkg.bundle.inputs.filter((i) => i.includes('node_modules/'));
    expect(modules.some((m) => m.includes('@nats-io/'))).toBe(true);
    expect(modules.filter((m) => /@temporalio|@swc|webpack|esbuild|typescript/.test(m))).toEqual([]);
    expect(pkg.bundle.inputs).not.toContain('workers/controller.ts');
    const text = readFileSync(pkg.bundle.file, 'utf8');
    expect(text).not.toMatch(/@temporalio\/|proto\/temporal|webpack/);
    // Every import left in the bundle is one of Node's own modules.
    const imports = [...text.matchAll(/^import .* from ["']([^"']+)["'];?$/gm)].map((m) => m[1]);
    expect(imports.length).toBeGreaterThan(0);
    expect(imports.filter((i) => !builtinModules.includes((i as string).replace(/^node:/, '')))).toEqual([]);
    expect(pkg.bundle.bytes).toBeLessThan(4 * 1024 * 1024);
    expect(readFileSync(pkg.deb).length).toBeLessThan(1024 * 1024);
  });
});
