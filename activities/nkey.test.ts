import { describe, expect, it } from 'vitest';
import { createUser, fromPublic } from '@nats-io/nkeys';
import {
  publicKeyObject,
  publicKeyOfSeed,
  publicKeyProblem,
  seedOfCredentials,
  signWithSeed,
  verifySignature,
} from './nkey.js';

const seedOf = () => new TextDecoder().decode(createUser().getSeed());

describe('nkeys with node:crypto', () => {
  it('derives the public key nkeys derives', () => {
    const user = createUser();
    expect(publicKeyOfSeed(new TextDecoder().decode(user.getSeed()))).toBe(user.getPublicKey());
  });

  it('signs so that nkeys verifies, and verifies what nkeys signed', () => {
    const user = createUser();
    const seed = new TextDecoder().decode(user.getSeed());
    const data = new TextEncoder().encode('{"action":"approve"}');
    const ours = signWithSeed(seed, data);
    expect(fromPublic(user.getPublicKey()).verify(data, Buffer.from(ours, 'base64url'))).toBe(true);
    expect(verifySignature(user.getPublicKey(), data, Buffer.from(user.sign(data)).toString('base64url'))).toBe(true);
  });

  it('refuses a signature by another key, over other data, or malformed', () => {
    const seed = seedOf();
    const key = publicKeyOfSeed(seed);
    const sig = signWithSeed(seed, 'payload');
    expect(verifySignature(key, 'payload', sig)).toBe(true);
    expect(verifySignature(publicKeyOfSeed(seedOf()), 'payload', sig)).toBe(false);
    expect(verifySignature(key, 'payload!', sig)).toBe(false);
    expect(verifySignature(key, 'payload', sig.slice(2))).toBe(false);
    expect(verifySignature(key, 'payload', '')).toBe(false);
    expect(verifySignature('UNOTAKEY', 'payload', sig)).toBe(false);
  });

  it('says what is wrong with a public key', () => {
    const key = publicKeyOfSeed(seedOf());
    expect(publicKeyProblem(key)).toBeUndefined();
    expect(publicKeyProblem(key.toLowerCase())).toMatch(/not base32/);
    expect(publicKeyProblem(key.slice(0, 50))).toMatch(/56 characters/);
    const flipped = key.slice(0, 10) + (key[10] === 'A' ? 'B' : 'A') + key.slice(11);
    expect(publicKeyProblem(flipped)).toMatch(/checksum/);
    expect(() => publicKeyObject(seedOf())).toThrow(/public key/);
  });

  it('finds the seed in a bare seed file and in a .creds file', () => {
    const seed = seedOf();
    expect(seedOfCredentials(`${seed}\n`)).toBe(seed);
    const creds = `-----BEGIN NATS USER JWT-----\neyJ0eXAi.x.y\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;
    expect(seedOfCredentials(creds)).toBe(seed);
    expect(() => seedOfCredentials('hello')).toThrow(/seed/);
  });
});
