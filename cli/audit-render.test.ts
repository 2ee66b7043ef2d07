import { describe, expect, it } from 'vitest';
import { eventHash } from '../activities/audit/hash.js';
import type { StoredAuditEvent } from '../schemas/audit.js';
import { matches, parseSince, renderEvent, summarize } from './audit-render.js';

const unsealed = {
  eventId: 'refit-host-h1/run/3/1/result',
  at: '2025-06-01T10:00:00.000Z',
  actor: 'host:h1',
  type: 'step.succeeded',
  rolloutId: 'r1',
  hostId: 'h1',
  workflowId: 'refit-host-h1',
  step: 'ovs-convert',
  data: {
    summary: 'converted vmbr0',
    changed: true,
    before: { bridge: { type: 'linux' } },
    after: { bridge: { type: 'ovs' } },
  },
  chain: 'refit.audit.host.h1',
  seq: 4,
  prevHash: 'a'.repeat(64),
};
const event = { ...unsealed, hash: eventHash(unsealed) } as StoredAuditEvent;
const record = { subject: event.chain, streamSeq: 17, storedAt: event.at, event };

describe('refit audit log and show', () => {
  it('takes --since as a time or as how long ago', () => {
    const now = new Date('2025-06-01T12:00:00Z');
    expect(parseSince('2h', now)?.toISOString()).toBe('2025-06-01T10:00:00.000Z');
    expect(parseSince('2025-05-31T00:00Z', now)?.toISOString()).toBe('2025-05-31T00:00:00.000Z');
    expect(parseSince('yesterday', now)).toBeUndefined();
  });

  it('filters by host, rollout, step, type family and time', () => {
    expect(matches(event, { host: 'h1', rollout: 'r1', step: 'ovs-convert', type: 'step' })).toBe(true);
    expect(matches(event, { host: 'h2' })).toBe(false);
    expect(matches(event, { since: new Date('2025-06-01T10:00:01Z') })).toBe(false);
  });

  it('summarizes a result with its number of changes, and shows the diff', () => {
    expect(summarize(event)).toBe('converted vmbr0 (1 change)');
    const shown = renderEvent({ event, record });
    expect(shown).toContain('chain     refit.audit.host.h1 #4 (stream seq 17');
    expect(shown).toContain('bridge.type: linux → ovs');
  });
});
