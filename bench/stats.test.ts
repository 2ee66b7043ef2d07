import { describe, expect, it } from 'vitest';
import { activitiesOf } from './dispatch.js';
import { percentiles } from './stats.js';

describe('percentiles', () => {
  it('takes the nearest rank, so p99 of a hundred samples is the 99th', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentiles(samples)).toMatchObject({ n: 100, p50: 50, p90: 90, p99: 99, mean: 50.5 });
  });

  it('has nothing to say about no samples', () => {
    expect(percentiles([]).p50).toBeNaN();
  });
});

describe('activitiesOf', () => {
  const at = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });
  it('pairs each completed activity with its scheduled and started events by event id', () => {
    const events = [
      {
        eventId: 5,
        eventTime: at(1_000),
        activityTaskScheduledEventAttributes: { activityType: { name: 'noopStep' }, activityId: '1' },
      },
      { eventId: 6, eventTime: at(1_004), activityTaskStartedEventAttributes: { scheduledEventId: 5 } },
      {
        eventId: 7,
        eventTime: at(1_009),
        activityTaskCompletedEventAttributes: { scheduledEventId: 5, startedEventId: 6 },
      },
      {
        eventId: 11,
        eventTime: at(2_000),
        activityTaskScheduledEventAttributes: { activityType: { name: 'dispatchStep' }, activityId: '2' },
      },
    ];
    expect(activitiesOf(events)).toEqual([
      { type: 'noopStep', activityId: '1', scheduled: 1_000, started: 1_004, completed: 1_009 },
    ]);
  });
});
