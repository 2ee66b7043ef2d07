import { changesOf, renderChanges } from '../activities/audit/diff.js';
import type { VerifyReport } from '../activities/audit/verify.js';
import { StoredAuditEvent, type AuditRecord } from '../schemas/audit.js';
import { parseDuration } from '../schemas/common.js';
import { z } from 'zod';
import { tableLines } from './table.js';
import { safeLines } from './terminal-text.js';

/** A stored event with where it sits in the stream. */
export interface TrailEvent {
  record: AuditRecord;
  event: StoredAuditEvent;
}

export interface LogFilter {
  host?: string | undefined;
  rollout?: string | undefined;
  since?: Date | undefined;
  step?: string | undefined;
  type?: string | undefined;
}

/** The records that are audit events; the others only `verify` cares about. */
export function eventsOf(records: readonly AuditRecord[]): TrailEvent[] {
  return records.flatMap((record) => {
    const parsed = StoredAuditEvent.safeParse(record.event);
    return parsed.success ? [{ record, event: parsed.data }] : [];
  });
}

/** `--since`: a time (2025-06-01, 2025-06-01T10:00Z) or how long ago (90m, 2d). */
export function parseSince(text: string, now = new Date()): Date | undefined {
  const ago = parseDuration(text);
  if (ago !== undefined) return new Date(now.getTime() - ago);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined;
  const at = new Date(text);
  return Number.isNaN(at.getTime()) ? undefined : at;
}

export function matches(e: StoredAuditEvent, f: LogFilter): boolean {
  return (
    (f.host === undefined || e.hostId === f.host) &&
    (f.rollout === undefined || e.rolloutId === f.rollout) &&
    (f.step === undefined || e.step === f.step) &&
    (f.type === undefined || e.type === f.type || e.type.startsWith(`${f.type}.`)) &&
    (f.since === undefined || Date.parse(e.at) >= f.since.getTime())
  );
}

const Command = z.object({ argv: z.array(z.string()), exitCode: z.number(), durationMs: z.number() });
const Failure = z.object({ error: z.object({ type: z.string(), message: z.string() }) });

/** One line saying what the event was. */
export function summarize(e: StoredAuditEvent): string {
  const d = e.data;
  const command = Command.safeParse(d);
  if (e.type === 'step.command' && command.success) {
    return `$ ${command.data.argv.join(' ')} → exit ${command.data.exitCode} (${command.data.durationMs} ms)`;
  }
  const failure = Failure.safeParse(d);
  if (failure.success) return `${failure.data.error.type}: ${failure.data.error.message}`;
  if (typeof d.summary === 'string') {
    const changes = changesOf(e).length;
    return `${d.summary}${changes > 0 ? ` (${changes} change${changes === 1 ? '' : 's'})` : ''}`;
  }
  for (const key of ['reason', 'message', 'mode'] as const) if (typeof d[key] === 'string') return d[key];
  return '';
}

/** `refit audit log`: one line per event, oldest first; the first column is a hash prefix `show` accepts. */
export function renderLog(events: readonly TrailEvent[]): string {
  if (events.length === 0) return 'no audit events match';
  return tableLines(logRows(events), { header: LOG_HEADER }).join('\n');
}

export const LOG_HEADER = ['REF', 'AT', 'TYPE', 'ACTOR', 'HOST', 'STEP', 'WHAT'];

/** The cells of `refit audit log`'s rows, one row an event; `--follow` prints them as they come. */
export function logRows(events: readonly TrailEvent[]): string[][] {
  return events.map(({ event: e }) => [
    e.hash.slice(0, 12),
    e.at,
    e.type,
    e.actor,
    e.hostId ?? '-',
    e.step ?? '-',
    summarize(e),
  ]);
}

const SHOWN_ELSEWHERE = new Set([
  'before',
  'after',
  'diff',
  'argv',
  'exitCode',
  'durationMs',
  'stdout',
  'stderr',
  'summary',
]);

/** `refit audit show`: every field, the command with its output, and the diff. */
export function renderEvent({ event: e, record }: TrailEvent): string {
  const row = (k: string, v: string | undefined) => (v === undefined ? [] : [[k, v]]);
  const out = tableLines([
    ...row('event', e.eventId),
    ...row('type', e.type),
    ...row('at', e.at),
    ...row('actor', e.actor),
    ...row('host', e.hostId),
    ...row('rollout', e.rolloutId),
    ...row('workflow', e.workflowId),
    ...row('command', e.commandId),
    ...row('step', e.step),
    ...row('chain', `${e.chain} #${e.seq} (stream seq ${record.streamSeq}, stored ${record.storedAt})`),
    ...row('hash', e.hash),
    ...row('prevHash', e.prevHash ?? '(first of its chain)'),
    ...(e.links ?? []).flatMap((l) => row('links', `${l.chain} #${l.seq} ${l.hash}`)),
    ...row('summary', summarize(e) || undefined),
  ]);
  const command = Command.safeParse(e.data);
  if (command.success) {
    out.push(
      '',
      `$ ${command.data.argv.join(' ')}`,
      `exit ${command.data.exitCode} after ${command.data.durationMs} ms`,
    );
    for (const stream of ['stdout', 'stderr'] as const) {
      const text = e.data[stream];
      if (typeof text === 'string' && text.trim() !== '')
        out.push(
          `${stream}:`,
          ...text
            .trimEnd()
            .split('\n')
            .map((l) => `    ${l}`),
        );
    }
  }
  const rest = Object.entries(e.data).filter(([k]) => !SHOWN_ELSEWHERE.has(k));
  if (rest.length > 0) out.push('', 'data:', ...rest.map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`));
  const changes = changesOf(e);
  if (changes.length > 0) out.push('', 'changes:', ...renderChanges(changes).map((l) => `    ${l}`));
  else if (e.data.before !== undefined) out.push('', 'changes: none (the host was already as asked)');
  return safeLines(out);
}

/** `refit audit verify`: a verdict, then each chain's first broken link, then every problem. */
export function renderReport(report: VerifyReport, source: string): string {
  const verdict = `${source}: ${report.chains.length} chains, ${report.events} events — ${report.ok ? 'intact' : `${report.problems.length} problem${report.problems.length === 1 ? '' : 's'}`}`;
  const { signatures: sig } = report;
  const unsigned =
    sig.unsigned > 0
      ? `; ${sig.unsigned} host event${sig.unsigned === 1 ? '' : 's'} unsigned (written before hosts signed)`
      : '';
  const head = sig.checked ? [verdict, `host signatures: ${sig.verified} verified${unsigned}`] : [verdict];
  if (report.ok) return safeLines(head);
  const broken = report.chains.flatMap((c) => {
    const p = c.firstProblem;
    if (p === undefined) return [];
    const who = c.hostId !== undefined ? ` (host ${c.hostId})` : '';
    return [
      `BROKEN ${c.chain}${who}: first broken link at seq ${p.seq ?? '?'} (stream seq ${p.streamSeq ?? '?'}): ${p.kind}: ${p.message}`,
    ];
  });
  const all = tableLines(
    report.problems.map((p) => [
      p.kind,
      `${p.chain ?? '(stream)'}${p.seq !== undefined ? ` seq ${p.seq}` : ''}${p.streamSeq !== undefined ? ` (stream seq ${p.streamSeq})` : ''}: ${p.message}`,
    ]),
    { indent: '  ' },
  );
  return safeLines([...head, ...broken, 'problems:', ...all]);
}
