import { readFileSync } from 'node:fs';

/** Real captured output of a command, from test/fixtures/captured. */
export function captured(name: string): string {
  return readFileSync(new URL(`../../../test/fixtures/captured/${name}`, import.meta.url), 'utf8');
}
