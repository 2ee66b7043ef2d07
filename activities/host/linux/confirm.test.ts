import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  clearPendingConfirmation,
  controllerConfirmation,
  judgeEarlierConfirmation,
  readEarlierConfirmation,
  recordPendingConfirmation,
  type PendingConfirmation,
} from './confirm.js';

const never = new Promise<void>(() => undefined);

describe("the controller's confirmation", () => {
  it('confirms as soon as the controller says so, before the deadline', async () => {
    const started = Date.now();
    const confirmed = new Promise<void>((resolve) => setTimeout(resolve, 50));
    const signal = new AbortController().signal;
    expect(await controllerConfirmation({ confirmed, deadline: started + 10_000, signal })).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('does not confirm when the word comes after the deadline', async () => {
    const started = Date.now();
    const late = new Promise<void>((resolve) => setTimeout(resolve, 400));
    const signal = new AbortController().signal;
    expect(await controllerConfirmation({ confirmed: late, deadline: started + 100, signal })).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(95);
    expect(Date.now() - started).toBeLessThan(400);
  });

  it('does not confirm without a host worker to hand over the word', async () => {
    const signal = new AbortController().signal;
    expect(await controllerConfirmation({ confirmed: undefined, deadline: Date.now() + 50, signal })).toBe(false);
  });

  it('stops waiting when the step is stopped', async () => {
    const abort = new AbortController();
    const started = Date.now();
    setTimeout(() => abort.abort(), 50);
    const answer = controllerConfirmation({ confirmed: never, deadline: started + 10_000, signal: abort.signal });
    expect(await answer).toBe(false);
    expect(Date.now() - started).toBeLessThan(5_000);
    const stopped = AbortSignal.abort();
    expect(await controllerConfirmation({ confirmed: Promise.resolve(), deadline: started, signal: stopped })).toBe(
      false,
    );
  });
});

describe('the confirmation deadline an earlier start left behind', () => {
  const now = Date.parse('2026-11-30T12:00:00.000Z');
  const record = (over: Partial<PendingConfirmation> = {}) =>
    JSON.stringify({
      bridge: 'vmbr0',
      deadline: '2026-11-30T12:00:30.000Z',
      confirmWithinMs: 60_000,
      switchStartedAt: '2026-11-30T11:59:30.000Z',
      ...over,
    });

  it('is nothing to wait for when no start left a record', () => {
    expect(judgeEarlierConfirmation(undefined, 'vmbr0', now)).toEqual({ kind: 'none' });
  });

  it('is waited for until the same deadline while that is ahead', () => {
    expect(judgeEarlierConfirmation(record(), 'vmbr0', now)).toMatchObject({
      kind: 'waiting',
      deadline: Date.parse('2026-11-30T12:00:30.000Z'),
    });
  });

  it('reverts at once once the deadline has passed', () => {
    expect(judgeEarlierConfirmation(record({ deadline: '2026-11-30T12:00:00.000Z' }), 'vmbr0', now)).toEqual({
      kind: 'revert',
      reason:
        'the controller did not confirm by 2026-11-30T12:00:00.000Z, the deadline set before the host worker stopped',
    });
  });

  it('takes a record it cannot read as unconfirmed, and says which file and why', () => {
    const file = '/var/lib/refit/ovs-convert-vmbr0.pending.json';
    for (const [text, why] of [
      ['{"bridge": "vmbr0", "dead', 'not JSON'],
      ['{}', 'bridge'],
      [record({ deadline: 'tomorrow' }), 'deadline'],
      [record({ bridge: 'vmbr1' }), 'it names vmbr1, not vmbr0'],
      [record({ deadline: '2026-11-30T13:00:00.000Z' }), 'further away than 60000 ms'],
    ] as const) {
      const judged = judgeEarlierConfirmation(text, 'vmbr0', now, file);
      expect(judged.kind).toBe('revert');
      expect(judged.kind === 'revert' && judged.reason).toContain(`the confirmation record ${file} is unreadable (`);
      expect(judged.kind === 'revert' && judged.reason).toContain(why);
    }
  });
});

describe('the pending confirmation record on disk', () => {
  const stateDir = () => mkdtempSync(path.join(os.tmpdir(), 'refit-confirm-'));

  it('is written whole, read back as waiting, and gone once cleared', async () => {
    const dir = stateDir();
    try {
      const deadline = Date.now() + 30_000;
      await recordPendingConfirmation(dir, {
        bridge: 'vmbr0',
        deadline: new Date(deadline).toISOString(),
        confirmWithinMs: 30_000,
        switchStartedAt: new Date().toISOString(),
      });
      expect(readdirSync(dir)).toEqual(['ovs-convert-vmbr0.pending.json']);
      expect(await readEarlierConfirmation(dir, 'vmbr0', Date.now())).toMatchObject({ kind: 'waiting', deadline });
      expect(await readEarlierConfirmation(dir, 'vmbr1', Date.now())).toEqual({ kind: 'none' });
      await clearPendingConfirmation(dir, 'vmbr0');
      expect(readdirSync(dir)).toEqual([]);
      expect(await readEarlierConfirmation(dir, 'vmbr0', Date.now())).toEqual({ kind: 'none' });
      await clearPendingConfirmation(dir, 'vmbr0');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
