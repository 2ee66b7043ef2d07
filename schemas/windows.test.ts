import { describe, expect, it, vi } from 'vitest';
import {
  longestWindowMs,
  replayableStartDecision,
  startDecision,
  zonedTime,
  type MaintenanceWindow,
  type StartDecision,
  type WeeklyWindow,
} from './windows.js';

const saturdayBerlin: MaintenanceWindow = { days: ['sat'], start: '02:00', end: '06:00', timeZone: 'Europe/Berlin' };
const at = (iso: string) => Date.parse(iso);
const MINUTE = 60_000;
const HOUR = 3_600_000;

// The transitions of 2026 these cases sit on (local time):
// Europe/Berlin       Mar 29 02:00 → 03:00, Oct 25 03:00 → 02:00 (02:00–03:00 twice)
// America/New_York    Mar 8  02:00 → 03:00, Nov 1  02:00 → 01:00 (01:00–02:00 twice)
// Australia/Sydney    Oct 4  02:00 → 03:00, Apr 5  03:00 → 02:00 (02:00–03:00 twice)
// Australia/Lord_Howe Oct 4  02:00 → 02:30, Apr 5  02:00 → 01:30 (01:30–02:00 twice), a 30-minute shift
// Asia/Kolkata        none, +05:30 all year

describe('zonedTime', () => {
  const hhmm = (t: string) => Number(t.slice(0, 2)) * 60 + Number(t.slice(3));

  it.each([
    ['Europe/Berlin', '2026-11-28', '02:00', '2026-11-28T01:00Z', 'in winter'],
    ['Europe/Berlin', '2026-07-04', '02:00', '2026-07-04T00:00Z', 'in summer'],
    ['Europe/Berlin', '2026-03-29', '01:59', '2026-03-29T00:59Z', 'just before the gap'],
    ['Europe/Berlin', '2026-03-29', '02:00', '2026-03-29T01:00Z', 'at the start of the gap: 03:00 CEST'],
    ['Europe/Berlin', '2026-03-29', '02:30', '2026-03-29T01:00Z', 'inside the gap: the jump, not 03:30'],
    ['Europe/Berlin', '2026-03-29', '03:00', '2026-03-29T01:00Z', 'the first time after the gap'],
    ['Europe/Berlin', '2026-10-25', '02:30', '2026-10-25T00:30Z', 'twice: the first, in CEST'],
    ['Europe/Berlin', '2026-10-25', '03:00', '2026-10-25T02:00Z', 'after the repeated hour'],
    ['America/New_York', '2026-03-08', '02:00', '2026-03-08T07:00Z', 'at the start of the gap: 03:00 EDT'],
    ['America/New_York', '2026-03-08', '02:45', '2026-03-08T07:00Z', 'inside the gap'],
    ['America/New_York', '2026-11-01', '01:30', '2026-11-01T05:30Z', 'twice: the first, in EDT'],
    ['Australia/Sydney', '2026-10-04', '02:00', '2026-10-03T16:00Z', 'spring forward in October: 03:00 AEDT'],
    ['Australia/Sydney', '2026-10-04', '02:30', '2026-10-03T16:00Z', 'inside the October gap'],
    ['Australia/Sydney', '2026-04-05', '02:30', '2026-04-04T15:30Z', 'twice in April: the first, in AEDT'],
    ['Australia/Sydney', '2026-04-05', '03:00', '2026-04-04T17:00Z', 'after the repeated hour'],
    ['Asia/Kolkata', '2026-03-29', '02:00', '2026-03-28T20:30Z', 'no DST: +05:30 on Berlin’s gap day'],
    ['Asia/Kolkata', '2026-10-04', '02:30', '2026-10-03T21:00Z', 'no DST: +05:30 on Sydney’s gap day'],
    ['Australia/Lord_Howe', '2026-10-04', '02:00', '2026-10-03T15:30Z', 'half-hour gap: 02:30 +11:00'],
    ['Australia/Lord_Howe', '2026-10-04', '02:15', '2026-10-03T15:30Z', 'inside the half-hour gap: not 02:45'],
    ['Australia/Lord_Howe', '2026-10-04', '02:30', '2026-10-03T15:30Z', 'the first time after it'],
    ['Australia/Lord_Howe', '2026-04-05', '01:45', '2026-04-04T14:45Z', 'twice: the first, at +11:00'],
    ['Australia/Lord_Howe', '2026-04-05', '02:00', '2026-04-04T15:30Z', 'after the repeated half hour'],
  ])('%s %s %s is %s (%s)', (timeZone, date, wall, expected) => {
    const [y, mo, d] = date.split('-').map(Number) as [number, number, number];
    expect(new Date(zonedTime(y, mo, d, hhmm(wall), timeZone)).toISOString()).toBe(new Date(expected).toISOString());
  });

  it('reads minutes past 24:00 as the next day, so 24:00 on the eve of the gap is its midnight', () => {
    expect(zonedTime(2026, 3, 28, 24 * 60, 'Europe/Berlin')).toBe(at('2026-03-28T23:00Z'));
    expect(zonedTime(2026, 3, 28, 26 * 60 + 30, 'Europe/Berlin')).toBe(at('2026-03-29T01:00Z'));
  });
});

/** One day's window as a row: the rule, the moment asked, how long a host takes, and the answer. */
interface Row {
  window: WeeklyWindow;
  now: string;
  hostMs: number;
  expected: { start: true; closesAt: string } | { start: false; waitUntil: string; reason?: string };
}
const weekly = (timeZone: string, day: WeeklyWindow['days'][number], start: string, end: string): WeeklyWindow => ({
  days: [day],
  start,
  end,
  timeZone,
});
const starts = (closesAt: string): Row['expected'] => ({ start: true, closesAt });
const waits = (waitUntil: string, reason?: string): Row['expected'] => ({
  start: false,
  waitUntil,
  ...(reason ? { reason } : {}),
});
const NO_ROOM = 'the host would not finish before the window closes';
const OUTSIDE = 'outside the maintenance windows';

function expectDecision(actual: StartDecision, expected: Row['expected']): void {
  if (expected.start) {
    expect(actual).toEqual({ start: true, closesAt: at(expected.closesAt) });
    return;
  }
  expect(actual.start).toBe(false);
  if (actual.start) return;
  expect(new Date(actual.waitUntil).toISOString()).toBe(new Date(expected.waitUntil).toISOString());
  if (expected.reason) expect(actual.reason).toBe(expected.reason);
}

describe('startDecision across DST transitions', () => {
  const berlinSunday = weekly('Europe/Berlin', 'sun', '02:00', '06:00');
  const berlinRepeatedHour = weekly('Europe/Berlin', 'sun', '02:00', '03:00');
  const berlinInsideRepeatedHour = weekly('Europe/Berlin', 'sun', '02:15', '02:45');
  const berlinIntoTheGap = weekly('Europe/Berlin', 'sat', '22:00', '02:30');
  const newYorkSunday = weekly('America/New_York', 'sun', '02:00', '04:00');
  const newYorkRepeated = weekly('America/New_York', 'sun', '01:00', '01:30');
  const sydneySunday = weekly('Australia/Sydney', 'sun', '02:00', '05:00');
  const sydneyIntoTheGap = weekly('Australia/Sydney', 'sat', '23:00', '02:30');
  const sydneyRepeatedHour = weekly('Australia/Sydney', 'sun', '02:00', '03:00');
  const kolkataSunday = weekly('Asia/Kolkata', 'sun', '02:00', '06:00');
  const kolkataSundayMidnight = weekly('Asia/Kolkata', 'sun', '00:00', '01:00');
  const lordHoweSunday = weekly('Australia/Lord_Howe', 'sun', '02:00', '04:00');
  const lordHoweInGap = weekly('Australia/Lord_Howe', 'sun', '02:15', '03:00');
  const lordHoweRepeated = weekly('Australia/Lord_Howe', 'sun', '01:30', '02:00');

  it.each<[string, Row]>([
    // Europe/Berlin, spring forward on Sunday 2026-03-29
    [
      'Berlin: on the eve of the gap (Sat 23:00 CET) it waits for Sunday 03:00 CEST, not a week',
      { window: berlinSunday, now: '2026-03-28T22:00Z', hostMs: HOUR, expected: waits('2026-03-29T01:00Z', OUTSIDE) },
    ],
    [
      'Berlin: at 01:30 CET, before the clock reaches 02:00, the window is not open yet',
      { window: berlinSunday, now: '2026-03-29T00:30Z', hostMs: HOUR, expected: waits('2026-03-29T01:00Z') },
    ],
    [
      'Berlin: at 03:00 CEST the window is open and closes at 06:00 CEST',
      { window: berlinSunday, now: '2026-03-29T01:00Z', hostMs: HOUR, expected: starts('2026-03-29T04:00Z') },
    ],
    [
      'Berlin: the gap takes an hour off the window, so a 4-hour host waits for next Sunday',
      {
        window: berlinSunday,
        now: '2026-03-29T01:00Z',
        hostMs: 4 * HOUR,
        expected: waits('2026-04-05T00:00Z', NO_ROOM),
      },
    ],
    [
      'Berlin: a window crossing midnight that ends in the gap closes at the jump',
      { window: berlinIntoTheGap, now: '2026-03-28T23:30Z', hostMs: HOUR, expected: starts('2026-03-29T01:00Z') },
    ],
    [
      'Berlin: a host that would outlast the jump waits for next Saturday 22:00 CEST',
      {
        window: berlinIntoTheGap,
        now: '2026-03-28T23:30Z',
        hostMs: 2 * HOUR,
        expected: waits('2026-04-04T20:00Z', NO_ROOM),
      },
    ],
    // Europe/Berlin, fall back on Sunday 2026-10-25
    [
      'Berlin: 02:00–03:00 on the fall-back day is open through both passes of 02:xx',
      {
        window: berlinRepeatedHour,
        now: '2026-10-25T01:30Z',
        hostMs: 20 * MINUTE,
        expected: starts('2026-10-25T02:00Z'),
      },
    ],
    [
      'Berlin: so a 90-minute host fits into that hour-long window',
      {
        window: berlinRepeatedHour,
        now: '2026-10-25T00:00Z',
        hostMs: 90 * MINUTE,
        expected: starts('2026-10-25T02:00Z'),
      },
    ],
    [
      'Berlin: a window inside the repeated hour opens on the first pass',
      {
        window: berlinInsideRepeatedHour,
        now: '2026-10-25T00:20Z',
        hostMs: 10 * MINUTE,
        expected: starts('2026-10-25T00:45Z'),
      },
    ],
    [
      'Berlin: and not again on the second pass',
      {
        window: berlinInsideRepeatedHour,
        now: '2026-10-25T01:20Z',
        hostMs: 10 * MINUTE,
        expected: waits('2026-11-01T01:15Z', OUTSIDE),
      },
    ],
    // America/New_York
    [
      'New York: at 01:30 EST on the gap day it waits until 03:00 EDT',
      { window: newYorkSunday, now: '2026-03-08T06:30Z', hostMs: HOUR, expected: waits('2026-03-08T07:00Z') },
    ],
    [
      'New York: at 03:00 EDT the window is open and closes at 04:00 EDT',
      { window: newYorkSunday, now: '2026-03-08T07:00Z', hostMs: HOUR, expected: starts('2026-03-08T08:00Z') },
    ],
    [
      'New York: 01:00–01:30 opens on the first pass (EDT) only',
      { window: newYorkRepeated, now: '2026-11-01T05:10Z', hostMs: 10 * MINUTE, expected: starts('2026-11-01T05:30Z') },
    ],
    [
      'New York: at 01:10 EST, the second pass, it waits a week',
      {
        window: newYorkRepeated,
        now: '2026-11-01T06:10Z',
        hostMs: 10 * MINUTE,
        expected: waits('2026-11-08T06:00Z', OUTSIDE),
      },
    ],
    // Australia/Sydney: spring forward in October, fall back in April
    [
      'Sydney: at 01:30 AEST on the October gap day it waits until 03:00 AEDT',
      { window: sydneySunday, now: '2026-10-03T15:30Z', hostMs: HOUR, expected: waits('2026-10-03T16:00Z') },
    ],
    [
      'Sydney: a Saturday-night window ending in the gap closes at the jump',
      { window: sydneyIntoTheGap, now: '2026-10-03T14:30Z', hostMs: HOUR, expected: starts('2026-10-03T16:00Z') },
    ],
    [
      'Sydney: on the April fall-back day 02:00–03:00 is open on the second pass of 02:30',
      {
        window: sydneyRepeatedHour,
        now: '2026-04-04T16:30Z',
        hostMs: 20 * MINUTE,
        expected: starts('2026-04-04T17:00Z'),
      },
    ],
    [
      'Sydney: an ordinary Saturday-night window crosses midnight into Sunday',
      { window: sydneyIntoTheGap, now: '2026-11-07T14:30Z', hostMs: HOUR, expected: starts('2026-11-07T15:30Z') },
    ],
    // Asia/Kolkata: no DST, and a weekday that is not UTC's
    [
      'Kolkata: at 01:30 IST it waits until 02:00 IST, whatever Europe does that day',
      { window: kolkataSunday, now: '2026-03-28T20:00Z', hostMs: HOUR, expected: waits('2026-03-28T20:30Z') },
    ],
    [
      'Kolkata: Sunday 00:30 IST is Saturday in UTC, and the Sunday window is open',
      {
        window: kolkataSundayMidnight,
        now: '2026-03-28T19:00Z',
        hostMs: 10 * MINUTE,
        expected: starts('2026-03-28T19:30Z'),
      },
    ],
    [
      'Kolkata: Sunday 01:30 IST is past it: next Sunday’s midnight',
      {
        window: kolkataSundayMidnight,
        now: '2026-03-28T20:00Z',
        hostMs: 10 * MINUTE,
        expected: waits('2026-04-04T18:30Z'),
      },
    ],
    // Australia/Lord_Howe: the clock moves by 30 minutes
    [
      'Lord Howe: at 01:50 before the half-hour gap it waits until 02:30 +11:00',
      { window: lordHoweSunday, now: '2026-10-03T15:20Z', hostMs: HOUR, expected: waits('2026-10-03T15:30Z') },
    ],
    [
      'Lord Howe: a window starting inside the gap opens at the jump, not 02:45',
      { window: lordHoweInGap, now: '2026-10-03T15:20Z', hostMs: 10 * MINUTE, expected: waits('2026-10-03T15:30Z') },
    ],
    [
      'Lord Howe: and is open from the jump',
      { window: lordHoweInGap, now: '2026-10-03T15:30Z', hostMs: 10 * MINUTE, expected: starts('2026-10-03T16:00Z') },
    ],
    [
      'Lord Howe: 01:30–02:00 on the April fall-back day spans both passes, an hour',
      {
        window: lordHoweRepeated,
        now: '2026-04-04T15:10Z',
        hostMs: 10 * MINUTE,
        expected: starts('2026-04-04T15:30Z'),
      },
    ],
    [
      'Lord Howe: so a 50-minute host fits into it from its first minute',
      {
        window: lordHoweRepeated,
        now: '2026-04-04T14:30Z',
        hostMs: 50 * MINUTE,
        expected: starts('2026-04-04T15:30Z'),
      },
    ],
  ])('%s', (_name, { window, now, hostMs, expected }) => {
    expectDecision(startDecision([window], at(now), hostMs), expected);
  });

  it('does not open a window that lies wholly in the gap that day, and opens it the week after', () => {
    const inTheGap = weekly('Europe/Berlin', 'sun', '02:10', '02:50');
    expectDecision(startDecision([inTheGap], at('2026-03-29T00:30Z'), MINUTE), {
      start: false,
      waitUntil: '2026-04-05T00:10Z',
    });
  });
});

describe('startDecision', () => {
  it('lets a host start inside a window when it fits before the close', () => {
    const d = startDecision([saturdayBerlin], at('2026-11-28T01:30Z'), HOUR);
    expect(d).toEqual({ start: true, closesAt: at('2026-11-28T05:00Z') });
  });

  it('holds a host that would not finish before the window closes until the next window', () => {
    const d = startDecision([saturdayBerlin], at('2026-11-28T04:30Z'), HOUR);
    expect(d).toMatchObject({
      start: false,
      waitUntil: at('2026-12-05T01:00Z'),
      reason: NO_ROOM,
    });
  });

  it('waits outside a window until the next one opens', () => {
    const d = startDecision([saturdayBerlin], at('2026-11-25T12:00Z'), HOUR);
    expect(d).toMatchObject({ start: false, waitUntil: at('2026-11-28T01:00Z') });
  });

  it('handles windows that cross midnight', () => {
    const nightly: MaintenanceWindow = { days: ['fri'], start: '22:00', end: '02:00', timeZone: 'UTC' };
    expect(startDecision([nightly], at('2026-11-28T00:30Z'), HOUR)).toEqual({
      start: true,
      closesAt: at('2026-11-28T02:00Z'),
    });
  });

  it('repeats interval windows, for windows of seconds', () => {
    const w: MaintenanceWindow = { every: 10_000, open: 4_000, offset: 0 };
    expect(startDecision([w], 20_500, 1_000)).toEqual({ start: true, closesAt: 24_000 });
    expect(startDecision([w], 23_500, 1_000)).toMatchObject({ start: false, waitUntil: 30_000 });
  });

  it('always allows a start when the plan has no windows', () => {
    expect(startDecision([], 0, HOUR)).toEqual({ start: true, closesAt: null });
  });

  it('knows the longest window', () => {
    expect(longestWindowMs([saturdayBerlin])).toBe(4 * HOUR);
  });
});

describe('replayableStartDecision', () => {
  const berlinSunday: MaintenanceWindow = { days: ['sun'], start: '02:00', end: '06:00', timeZone: 'Europe/Berlin' };
  // 01:30 CET on the gap day: the code before the fix answered "start" here, an hour early.
  const earlyInTheGap = at('2026-03-29T00:30Z');

  it('keeps the old answer where it differs and the workflow has not taken the patch', () => {
    const corrected = vi.fn(() => false);
    expect(replayableStartDecision([berlinSunday], earlyInTheGap, HOUR, corrected)).toEqual({
      start: true,
      closesAt: at('2026-03-29T04:00Z'),
    });
    expect(corrected).toHaveBeenCalledOnce();
  });

  it('gives the corrected answer where it differs and the workflow takes the patch', () => {
    const corrected = vi.fn(() => true);
    expect(replayableStartDecision([berlinSunday], earlyInTheGap, HOUR, corrected)).toMatchObject({
      start: false,
      waitUntil: at('2026-03-29T01:00Z'),
    });
    expect(corrected).toHaveBeenCalledOnce();
  });

  it('does not ask for the patch where both answers agree', () => {
    const corrected = vi.fn(() => false);
    expect(replayableStartDecision([berlinSunday], at('2026-11-29T02:00Z'), HOUR, corrected)).toEqual(
      startDecision([berlinSunday], at('2026-11-29T02:00Z'), HOUR),
    );
    expect(replayableStartDecision([{ every: 10_000, open: 4_000, offset: 0 }], 20_500, 1_000, corrected)).toEqual({
      start: true,
      closesAt: 24_000,
    });
    expect(corrected).not.toHaveBeenCalled();
  });
});
