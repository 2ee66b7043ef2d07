import { describe, expect, it } from 'vitest';
import { createUser } from '@nats-io/nkeys';
import { publicKeyOfSeed } from './nkey.js';
import { signAction, verifyAction } from './operator-signature.js';

const seed = new TextDecoder().decode(createUser().getSeed());
const enrolled = { alice: publicKeyOfSeed(seed) };
const keyOf = async (name: string) => enrolled[name as keyof typeof enrolled];
const target = { rolloutId: 'r-1', action: 'approve', args: { reason: 'canary fine' } };
const at = new Date('2026-11-30T12:00:00Z');
const received = (ms: number) => new Date(at.getTime() + ms).toISOString();

describe("an operator action's signature", () => {
  it('verifies for exactly the rollout, action and arguments signed, by the enrolled operator', async () => {
    const signature = signAction(seed, 'alice', target, at);
    expect(await verifyAction({ ...target, signature, receivedAt: received(1_000) }, keyOf)).toEqual({
      ok: true,
      operator: 'alice',
      key: enrolled.alice,
    });
    for (const other of [
      { ...target, rolloutId: 'r-2' },
      { ...target, action: 'cancel' },
      { ...target, args: {} },
      { ...target, args: { reason: 'canary fine', hostId: 'h1' } },
    ])
      expect(await verifyAction({ ...other, signature, receivedAt: received(0) }, keyOf)).toMatchObject({
        ok: false,
        reason: expect.stringMatching(/does not verify/),
      });
  });

  it('is refused when stale, from the future, by someone not enrolled, or malformed', async () => {
    const signature = signAction(seed, 'alice', target, at);
    expect(await verifyAction({ ...target, signature, receivedAt: received(6 * 60_000) }, keyOf)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/360 s before the rollout received it/),
    });
    expect(await verifyAction({ ...target, signature, receivedAt: received(-6 * 60_000) }, keyOf)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/after the rollout received it/),
    });
    const bob = signAction(seed, 'bob', target, at);
    expect(await verifyAction({ ...target, signature: bob, receivedAt: received(0) }, keyOf)).toMatchObject({
      ok: false,
      reason: 'bob is not an enrolled operator',
    });
    for (const bad of [undefined, 'sig', { ...signature, nonce: 'short' }, { ...signature, extra: 1 }])
      expect(await verifyAction({ ...target, signature: bad, receivedAt: received(0) }, keyOf)).toMatchObject({
        ok: false,
        reason: expect.stringMatching(/malformed/),
      });
  });
});
