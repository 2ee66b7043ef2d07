import { z } from 'zod';
import { HostId } from './common.js';
import { SUBJECTS } from './names.js';

/**
 * What can happen, in the operator's words. `rollout.*` and `host.*` are written by the controller
 * on the rollout's chain; `step.*` and `ovs.*` by the host worker on the host's own chain.
 */
export const AUDIT_EVENT_TYPES = [
  'rollout.created',
  'rollout.started',
  'rollout.paused',
  'rollout.resumed',
  'rollout.approved',
  'rollout.cancelled',
  'rollout.action-refused',
  'rollout.completed',
  'rollout.failed',
  'host.started',
  'host.succeeded',
  'host.failed',
  'host.rolled-back',
  'host.held',
  'host.skipped',
  'host.retried',
  'host.rebooted',
  'step.requested',
  'step.started',
  'step.command',
  'step.succeeded',
  'step.failed',
  'step.cancelled',
  'step.reverted',
  /** A dry run: what a plan's steps would change on the host; nothing was changed. */
  'step.previewed',
  'ovs.confirmed',
  'ovs.auto-reverted',
  'notify.delivered',
  'notify.failed',
] as const;
export const AuditEventType = z.enum(AUDIT_EVENT_TYPES);
export type AuditEventType = z.infer<typeof AuditEventType>;

/** `controller`, `host:<hostId>`, or `user:<name>` for an operator (as the CLI reports it, e.g. user:alice@laptop). */
export const AuditActor = z
  .string()
  .regex(/^(controller|host:[a-z0-9-]{1,63}|user:\P{Cc}{1,200})$/u, 'must be controller, host:<id> or user:<name>');

const ROLLOUT_TOKEN = /^[A-Za-z0-9_-]{1,200}$/;

/** The subjects events are chained on. A chain is exactly one subject of the audit stream. */
export const AUDIT_CHAINS = {
  /** Written only by the host worker, under the host's own credentials. */
  host: (hostId: string) => SUBJECTS.auditHost(hostId),
  /** Written by the controller. Rollout ids that are not a plain subject token are base64url-encoded. */
  rollout: (rolloutId: string) =>
    `refit.audit.rollout.${ROLLOUT_TOKEN.test(rolloutId) ? rolloutId : `_b64_${Buffer.from(rolloutId).toString('base64url')}`}`,
  /** Controller (and CLI) events outside any rollout. */
  controller: SUBJECTS.auditController,
} as const;

/** Which host a chain subject belongs to, if it is a host chain. */
export function hostOfChain(subject: string): string | undefined {
  const prefix = AUDIT_CHAINS.host('');
  return subject.startsWith(prefix) ? subject.slice(prefix.length) : undefined;
}

/** A reference to one event of another chain: its position and hash when this event was written. */
export const AuditLink = z.strictObject({
  chain: z.string().min(1),
  seq: z.number().int().positive(),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
});
export type AuditLink = z.infer<typeof AuditLink>;

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256 in hex');

const eventFields = {
  /** Unique; the JetStream message id, so a re-sent event is stored once. */
  eventId: z.string().min(1).max(1_000),
  at: z.iso.datetime(),
  actor: AuditActor,
  type: AuditEventType,
  rolloutId: z.string().min(1).max(200).optional(),
  hostId: HostId.optional(),
  /** The Temporal workflow that caused it (search it with `temporal workflow list`). */
  workflowId: z.string().min(1).max(300).optional(),
  commandId: z.string().min(1).max(512).optional(),
  step: z.string().min(1).max(100).optional(),
  data: z.record(z.string(), z.unknown()),
  /** Heads of other chains this event vouches for (the rollout chain links each host's chain). */
  links: z.array(AuditLink).max(100).optional(),
};

/** An event before it is put on a chain: what writers produce and the host spools. */
export const AuditDraft = z.strictObject(eventFields);
export type AuditDraft = z.infer<typeof AuditDraft>;

/**
 * A host's ed25519 signature of its event: `sig` signs the canonical JSON of the sealed event
 * without `hash` and `signature` (so it covers the chain position and the link to the event before),
 * `key` names the nkey public key that made it. The hash covers the signature.
 */
export const AuditSignature = z.strictObject({
  key: z.string().regex(/^U[A-Z2-7]{55}$/, 'must be an nkey user public key'),
  sig: z.string().regex(/^[A-Za-z0-9_-]{86}$/, 'must be an ed25519 signature in base64url'),
});
export type AuditSignature = z.infer<typeof AuditSignature>;

const chainFields = {
  /** The subject the event is chained on. */
  chain: z.string().min(1),
  /** Position in that chain, from 1. */
  seq: z.number().int().positive(),
  /** Hash of the event at seq - 1; null for the first event of a chain. */
  prevHash: Sha256.nullable(),
  /** sha256 of the canonical JSON of the event without this field. */
  hash: Sha256,
  /** On host chains: the host's signature (absent on events written before hosts signed). */
  signature: AuditSignature.optional(),
};

/** An event as stored: a draft sealed onto its chain. */
export const AuditEvent = z.strictObject({ ...eventFields, ...chainFields });
export type AuditEvent = z.infer<typeof AuditEvent>;

/**
 * How an event is read back: types and actors this version does not know are kept, so that an
 * older `refit` can still read and verify a newer trail. Unknown fields are kept too (they are hashed).
 */
export const StoredAuditEvent = z.looseObject({
  ...eventFields,
  ...chainFields,
  type: z.string().min(1),
  actor: z.string().min(1),
  hostId: z.string().optional(),
});
export type StoredAuditEvent = z.infer<typeof StoredAuditEvent>;

/** One stored message of the audit stream; also one line of `refit audit export --format jsonl`. */
export const AuditRecord = z.strictObject({
  subject: z.string().min(1),
  streamSeq: z.number().int().positive(),
  storedAt: z.string(),
  /** The message parsed as JSON; absent when it is not JSON (then `raw` holds it). */
  event: z.unknown().optional(),
  raw: z.string().optional(),
});
export type AuditRecord = z.infer<typeof AuditRecord>;

/** One change between a step's before and after state; `lines` is a line diff of multi-line text. */
export const StateChange = z.object({
  path: z.string(),
  before: z.unknown().optional(),
  after: z.unknown().optional(),
  lines: z.array(z.string()).optional(),
});
export type StateChange = z.infer<typeof StateChange>;

/**
 * What the workflows give `recordAudit`. The event id, time and workflow id default to the
 * activity's own (stable across retries of the activity).
 */
export const AuditRecordInput = z.strictObject({
  type: AuditEventType,
  actor: AuditActor,
  rolloutId: z.string().min(1).max(200).optional(),
  hostId: HostId.optional(),
  step: z.string().min(1).max(100).optional(),
  commandId: z.string().min(1).max(512).optional(),
  data: z.record(z.string(), z.unknown()).optional(),
  /** When it happened (workflow time); default: when the activity runs. */
  at: z.iso.datetime().optional(),
  eventId: z.string().min(1).max(1_000).optional(),
});
export type AuditRecordInput = z.input<typeof AuditRecordInput>;

/** Where `recordAudit` stored the event. `duplicate`: it was already stored by an earlier attempt. */
export interface AuditRecorded {
  eventId: string;
  chain: string;
  seq: number;
  hash: string;
  duplicate: boolean;
}
