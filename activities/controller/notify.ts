import { readFile } from 'node:fs/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Logger } from 'pino';
import type { AuditRecordInput, AuditRecorded } from '../../schemas/audit.js';
import type {
  NotificationBody,
  NotificationRequest,
  NotificationResult,
  Webhook,
  WebhookSecret,
} from '../../schemas/notify.js';
import { SIGNATURE_HEADER, signWebhook } from './webhook-signature.js';

/** A secret shorter than this is refused: HMAC is only as strong as its key. */
const MIN_SECRET_LENGTH = 16;

export interface NotifyDeps {
  recordAudit: (input: AuditRecordInput) => Promise<AuditRecorded>;
  log: Logger;
  /** Where `{ env: NAME }` secrets are read (the controller's environment). */
  env?: NodeJS.ProcessEnv;
}

class SecretUnavailable extends Error {}

async function readSecret(ref: WebhookSecret, env: NodeJS.ProcessEnv): Promise<string> {
  let secret: string | undefined;
  if ('file' in ref) {
    secret = await readFile(ref.file, 'utf8').then(
      (t) => t.trim(),
      (err: unknown) => {
        throw new SecretUnavailable(`cannot read the webhook secret file ${ref.file}: ${(err as Error).message}`);
      },
    );
  } else {
    secret = env[ref.env];
    if (secret === undefined || secret === '')
      throw new SecretUnavailable(`the webhook secret variable ${ref.env} is not set in the controller's environment`);
  }
  if (secret.length < MIN_SECRET_LENGTH)
    throw new SecretUnavailable(
      `the webhook secret (${'file' in ref ? ref.file : ref.env}) is shorter than ${MIN_SECRET_LENGTH} characters`,
    );
  return secret;
}

/** How the audit trail names a webhook: its name or place, and where it is, without path or query (they may hold a token). */
function webhookRecord(webhook: Webhook, index: number): Record<string, string> {
  return { webhook: webhook.name ?? `#${index + 1}`, origin: new URL(webhook.url).origin };
}

/**
 * Send one notification to one webhook: JSON, signed with its HMAC secret (X-Refit-Signature). One
 * try per activity attempt; Temporal retries with the plan's back-off. The delivery, or the last
 * try's failure, is recorded on the rollout's audit chain; a notification that cannot be sent never
 * fails the activity at its last attempt, so it never fails the rollout.
 */
export function createSendNotification({ recordAudit, log, env = process.env }: NotifyDeps) {
  return async function sendNotification(req: NotificationRequest): Promise<NotificationResult> {
    const info = Context.current().info;
    const execution = info.workflowExecution;
    const deliveryId = `${execution?.workflowId}/${execution?.runId}/${info.activityId}`;
    const attempt = info.attempt;
    const last = attempt >= req.attempts;
    const where = webhookRecord(req.webhook, req.index);
    const base = {
      actor: 'controller' as const,
      rolloutId: req.body.rolloutId,
      ...(req.body.hostId ? { hostId: req.body.hostId } : {}),
    };
    const gaveUp = async (error: string): Promise<NotificationResult> => {
      log.warn({ ...where, event: req.body.event, attempt, error }, 'gave up a notification');
      await recordAudit({
        ...base,
        type: 'notify.failed',
        data: { event: req.body.event, ...where, attempts: attempt, error },
      });
      return { delivered: false, attempt };
    };
    let secret: string;
    try {
      secret = await readSecret(req.webhook.secret, env);
    } catch (err) {
      if (err instanceof SecretUnavailable) return gaveUp(err.message);
      throw err;
    }
    const body = JSON.stringify({ deliveryId, ...req.body } satisfies NotificationBody);
    let error: string;
    try {
      const res = await fetch(req.webhook.url, {
        method: 'POST',
        redirect: 'manual',
        signal: AbortSignal.timeout(req.timeoutMs),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'refit-controller',
          'x-refit-event': req.body.event,
          'x-refit-delivery': deliveryId,
          [SIGNATURE_HEADER]: signWebhook(secret, body, Math.floor(Date.now() / 1000)),
        },
        body,
      });
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) {
        await recordAudit({
          ...base,
          type: 'notify.delivered',
          data: { event: req.body.event, ...where, attempts: attempt, status: res.status },
        });
        return { delivered: true, attempt };
      }
      error = `answered HTTP ${res.status}`;
    } catch (err) {
      error = (err as Error).name === 'TimeoutError' ? `no answer within ${req.timeoutMs} ms` : (err as Error).message;
    }
    if (last) return gaveUp(error);
    throw ApplicationFailure.retryable(`${where.webhook} (${where.origin}): ${error}`, 'NotificationNotSent');
  };
}
