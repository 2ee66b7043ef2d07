/**
 * Maintenance windows, pure: given the time, when may a host start? Runs inside the workflow
 * sandbox. Zone rules come from Intl through temporal-polyfill, so every replay on the same
 * Node/ICU computes the same answer (docs/decisions/0008-time-zones.md).
 */
import { Temporal } from 'temporal-polyfill';
import { startDecisionBeforeDstFix } from './windows-legacy.js';

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/**
 * Recurring weekly window in a time zone, e.g. Saturdays 02:00–06:00 Europe/Berlin: open while the
 * zone's clock shows a time from `start` to `end` on one of `days` (an `end` at or before `start`
 * is on the next day). Wall times read as `zonedTime` reads them.
 */
export interface WeeklyWindow {
  days: Weekday[];
  start: string;
  end: string;
  timeZone: string;
}
/** A window every `every` ms, open for `open` ms, counted from the Unix epoch plus `offset`. */
export interface IntervalWindow {
  every: number;
  open: number;
  offset: number;
}
export type MaintenanceWindow = WeeklyWindow | IntervalWindow;

interface Span {
  start: number;
  end: number;
}

const DAY = 86_400_000;

function minutesOf(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}

/** Temporal's dayOfWeek runs 1 (Monday) to 7 (Sunday). */
function weekdayOf(date: Temporal.PlainDate): Weekday {
  return WEEKDAYS[date.dayOfWeek % 7] ?? 'sun';
}

/** `minutes` after midnight starting `date` on the zone's clock; see `zonedTime`. */
function wallTime(date: Temporal.PlainDate, minutes: number, timeZone: string): number {
  const wall = date.toPlainDateTime().add({ minutes });
  const first = wall.toZonedDateTime(timeZone, { disambiguation: 'earlier' });
  if (Temporal.PlainDateTime.compare(first.toPlainDateTime(), wall) === 0) return first.epochMilliseconds;
  // The clock skips this time. 'earlier' read it with the offset before the gap, which lands
  // before the jump; the jump is the first instant at which the clock is past the wall time.
  const jump = first.getTimeZoneTransition('next');
  if (!jump) throw new RangeError(`${timeZone} skips ${wall.toString()} but has no transition after it`);
  return jump.epochMilliseconds;
}

/**
 * The instant at which a time zone's clock shows a wall time, `minutes` after midnight starting
 * the given day (past 24:00 is the next day). A time the clock skips (the spring-forward gap) is
 * the first instant after it, where the clock jumps: 02:30 on a day Berlin goes from 02:00 to
 * 03:00 is 03:00. A time the clock shows twice (fall-back) is its first occurrence.
 */
export function zonedTime(y: number, mo: number, d: number, minutes: number, timeZone: string): number {
  return wallTime(new Temporal.PlainDate(y, mo, d), minutes, timeZone);
}

/** Windows of one weekly rule on the zone's calendar days from the day before `from` to 8 days after. */
function weeklySpans(w: WeeklyWindow, from: number): Span[] {
  const spans: Span[] = [];
  const startMin = minutesOf(w.start);
  let endMin = minutesOf(w.end);
  if (endMin <= startMin) endMin += 24 * 60; // crosses midnight
  const today = Temporal.Instant.fromEpochMilliseconds(from).toZonedDateTimeISO(w.timeZone).toPlainDate();
  for (let k = -1; k <= 8; k++) {
    const day = today.add({ days: k });
    if (!w.days.includes(weekdayOf(day))) continue;
    spans.push({ start: wallTime(day, startMin, w.timeZone), end: wallTime(day, endMin, w.timeZone) });
  }
  return spans;
}

function intervalSpans(w: IntervalWindow, from: number): Span[] {
  const k = Math.floor((from - w.offset) / w.every);
  return [k - 1, k, k + 1].map((i) => ({ start: w.offset + i * w.every, end: w.offset + i * w.every + w.open }));
}

function spansAround(windows: readonly MaintenanceWindow[], from: number): Span[] {
  return windows
    .flatMap((w) => ('every' in w ? intervalSpans(w, from) : weeklySpans(w, from)))
    .sort((a, b) => a.start - b.start);
}

export type StartDecision =
  { start: true; closesAt: number | null } | { start: false; waitUntil: number; reason: string };

/**
 * May a host that needs `hostMs` start at `now`? Only inside a window it fits into before the
 * window closes. With no windows, always. Otherwise, when the next window it fits into opens.
 */
export function startDecision(windows: readonly MaintenanceWindow[], now: number, hostMs: number): StartDecision {
  if (windows.length === 0) return { start: true, closesAt: null };
  let from = now;
  for (let round = 0; round < 60; round++) {
    const spans = spansAround(windows, from);
    const inside = spans.filter((s) => s.start <= now && now < s.end);
    const fits = inside.find((s) => s.end - now >= hostMs);
    if (round === 0 && fits) return { start: true, closesAt: Math.max(...inside.map((s) => s.end)) };
    const next = spans.find((s) => s.start > now && s.end - s.start >= hostMs);
    if (next) {
      return {
        start: false,
        waitUntil: next.start,
        reason:
          inside.length > 0 ? 'the host would not finish before the window closes' : 'outside the maintenance windows',
      };
    }
    from += 7 * DAY;
  }
  return { start: false, waitUntil: now + 7 * DAY, reason: 'no window is long enough for a host' };
}

function sameDecision(a: StartDecision, b: StartDecision): boolean {
  if (a.start && b.start) return a.closesAt === b.closesAt;
  if (!a.start && !b.start) return a.waitUntil === b.waitUntil && a.reason === b.reason;
  return false;
}

/**
 * `startDecision` for a workflow whose history may hold a decision of the code before DST-correct
 * windows: where the two answers differ, the new one only if `corrected()` allows it. The workflow
 * passes Temporal's `patched`, which says no while replaying a history made before the patch, and
 * is asked only when the answers differ, so the patch marker lands only in rollouts it changed.
 */
export function replayableStartDecision(
  windows: readonly MaintenanceWindow[],
  now: number,
  hostMs: number,
  corrected: () => boolean,
): StartDecision {
  const decision = startDecision(windows, now, hostMs);
  if (windows.every((w) => 'every' in w)) return decision;
  const before = startDecisionBeforeDstFix(windows, now, hostMs);
  return sameDecision(decision, before) || corrected() ? decision : before;
}

/** Longest single window, for plan validation: a host that never fits would wait forever. */
export function longestWindowMs(windows: readonly MaintenanceWindow[]): number {
  return Math.max(0, ...spansAround(windows, Date.UTC(2026, 0, 5)).map((s) => s.end - s.start));
}
