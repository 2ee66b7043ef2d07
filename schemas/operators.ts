import { z } from 'zod';

/**
 * Enrolled operators: each has a name and an nkey; control actions sent through `refit` carry the
 * operator's signature, which the rollout verifies (through an activity) against the enrolled key.
 */

/** An enrolled operator's name: also its key in the operators bucket, and `user:<name>` in the audit trail. */
export const OperatorName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
    'must be 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit',
  );

/** One enrolled operator, as the operators bucket holds it. */
export const OperatorRecord = z.strictObject({
  name: OperatorName,
  publicKey: z.string().regex(/^U[A-Z2-7]{55}$/, 'must be an nkey user public key (U…)'),
  addedAt: z.iso.datetime(),
});
export type OperatorRecord = z.infer<typeof OperatorRecord>;

// In rollout.ts, which the workflows import: this module's zod schemas would be built in every workflow.
export { SIGNATURE_MAX_AGE_MS } from './rollout.js';

/** What an operator signs an action with: who, when, a one-time nonce, and the ed25519 signature (base64url). */
export interface ActionSignature {
  operator: string;
  /** ISO time of signing. */
  at: string;
  /** Random, at least 16 characters: the rollout refuses a nonce it has seen. */
  nonce: string;
  sig: string;
}

export const ActionSignatureSchema = z.strictObject({
  operator: OperatorName,
  at: z.iso.datetime(),
  nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, 'must be 16 to 64 base64url characters'),
  sig: z.string().regex(/^[A-Za-z0-9_-]{86}$/, 'must be an ed25519 signature in base64url'),
});

/** The action a signature is for: the rollout, the action's name, and its arguments (reason, host, or the plan for start). */
export interface SignedActionTarget {
  rolloutId: string;
  action: string;
  args: Record<string, unknown>;
}

/** Asked of the `verifyOperatorAction` activity; `receivedAt` is the rollout's (workflow) time. */
export interface VerifyActionRequest extends SignedActionTarget {
  signature: unknown;
  receivedAt: string;
}

/** The verified operator, or why the signature is refused. */
export type VerifyActionResult = { ok: true; operator: string; key: string } | { ok: false; reason: string };
