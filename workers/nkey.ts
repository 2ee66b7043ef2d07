import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { publicKeyOfSeed } from '../activities/nkey.js';

/**
 * The public key of the nkey user seed in `file`, the seed made first (0600, in a 0700 directory)
 * when the file does not exist. The seed never leaves the machine that made it.
 */
export function ensureSeed(file: string): string {
  if (existsSync(file)) return publicKeyOfSeed(readFileSync(file, 'utf8').trim());
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const seed = new TextDecoder().decode(createUser().getSeed());
  writeFileSync(file, seed + '\n', { mode: 0o600, flag: 'wx' });
  return publicKeyOfSeed(seed);
}
