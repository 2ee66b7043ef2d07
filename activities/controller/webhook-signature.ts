import { createHmac, timingSafeEqual } from 'node:crypto';

/** The header a webhook checks: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export const SIGNATURE_HEADER = 'x-refit-signature';
/** How old a signature a receiver should still take (a replay after this is refused). */
export const SIGNATURE_TOLERANCE_S = 300;

/** Sign `body` at `unixSeconds`: the timestamp is inside the MAC, so an old delivery cannot be replayed as new. */
export function signWebhook(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

/**
 * What a receiver does: true when `header` signs `body` with `secret` and its time is within
 * `toleranceS` of `nowS`. Written here so refit's test checks deliveries the way receivers should.
 */
export function verifyWebhook(
  secret: string,
  body: string,
  header: string | undefined,
  nowS: number,
  toleranceS = SIGNATURE_TOLERANCE_S,
): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) return false;
  const t = Number(m[1]);
  if (Math.abs(nowS - t) > toleranceS) return false;
  const expected = Buffer.from(signWebhook(secret, body, t).slice(`t=${t},v1=`.length), 'hex');
  return timingSafeEqual(expected, Buffer.from(m[2]!, 'hex'));
}
