import { describe, expect, it } from 'vitest';
import { PollTimeoutError, until } from './poll.js';

describe('until', () => {
  it('returns the first answer that is neither undefined nor false', async () => {
    let asked = 0;
    const answer = await until(() => (++asked < 3 ? undefined : `after ${asked}`), {
      what: 'the third ask',
      timeoutMs: 1_000,
      intervalMs: 1,
    });
    expect(answer).toBe('after 3');
  });

  it('takes a boolean check, and false means not yet', async () => {
    let ready = false;
    setTimeout(() => (ready = true), 20);
    await expect(until(() => ready, { what: 'ready', timeoutMs: 1_000, intervalMs: 5 })).resolves.toBe(true);
  });

  it('asks once more at the deadline, then says what it waited for, as it stands then', async () => {
    let asked = 0;
    const missing = ['h1', 'h2'];
    const waiting = until(
      () => {
        asked++;
        return false;
      },
      { what: () => `hosts ${missing.join(', ')}`, timeoutMs: 100, intervalMs: 30 },
    );
    await expect(waiting).rejects.toThrow(new PollTimeoutError('timed out after 0.1 s waiting for hosts h1, h2'));
    expect(asked).toBeGreaterThanOrEqual(3);
  });

  it('stops at once when the probe throws', async () => {
    let asked = 0;
    const failing = until(
      () => {
        asked++;
        throw new Error('server gone');
      },
      { what: 'never', timeoutMs: 1_000 },
    );
    await expect(failing).rejects.toThrow('server gone');
    expect(asked).toBe(1);
  });
});
