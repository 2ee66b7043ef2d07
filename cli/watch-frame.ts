import type { RolloutStatus } from '../schemas/rollout.js';

/** Code points a terminal shows two columns wide (East Asian wide and fullwidth forms, emoji). */
const WIDE =
  /[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1faff}\u{20000}-\u{3fffd}]/u;

/** The first `width` columns of a (terminal-safe) line, with `…` where it was cut. */
export function clipLine(line: string, width: number): string {
  if (width <= 0) return '';
  let used = 0;
  let out = '';
  const chars = [...line];
  for (const [i, ch] of chars.entries()) {
    const w = WIDE.test(ch) ? 2 : 1;
    const rest = chars.length - i;
    // Keep a column for the ellipsis unless everything left fits.
    if (used + w > width || (used + w === width && rest > 1)) return `${out}…`;
    out += ch;
    used += w;
  }
  return out;
}

/**
 * A frame of `refit rollout watch` that fits a terminal of `rows` × `columns`: no line wraps, and
 * at most `rows - 1` lines (the last says how many were left out), so a redraw never scrolls.
 */
export function fitFrame(text: string, rows: number, columns: number): string[] {
  const width = Math.max(1, columns - 1);
  const lines = text.split('\n').map((l) => clipLine(l, width));
  const room = Math.max(1, rows - 1);
  if (lines.length <= room) return lines;
  const kept = lines.slice(0, room - 1);
  kept.push(clipLine(`… ${lines.length - kept.length} more lines (a taller terminal, or refit rollout status)`, width));
  return kept;
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/**
 * The estimated time left, from how long the hosts that finished took (`hostMs`, measured by
 * Temporal: each host workflow's start to close, the sum of its steps) and how many run at once
 * now. Says why there is none: nothing measured yet, paused, waiting for an approval or a window.
 */
export function etaLine(s: RolloutStatus, hostMs: readonly number[], now: number): string | undefined {
  if (s.state === 'completed' || s.state === 'failed' || s.state === 'cancelled') return undefined;
  const left = s.hosts.filter((h) => h.state === 'pending' || h.state === 'running');
  if (left.length === 0) return undefined;
  if (s.paused) return 'ETA: none while paused';
  if (s.pendingApproval) return 'ETA: none while waiting for an approval';
  if (hostMs.length === 0) return `ETA: measuring (no host has finished yet; ${left.length} to go)`;
  const mean = hostMs.reduce((a, b) => a + b, 0) / hostMs.length;
  const running = left.filter((h) => h.state === 'running').length;
  const pending = left.length - running;
  // A running host is about half done; hosts go as many at a time as run now.
  const ms = ((pending + running / 2) * mean) / Math.max(1, running);
  const at = new Date(Math.round((now + ms) / 60_000) * 60_000).toISOString().slice(11, 16);
  const window = s.nextWindowAt ? `, once the window opens at ${s.nextWindowAt}` : '';
  return `ETA: about ${duration(ms)} (${at} UTC${window}; ${duration(mean)} a host over the last ${hostMs.length} done, ${Math.max(1, running)} at a time)`;
}
