import { describe, expect, it } from 'vitest';
import { controllerConfirmation } from './confirm.js';

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
