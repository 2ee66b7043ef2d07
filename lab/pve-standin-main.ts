import { loadLab } from '../activities/host/lab/state.js';
import { standin } from './pve-standin.js';

/**
 * The process the lab's qm, pvesh and ha-manager wrappers on a pve lab host run (lab/host-files.ts):
 * `node pve-standin-main.js <lab dir> <node> <program> <args…>`. Exit 255 and the message on stderr
 * on an error, as the Proxmox tools do.
 */
const [labDir, node, program, ...args] = process.argv.slice(2);
if (labDir === undefined || node === undefined || program === undefined) {
  process.stderr.write('usage: pve-standin-main.js <lab dir> <node> qm|pvesh|ha-manager <args…>\n');
  process.exit(2);
}
try {
  const result = await standin(await loadLab(labDir), node, program, args);
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  process.exitCode = result.code;
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 255;
}
