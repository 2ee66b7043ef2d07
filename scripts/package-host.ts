/**
 * `npm run package`: the host agent as one bundled file, and the Debian package that carries it
 * (docs/decisions/0012-host-package.md). Host-side code only: the bundle starts at
 * workers/host/agent-main.ts and must not reach Temporal or any build tool.
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { PACKAGE_PATHS, packageVersion, repoRoot } from '../lab/host-package.js';

export { PACKAGE_PATHS };

const run = promisify(execFile);

/** The oldest Node.js the bundle runs on: Debian 12 (Proxmox VE 8) ships 18. */
export const MIN_NODE_MAJOR = 18;

/** Runs before anything else in the bundle: a clear error instead of a missing API further on. */
const NODE_CHECK = `{
  const major = Number(process.versions.node.split('.')[0]);
  if (major < ${MIN_NODE_MAJOR}) {
    process.stderr.write('refit-host: needs Node.js ${MIN_NODE_MAJOR} or newer, this is ' + process.version + ' (' + process.execPath + ')\\n');
    process.exit(2);
  }
}`;

export interface BundleResult {
  file: string;
  bytes: number;
  /** Every source file and package module the bundle holds (paths relative to the repository). */
  inputs: string[];
}

/** workers/host/agent-main.ts and what it imports, as one ESM file for Node 18. */
export async function bundleHostAgent(o: { outFile: string; entry?: string; root?: string }): Promise<BundleResult> {
  const root = o.root ?? repoRoot();
  const result = await build({
    entryPoints: [o.entry ?? path.join(root, 'workers/host/agent-main.ts')],
    outfile: o.outFile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: `node${MIN_NODE_MAJOR}`,
    absWorkingDir: root,
    metafile: true,
    legalComments: 'none',
    logLevel: 'silent',
    // The bundle has no package.json beside it: its version is compiled in (workers/host/version.ts).
    define: { 'process.env.REFIT_AGENT_VERSION': JSON.stringify(packageVersion(root)) },
    // CommonJS packages in an ESM bundle call require() for Node's built-ins.
    banner: {
      js: `${NODE_CHECK}\nimport { createRequire as __refitCreateRequire } from 'node:module';\nconst require = __refitCreateRequire(import.meta.url);`,
    },
  });
  const inputs = Object.keys(result.metafile.inputs);
  const forbidden = inputs.filter((i) => /node_modules\/(@temporalio|@swc|webpack|esbuild|typescript)\//.test(i));
  if (forbidden.length > 0)
    throw new Error(`the host bundle must not hold controller or build code, but reaches ${forbidden.join(', ')}`);
  return { file: o.outFile, bytes: (await stat(o.outFile)).size, inputs };
}

export interface HostPackage {
  version: string;
  /** refit-host_<version>_all.deb */
  deb: string;
  bundle: BundleResult;
}

/**
 * Bundles the agent and builds refit-host_<version>_all.deb in outDir with dpkg-deb (files owned by
 * root, modes set here, not taken from the checkout). The finished .deb is renamed into place, so
 * a reader never sees half of one.
 */
export async function buildHostPackage(o: { outDir: string; entry?: string; root?: string }): Promise<HostPackage> {
  const root = o.root ?? repoRoot();
  const version = packageVersion(root);
  const debian = path.join(root, 'deploy/debian');
  await mkdir(o.outDir, { recursive: true });
  const stage = await mkdtemp(path.join(os.tmpdir(), 'refit-host-pkg-'));
  try {
    const tree = path.join(stage, 'tree');
    const at = (p: string) => path.join(tree, p);
    const bundle = await bundleHostAgent({
      outFile: at(PACKAGE_PATHS.bundle),
      root,
      ...(o.entry ? { entry: o.entry } : {}),
    });
    const place = async (from: string, to: string, mode: number) => {
      await mkdir(path.dirname(at(to)), { recursive: true });
      await copyFile(path.join(debian, from), at(to));
      await chmod(at(to), mode);
    };
    await chmod(at(PACKAGE_PATHS.bundle), 0o644);
    await place('refit-host', PACKAGE_PATHS.wrapper, 0o755);
    await place('refit-host.service', PACKAGE_PATHS.unit, 0o644);
    await place('host.env', PACKAGE_PATHS.env, 0o644);
    for (const script of ['postinst', 'prerm', 'postrm']) await place(script, `DEBIAN/${script}`, 0o755);
    await place('conffiles', 'DEBIAN/conffiles', 0o644);
    const control = (await readFile(path.join(debian, 'control'), 'utf8'))
      .replace('@VERSION@', version)
      .replace('@INSTALLED_SIZE@', String(Math.ceil((await treeBytes(tree, ['DEBIAN'])) / 1024)));
    await writeFile(at('DEBIAN/control'), control, { mode: 0o644 });
    // Directories 0755 whatever the umask of whoever builds.
    await run('find', [tree, '-type', 'd', '-exec', 'chmod', '0755', '{}', '+']);
    const name = `refit-host_${version}_all.deb`;
    const built = path.join(stage, name);
    await run('dpkg-deb', ['--root-owner-group', '--build', tree, built]);
    const deb = path.join(o.outDir, name);
    await rename(built, deb).catch(async () => {
      // another file system: copy beside the target, then rename there
      await copyFile(built, `${deb}.tmp`);
      await rename(`${deb}.tmp`, deb);
    });
    const standalone = path.join(o.outDir, 'refit-host.mjs');
    await copyFile(at(PACKAGE_PATHS.bundle), `${standalone}.tmp`);
    await rename(`${standalone}.tmp`, standalone);
    return { version, deb, bundle: { ...bundle, file: standalone } };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

async function treeBytes(dir: string, skip: string[] = []): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (skip.includes(entry.name)) continue;
    const p = path.join(dir, entry.name);
    total += entry.isDirectory() ? await treeBytes(p) : (await stat(p)).size;
  }
  return total;
}

/** The package `npm run package` builds, where the lab and the docs look for it. */
export const defaultPackageDir = (root = repoRoot()) => path.join(root, 'dist/package');
