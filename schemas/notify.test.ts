import { describe, expect, it } from 'vitest';
import { parsePlan } from './plan.js';

const planWith = (notify: string) => `apiVersion: refit/v1
kind: Campaign
name: n
targets: { hosts: [h1] }
steps:
  - kind: verify
    params: { targets: [{ address: 10.0.0.1 }] }
notify:
${notify}
`;

describe('a plan\u2019s notify block', () => {
  it('takes webhooks with a secret from a file or the environment, every event by default', () => {
    const parsed = parsePlan(
      planWith(`  webhooks:
    - url: https://hooks.example.net/refit
      secret: { env: REFIT_WEBHOOK_SECRET }
    - url: http://10.0.0.9:8080/x
      secret: { file: /etc/refit/webhook.key }
      events: [completed, failed]`),
    );
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
    expect(parsed.plan.notify).toMatchObject({ attempts: 5, backoff: 2_000, timeout: 10_000 });
    expect(parsed.plan.notify?.webhooks[0]?.events).toContain('approval-needed');
    expect(parsed.plan.notify?.webhooks[1]?.events).toEqual(['completed', 'failed']);
  });

  it('refuses an inline secret, a relative secret file, another scheme, an unknown event and a bare number of ms', () => {
    const parsed = parsePlan(
      planWith(`  backoff: 500
  webhooks:
    - url: ftp://hooks.example.net/refit
      secret: s3cr3t-in-the-plan
      events: [exploded]
    - url: https://hooks.example.net/refit
      secret: { file: webhook.key }`),
    );
    expect(parsed.ok).toBe(false);
    const problems = parsed.ok ? [] : parsed.problems.map((p) => `${p.line}:${p.path}: ${p.message}`);
    expect(problems).toEqual([
      expect.stringMatching(/^9:notify\.backoff: .*unit/),
      expect.stringMatching(/^11:notify\.webhooks\[0\]\.url: must be an http:\/\/ or https:\/\/ URL/),
      expect.stringMatching(
        /^12:notify\.webhooks\[0\]\.secret: must be \{ file: .* the secret itself never goes in a plan/,
      ),
      expect.stringMatching(/^13:notify\.webhooks\[0\]\.events\[0\]: .*"approval-needed"/),
      expect.stringMatching(/^15:notify\.webhooks\[1\]\.secret\.file: must be an absolute path/),
    ]);
  });
});
