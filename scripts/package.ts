/** `npm run package`: dist/package/refit-host_<version>_all.deb and dist/package/refit-host.mjs. */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { buildHostPackage, defaultPackageDir } from './package-host.js';

const built = await buildHostPackage({ outDir: defaultPackageDir() });
const kib = (n: number) => `${Math.round(n / 1024)} KiB`;
process.stdout.write(
  `${path.relative(process.cwd(), built.deb)} (${kib((await stat(built.deb)).size)}): bundle ${kib(built.bundle.bytes)}, ${built.bundle.inputs.length} modules, no Temporal\n`,
);
