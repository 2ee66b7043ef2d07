import type { JetStreamClient } from '@nats-io/jetstream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { resultKey, type CommandStatus } from '../../schemas/command.js';
import { BUCKETS } from '../../schemas/names.js';
import { StatusReporter } from './status-reporter.js';

const log = pino({ level: 'silent' });
const base = { commandId: 'wf/run/1', hostId: 'h1', kind: 'verify', mode: 'apply', starts: 1, bootId: 'b1' } as const;

/** The statuses as the results bucket would store them, in order (the JetStream publish the host makes). */
function bucket() {
  const written: CommandStatus[] = [];
  const js = {
    publish: (subject: string, data: string) => {
      expect(subject).toBe(`$KV.${BUCKETS.results}.${resultKey('h1', 'wf/run/1')}`);
      written.push(JSON.parse(data) as CommandStatus);
      return Promise.resolve({ seq: written.length, duplicate: false, stream: 'x' });
    },
  } as unknown as JetStreamClient;
  return { js, written };
}

describe('the status reporter of one command', () => {
  it('writes a step shorter than the hold as one running status and its terminal status, which carries the last progress', async () => {
    const { js, written } = bucket();
    const r = new StatusReporter(js, base, log, 1_000);
    await r.running({ pct: 0, message: 'started' });
    r.progress(40, 'half way');
    r.progress(100, 'done');
    await r.finish(
      { state: 'succeeded', outcome: { changed: false, summary: 'ok', before: {}, after: {} } },
      AbortSignal.timeout(1_000),
    );
    expect(written.map((s) => s.state)).toEqual(['running', 'succeeded']);
    expect(written[1]?.progress).toEqual({ pct: 100, message: 'done' });
    await sleep(1_100);
    expect(written).toHaveLength(2);
  });

  it('writes the progress of a longer step once the hold is over, coalesced to the latest', async () => {
    const { js, written } = bucket();
    const r = new StatusReporter(js, base, log, 100);
    await r.running({ pct: 0, message: 'started' });
    r.progress(10, 'a');
    r.progress(20, 'b');
    await sleep(300);
    r.progress(30, 'c');
    await r.finish({ state: 'failed', error: { type: 'X', message: 'no' } }, AbortSignal.timeout(1_000));
    expect(written.map((s) => [s.state, s.progress?.message])).toEqual([
      ['running', 'started'],
      ['running', 'b'],
      ['running', 'c'],
      ['failed', 'c'],
    ]);
  });

  it('writes a progress that waits for the controller at once', async () => {
    const { js, written } = bucket();
    const r = new StatusReporter(js, base, log, 10_000);
    await r.running({ pct: 0, message: 'started' });
    r.progress(50, 'switched; waiting for the controller', { awaitingConfirmation: true });
    await sleep(50);
    expect(written.at(-1)?.progress).toEqual({
      pct: 50,
      message: 'switched; waiting for the controller',
      awaitingConfirmation: true,
    });
    r.abandon();
  });
});
