import { randomBytes } from 'node:crypto';
import { canonicalJson } from './audit/hash.js';
import { signWithSeed, verifySignature } from './nkey.js';
import {
  ActionSignatureSchema,
  SIGNATURE_MAX_AGE_MS,
  type ActionSignature,
  type SignedActionTarget,
  type VerifyActionRequest,
  type VerifyActionResult,
} from '../schemas/operators.js';
import { problemText } from '../schemas/problems.js';

/** The bytes an operator signs: the canonical JSON of the action, who, when and the nonce. */
export function actionPayload(target: SignedActionTarget, who: Omit<ActionSignature, 'sig'>): string {
  return canonicalJson({
    v: 1,
    rolloutId: target.rolloutId,
    action: target.action,
    args: target.args,
    operator: who.operator,
    at: who.at,
    nonce: who.nonce,
  });
}

/** Sign an action as `operator` with the operator's nkey seed, now, with a fresh nonce. */
export function signAction(
  seed: string,
  operator: string,
  target: SignedActionTarget,
  now = new Date(),
): ActionSignature {
  const who = { operator, at: now.toISOString(), nonce: randomBytes(18).toString('base64url') };
  return { ...who, sig: signWithSeed(seed, actionPayload(target, who)) };
}

/**
 * Check an action's signature: well formed, by an enrolled operator (`keyOf` gives the public key of
 * a name, undefined when not enrolled), made within {@link SIGNATURE_MAX_AGE_MS} of when the rollout
 * received it, over exactly this rollout, action and arguments. Replays are the rollout's to refuse (nonces).
 */
export async function verifyAction(
  req: VerifyActionRequest,
  keyOf: (operator: string) => Promise<string | undefined>,
): Promise<VerifyActionResult> {
  const parsed = ActionSignatureSchema.safeParse(req.signature);
  if (!parsed.success)
    return { ok: false, reason: `the signature is malformed: ${problemText(parsed.error, 'signature')}` };
  const signature = parsed.data;
  const key = await keyOf(signature.operator);
  if (key === undefined) return { ok: false, reason: `${signature.operator} is not an enrolled operator` };
  const age = Date.parse(req.receivedAt) - Date.parse(signature.at);
  if (Math.abs(age) > SIGNATURE_MAX_AGE_MS)
    return {
      ok: false,
      reason: `the signature was made ${Math.round(Math.abs(age) / 1000)} s ${age >= 0 ? 'before' : 'after'} the rollout received it (at most ${SIGNATURE_MAX_AGE_MS / 1000} s): send the action again`,
    };
  const target = { rolloutId: req.rolloutId, action: req.action, args: req.args };
  if (!verifySignature(key, actionPayload(target, signature), signature.sig))
    return {
      ok: false,
      reason: `the signature does not verify with ${signature.operator}'s enrolled key for this rollout, action and arguments`,
    };
  return { ok: true, operator: signature.operator, key };
}
