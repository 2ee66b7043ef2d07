import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { zonedTime, type WeeklyWindow } from '../schemas/windows.js';
import { windowAnswers, type WindowQuestion } from './fixtures/windows-workflow/index.js';

const WORKFLOWS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'windows-workflow', 'index.ts');
const HOUR = 3_600_000;

/** Days with a transition (and Kolkata, which has none), with a wall time in the gap or the repeated hour. */
const days: [string, [number, number, number], number][] = [
  ['Europe/Berlin', [2026, 3, 29], 150],
  ['Europe/Berlin', [2026, 10, 25], 150],
  ['America/New_York', [2026, 3, 8], 120],
  ['Australia/Sydney', [2026, 10, 4], 150],
  ['Australia/Lord_Howe', [2026, 10, 4], 135],
  ['Australia/Lord_Howe', [2026, 4, 5], 105],
  ['Asia/Kolkata', [2026, 3, 29], 120],
];
const questions: WindowQuestion[] = days.flatMap(([timeZone, date, minutes]) => {
  const windows: WeeklyWindow[] = [{ days: ['sun'], start: '02:00', end: '06:00', timeZone }];
  const midnight = zonedTime(...date, 0, timeZone);
  return [
    { kind: 'zonedTime', date, minutes, timeZone },
    ...[midnight + HOUR, midnight + 150 * 60_000, midnight + 4 * HOUR].map((now): WindowQuestion => ({
      kind: 'startDecision',
      windows,
      now,
      hostMs: HOUR,
    })),
  ];
});

describe('the window arithmetic inside the Temporal workflow sandbox', () => {
  let connection: NativeConnection;
  let client: Client;
  beforeAll(async () => {
    Runtime.install({ logger: new DefaultLogger('WARN') });
    const { temporalAddress } = inject('stack');
    connection = await NativeConnection.connect({ address: temporalAddress });
    client = new Client({ connection: await Connection.connect({ address: temporalAddress }) });
  });
  afterAll(async () => {
    await client?.connection.close();
    await connection?.close();
  });

  it('gives the answers it gives outside, around the DST transitions', async () => {
    const taskQueue = `windows-${randomBytes(4).toString('hex')}`;
    const worker = await Worker.create({ connection, taskQueue, workflowsPath: WORKFLOWS });
    const inside = await worker.runUntil(
      client.workflow.execute<typeof windowAnswers>('windowAnswers', {
        taskQueue,
        workflowId: taskQueue,
        args: [questions],
      }),
    );
    expect(inside).toEqual(await windowAnswers(questions));
  });
});
