/**
 * The window arithmetic of commit 85aad7a, frozen: wrong around DST transitions (a time in the
 * spring-forward gap could come out an hour early, a day could be skipped), kept only so that a
 * rollout that already decided with it replays (`replayableStartDecision` in windows.ts). Delete it,
 * and deprecate the `dst-correct-windows` patch, once no rollout started before that patch runs.
 * Do not fix anything here: its answers must stay what they were.
 */
import type { MaintenanceWindow, StartDecision, WeeklyWindow, Weekday } from './windows.js';

interface Span {
  start: number;
  end: number;
}

const DAY = 86_400_000;

function minutesOf(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}

function wallClock(
  epoch: number,
  timeZone: string,
): { y: number; mo: number; d: number; h: number; mi: number; wd: Weekday } {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    weekday: 'short',
  }).formatToParts(new Date(epoch));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '0';
  return {
    y: Number(get('year')),
    mo: Number(get('month')),
    d: Number(get('day')),
    h: Number(get('hour')),
    mi: Number(get('minute')),
    wd: get('weekday').toLowerCase().slice(0, 3) as Weekday,
  };
}

function zonedTime(y: number, mo: number, d: number, minutes: number, timeZone: string): number {
  const naive = Date.UTC(y, mo - 1, d, 0, minutes);
  let guess = naive;
  for (let i = 0; i < 3; i++) {
    const w = wallClock(guess, timeZone);
    const shown = Date.UTC(w.y, w.mo - 1, w.d, w.h, w.mi);
    const drift = shown - naive;
    if (drift === 0) break;
    guess -= drift;
  }
  return guess;
}

function weeklySpans(w: WeeklyWindow, from: number): Span[] {
  const spans: Span[] = [];
  const startMin = minutesOf(w.start);
  let endMin = minutesOf(w.end);
  if (endMin <= startMin) endMin += 24 * 60;
  for (let k = -1; k <= 8; k++) {
    const day = wallClock(from + k * DAY, w.timeZone);
    if (!w.days.includes(day.wd)) continue;
    const start = zonedTime(day.y, day.mo, day.d, startMin, w.timeZone);
    const end = zonedTime(day.y, day.mo, day.d, endMin, w.timeZone);
    spans.push({ start, end });
  }
  return spans;
}

function intervalSpans(w: { every: number; open: number; offset: number }, from: number): Span[] {
  const k = Math.floor((from - w.offset) / w.every);
  return [k - 1, k, k + 1].map((i) => ({ start: w.offset + i * w.every, end: w.offset + i * w.every + w.open }));
}

function spansAround(windows: readonly MaintenanceWindow[], from: number): Span[] {
  return windows
    .flatMap((w) => ('every' in w ? intervalSpans(w, from) : weeklySpans(w, from)))
    .sort((a, b) => a.start - b.start);
}

/** `startDecision` as it answered before DST-correct windows. */
export function startDecisionBeforeDstFix(
  windows: readonly MaintenanceWindow[],
  now: number,
  hostMs: number,
): StartDecision {
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
