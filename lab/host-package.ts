import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { rootRunner } from '../activities/host/lab/exec.js';
import { RefitError } from '../schemas/errors.js';
import { parseUnitFile, type UnitFile } from './systemd-unit.js';

/** Where refit-host_<version>_all.deb puts things (deploy/debian/, scripts/package-host.ts). */
export const PACKAGE_PATHS = {
  bundle: '/usr/lib/refit-host/refit-host.mjs',
  wrapper: '/usr/bin/refit-host',
  unit: '/usr/lib/systemd/system/refit-host.service',
  env: '/etc/refit/host.env',
} as const;

export class HostPackageError extends RefitError {}

/** The repository root: where package.json names refit (seen from lab/ and from dist/lab/). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'refit') return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new HostPackageError(`no refit package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export function packageVersion(root = repoRoot()): string {
  return (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
}

/** What `npm run package` builds: dist/package/refit-host_<version>_all.deb. */
export function defaultHostPackage(root = repoRoot()): string {
  return path.join(root, 'dist/package', `refit-host_${packageVersion(root)}_all.deb`);
}

export interface UnpackedHostPackage {
  /** The package's files under this directory, as dpkg would lay them out under /. */
  root: string;
  unit: UnitFile;
  unitFile: string;
  /** The package's default /etc/refit/host.env. */
  defaultEnv: string;
}

/** `dpkg-deb -x` of the package into a fresh directory: the files a host gets, nothing of the checkout. */
export async function unpackHostPackage(deb: string, into: string): Promise<UnpackedHostPackage> {
  if (!existsSync(deb)) throw new HostPackageError(`no host package at ${deb}: build it with npm run package`);
  await rm(into, { recursive: true, force: true });
  await mkdir(into, { recursive: true });
  await rootRunner(['dpkg-deb', '-x', deb, into]);
  const at = (p: string) => path.join(into, p);
  const unitFile = at(PACKAGE_PATHS.unit);
  return {
    root: into,
    unit: parseUnitFile(await readFile(unitFile, 'utf8'), unitFile),
    unitFile,
    defaultEnv: await readFile(at(PACKAGE_PATHS.env), 'utf8'),
  };
}
