import { z } from 'zod';
import { durationWithin } from './common.js';

/** What a rollout tells webhooks about, in the operator's words. */
export const NOTIFY_EVENTS = [
  'approval-needed',
  'paused',
  'host-failed',
  'host-rolled-back',
  'completed',
  'failed',
  'cancelled',
] as const;
export const NotifyEvent = z.enum(NOTIFY_EVENTS);
export type NotifyEvent = z.infer<typeof NotifyEvent>;

/**
 * Where the controller finds a webhook's HMAC secret: a file on the controller's machine, or a
 * variable of its environment. The secret itself never stands in a plan (or the audit trail).
 */
export const WebhookSecret = z.union(
  [
    z.strictObject({ file: z.string().startsWith('/', 'must be an absolute path').max(4096) }),
    z.strictObject({
      env: z.string().regex(/^[A-Z_][A-Z0-9_]{0,127}$/, 'must be an environment variable name (A-Z, 0-9, _)'),
    }),
  ],
  { error: 'must be { file: /absolute/path } or { env: VARIABLE }: the secret itself never goes in a plan' },
);
export type WebhookSecret = z.infer<typeof WebhookSecret>;

export const Webhook = z.strictObject({
  /** How the audit trail names this webhook (its URL may hold a token). */
  name: z
    .string()
    .regex(/^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/, 'must be lower-case letters, digits and "-", at most 40')
    .optional(),
  url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).max(2048),
  secret: WebhookSecret,
  /** Which events it gets; all of them when absent. */
  events: z
    .array(NotifyEvent)
    .min(1)
    .default([...NOTIFY_EVENTS]),
});
export type Webhook = z.output<typeof Webhook>;

export const Notify = z.strictObject({
  webhooks: z.array(Webhook).min(1).max(10),
  /** Tries per notification and webhook before it is given up (and audited as failed). */
  attempts: z.number().int().min(1).max(10).default(5),
  /** The wait after the first failed try; doubled after each next one, at most 5m. */
  backoff: durationWithin(100, 5 * 60_000).default(2_000),
  /** How long one try may take. */
  timeout: durationWithin(1_000, 60_000).default(10_000),
});
export type Notify = z.output<typeof Notify>;

/** What a webhook receives (JSON), signed: see the X-Refit-Signature header (docs/plans.md). */
export interface NotificationBody {
  /** The same for every try of one notification to one webhook: receivers drop repeats by it. */
  deliveryId: string;
  event: NotifyEvent;
  rolloutId: string;
  plan: string;
  /** When it happened (workflow time). */
  at: string;
  /** The rollout's state then. */
  state: string;
  counts: Record<string, number>;
  hostId?: string;
  /** Why: the pause's reason, the host's error, the approval's gate. */
  detail?: string;
}

/** One notification to one webhook, as the rollout asks the controller to send it. */
export interface NotificationRequest {
  webhook: Webhook;
  /** The webhook's place in the plan's list: how the audit trail names one without a name. */
  index: number;
  body: Omit<NotificationBody, 'deliveryId'>;
  attempts: number;
  timeoutMs: number;
}

export interface NotificationResult {
  delivered: boolean;
  attempt: number;
}
