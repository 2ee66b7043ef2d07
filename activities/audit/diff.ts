import { z } from 'zod';
import { StateChange, type StoredAuditEvent } from '../../schemas/audit.js';
import { canonicalJson } from './hash.js';

/** Past this many lines on either side, a text is shown whole as removed and added, not diffed. */
const MAX_DIFF_LINES = 2_000;
const CONTEXT = 2;

/**
 * What changed between a step's before and after state, leaf by leaf (`bridge.type: linux → ovs`).
 * Multi-line text (a config file, `ovs-vsctl show`) is given as a line diff; arrays are compared whole.
 */
export function diffStates(before: unknown, after: unknown, path = ''): StateChange[] {
  if (isPlainObject(before) && isPlainObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => diffStates(before[k], after[k], path === '' ? k : `${path}.${k}`));
  }
  if (sameJson(before, after)) return [];
  const change: StateChange = { path: path === '' ? '(state)' : path };
  if (typeof before === 'string' && typeof after === 'string' && (before.includes('\n') || after.includes('\n'))) {
    change.lines = diffLines(before, after);
    return [change];
  }
  if (before !== undefined) change.before = before;
  if (after !== undefined) change.after = after;
  return [change];
}

/** A unified-style line diff: `-` removed, `+` added, ` ` context, `@@` between distant hunks. */
export function diffLines(before: string, after: string): string[] {
  const a = before.split('\n');
  const b = after.split('\n');
  if (a.length > MAX_DIFF_LINES || b.length > MAX_DIFF_LINES)
    return [...a.map((l) => `-${l}`), ...b.map((l) => `+${l}`)];
  const ops = lcsOps(a, b);
  const keep = ops.map(
    (op, i) => op[0] !== ' ' || ops.slice(Math.max(0, i - CONTEXT), i + CONTEXT + 1).some((o) => o[0] !== ' '),
  );
  const out: string[] = [];
  ops.forEach((op, i) => {
    if (keep[i]) out.push(op);
    else if (keep[i - 1] === true && i > 0) out.push('@@');
  });
  if (out.at(-1) === '@@') out.pop();
  return out;
}

function lcsOps(a: string[], b: string[]): string[] {
  const n = a.length;
  const m = b.length;
  const table = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    const row = table[i] as Uint32Array;
    const next = table[i + 1] as Uint32Array;
    for (let j = m - 1; j >= 0; j--)
      row[j] = a[i] === b[j] ? (next[j + 1] as number) + 1 : Math.max(next[j] as number, row[j + 1] as number);
  }
  const ops: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      ops.push(` ${a[i]}`);
      i++;
      j++;
    } else if (j < m && (i === n || (table[i + 1]?.[j] ?? 0) < (table[i]?.[j + 1] ?? 0))) {
      ops.push(`+${b[j]}`);
      j++;
    } else {
      ops.push(`-${a[i]}`);
      i++;
    }
  }
  return ops;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function sameJson(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/** The diff as the operator reads it, one line each. */
export function renderChanges(changes: readonly StateChange[]): string[] {
  return changes.flatMap((c) => {
    if (c.lines !== undefined) return [`${c.path}:`, ...c.lines.map((l) => `    ${l}`)];
    const show = (v: unknown) => (v === undefined ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v));
    return [`${c.path}: ${show(c.before)} → ${show(c.after)}`];
  });
}

/** The diff a step result carries, or one computed from its before and after. */
export function changesOf(e: StoredAuditEvent): StateChange[] {
  const stored = z.array(StateChange).safeParse(e.data.diff);
  if (stored.success) return stored.data;
  return e.data.before !== undefined || e.data.after !== undefined
    ? diffStates(e.data.before ?? {}, e.data.after ?? {})
    : [];
}
