import { describe, expect, it } from 'vitest';
import { longestWindowMs, startDecision, zonedTime, type MaintenanceWindow } from './windows.js';

const saturdayBerlin: MaintenanceWindow = { days: ['sat'], start: '02:00', end: '06:00', timeZone: 'Europe/Berlin' };
const at = (iso: string) => Date.parse(iso);
const HOUR = 3_600_000;

describe('zonedTime', () => {
  it('finds the instant a zone shows a wall time, in winter and in summer', () => {
    expect(zonedTime(2026, 11, 28, 2 * 60, 'Europe/Berlin')).toBe(at('2026-11-28T01:00:00Z'));
    expect(zonedTime(2026, 7, 4, 2 * 60, 'Europe/Berlin')).toBe(at('2026-07-04T00:00:00Z'));
  });
});

describe('startDecision', () => {
  it('lets a host start inside a window when it fits before the close', () => {
    const d = startDecision([saturdayBerlin], at('2026-11-28T01:30:00Z'), HOUR);
    expect(d).toEqual({ start: true, closesAt: at('2026-11-28T05:00:00Z') });
  });

  it('holds a host that would not finish before the window closes until the next window', () => {
    const d = startDecision([saturdayBerlin], at('2026-11-28T04:30:00Z'), HOUR);
    expect(d).toMatchObject({
      start: false,
      waitUntil: at('2026-12-05T01:00:00Z'),
      reason: 'the host would not finish before the window closes',
    });
  });

  it('waits outside a window until the next one opens', () => {
    const d = startDecision([saturdayBerlin], at('2026-11-25T12:00:00Z'), HOUR);
    expect(d).toMatchObject({ start: false, waitUntil: at('2026-11-28T01:00:00Z') });
  });

  it('handles windows that cross midnight', () => {
    const nightly: MaintenanceWindow = { days: ['fri'], start: '22:00', end: '02:00', timeZone: 'UTC' };
    expect(startDecision([nightly], at('2026-11-28T00:30:00Z'), HOUR)).toEqual({
      start: true,
      closesAt: at('2026-11-28T02:00:00Z'),
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
