import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { RefitError } from '../schemas/errors.js';

/**
 * nkeys (NATS's ed25519 keys) with node:crypto: a user seed "SU…" signs, a user public key "U…"
 * verifies. @nats-io/nkeys does the same in pure-JS tweetnacl, some milliseconds a signature; a host
 * signs every audit event and `refit audit verify` checks every one, so the native code is used.
 */

/** Something is not an nkey of the kind asked for; the message says what. */
export class NkeyError extends RefitError {}

const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const USER_PUBLIC_PREFIX = 20 << 3; // nkeys prefix byte of user public keys ("U...")
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** The private key of an nkey user seed ("SU…"). */
export function privateKeyOfSeed(seed: string): KeyObject {
  if (!/^SU[A-Z2-7]{56}$/.test(seed)) throw new NkeyError('not an nkey user seed');
  const decoded = base32Decode(seed);
  return createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, decoded.subarray(2, 34)]),
    format: 'der',
    type: 'pkcs8',
  });
}

/**
 * The public key ("U...") of an nkey user seed ("SU..."). nkeys derives it with pure-JS tweetnacl,
 * about 5 ms a key; node:crypto takes microseconds, which matters when enrolling thousands of hosts.
 */
export function publicKeyOfSeed(seed: string): string {
  const spki = createPublicKey(privateKeyOfSeed(seed)).export({ format: 'der', type: 'spki' });
  const body = Buffer.concat([Buffer.from([USER_PUBLIC_PREFIX]), spki.subarray(-32)]);
  const check = Buffer.alloc(2);
  check.writeUInt16LE(crc16(body));
  return base32Encode(Buffer.concat([body, check]));
}

/** The ed25519 key of an nkey user public key ("U…", 56 characters, checksum verified). */
export function publicKeyObject(publicKey: string): KeyObject {
  let decoded: Buffer;
  try {
    decoded = base32Decode(publicKey);
  } catch {
    throw new NkeyError('not an nkey user public key (not base32)');
  }
  if (publicKey.length !== 56 || decoded.length !== 35 || decoded[0] !== USER_PUBLIC_PREFIX)
    throw new NkeyError('not an nkey user public key (expected 56 characters starting with U)');
  const body = decoded.subarray(0, 33);
  if (decoded.readUInt16LE(33) !== crc16(body)) throw new NkeyError('not an nkey user public key (bad checksum)');
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, body.subarray(1)]), format: 'der', type: 'spki' });
}

/** What `publicKeyObject` finds wrong with a public key, if anything. */
export function publicKeyProblem(publicKey: string): string | undefined {
  try {
    publicKeyObject(publicKey);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** An ed25519 signature of `data` by the seed's key, base64url. */
export function signWithSeed(seed: string | KeyObject, data: string | Uint8Array): string {
  const key = typeof seed === 'string' ? privateKeyOfSeed(seed) : seed;
  return sign(null, typeof data === 'string' ? Buffer.from(data) : data, key).toString('base64url');
}

/** Whether `signature` (base64url) is the ed25519 signature of `data` by the public key "U…"; false for any malformed input. */
export function verifySignature(publicKey: string | KeyObject, data: string | Uint8Array, signature: string): boolean {
  try {
    const key = typeof publicKey === 'string' ? publicKeyObject(publicKey) : publicKey;
    const sig = Buffer.from(signature, 'base64url');
    if (sig.length !== 64) return false;
    return verify(null, typeof data === 'string' ? Buffer.from(data) : data, key, sig);
  } catch {
    return false;
  }
}

/** Signs with one nkey seed; says which public key verifies it. */
export interface Signer {
  publicKey: string;
  /** An ed25519 signature of `data`, base64url. */
  sign(data: string): string;
}

export function signerOfSeed(seed: string): Signer {
  const key = privateKeyOfSeed(seed);
  return { publicKey: publicKeyOfSeed(seed), sign: (data) => signWithSeed(key, data) };
}

/** The nkey user seed in a credentials file's text: the seed itself, or the seed block of a NATS `.creds` file. */
export function seedOfCredentials(text: string): string {
  const block = /-----BEGIN USER NKEY SEED-----\s*(SU[A-Z2-7]+)\s*------END USER NKEY SEED------/.exec(text);
  const seed = block?.[1] ?? text.trim();
  privateKeyOfSeed(seed);
  return seed;
}

function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    for (; bits >= 5; bits -= 5) out += BASE32[(value >>> (bits - 5)) & 31];
  }
  return bits > 0 ? out + BASE32[(value << (5 - bits)) & 31] : out;
}

function base32Decode(text: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const char of text) {
    const digit = BASE32.indexOf(char);
    if (digit < 0) throw new NkeyError('not base32');
    value = ((value << 5) | digit) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** CRC-16/XMODEM, the checksum nkeys appends. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}
