import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { labPrerequisitesMissing } from '../../lab/tools.js';

/** Why the lab tests cannot run here ('' when they can). Printed once, so a skip is never silent. */
export function labSkipReason(): string {
  const missing = labPrerequisitesMissing();
  if (missing.length === 0) return '';
  const reason = `lab tests skipped: need ${missing.join(', ')} (run as root after scripts/setup.sh)`;
  console.warn(reason);
  return reason;
}

/**
 * A lab of its own for one test file: its own dir and a namespace prefix unique to this run, so it
 * never meets a lab made by hand or by another test run on the same machine (labDown works by prefix).
 */
export function testLabDir(tag: string): { labDir: string; prefix: string } {
  return {
    labDir: path.join(mkdtempSync(path.join(os.tmpdir(), `refit-lab-${tag}-`)), 'lab'),
    prefix: `rf-${tag}${randomBytes(2).toString('hex')}-`,
  };
}
