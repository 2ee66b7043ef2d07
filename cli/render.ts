import { HOST_FATES, hostFate, type HostFate, type RolloutStatus } from '../schemas/rollout.js';
import { tableLines } from './table.js';
import { safeLines, terminalSafe } from './terminal-text.js';

const OVER = new Set(['completed', 'failed', 'cancelled']);

const DONE = new Set(['succeeded', 'failed', 'rolled-back', 'held', 'skipped']);

export function bar(done: number, total: number, width = 24): string {
  const filled = total === 0 ? width : Math.round((done / total) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** The human form of a rollout's status: counts, budget, one bar per wave, running hosts with their step. */
export function renderStatus(s: RolloutStatus): string {
  const lines: string[] = [];
  lines.push(
    `rollout ${s.id}  ${s.state.toUpperCase()}  (plan ${s.name}, started by ${s.startedBy} at ${s.startedAt})`,
  );
  const counts = Object.entries(s.counts)
    .filter(([, n]) => n > 0)
    .map(([state, n]) => `${n} ${state}`)
    .join(', ');
  lines.push(
    `hosts: ${s.hosts.length} (${counts || 'none'})   failure budget: ${s.failureBudget.failed}/${s.failureBudget.maxFailedHosts} used`,
  );
  if (s.missingHosts.length > 0) lines.push(`not present: ${s.missingHosts.join(', ')}`);
  for (const e of s.excludedHosts) lines.push(`left out: ${e.hostId} (${e.reason})`);
  if (s.paused) lines.push(`PAUSED by ${s.paused.by}: ${s.paused.reason} (refit rollout resume|cancel ${s.id})`);
  if (s.pendingApproval)
    lines.push(
      `waiting for approval (${s.pendingApproval.gate}) since ${s.pendingApproval.since}: refit rollout approve ${s.id}`,
    );
  for (const a of s.approvals) lines.push(`approved ${a.gate} by ${a.by} at ${a.at}`);
  if (s.nextWindowAt) lines.push(`next maintenance window opens ${s.nextWindowAt}`);
  if (s.cancelled)
    lines.push(
      `cancelled by ${s.cancelled.by} at ${s.cancelled.at}${s.cancelled.reason ? `: ${s.cancelled.reason}` : ''}`,
    );
  const hostsOf = new Map(s.hosts.map((h) => [h.hostId, h]));
  for (const wave of s.waves) {
    const done = wave.hosts.filter((h) => DONE.has(hostsOf.get(h)?.state ?? 'pending')).length;
    const label = wave.index === 0 && s.waves.length > 1 ? 'canary ' : `wave ${wave.index}`.padEnd(7);
    lines.push(`${label} ${bar(done, wave.hosts.length)} ${done}/${wave.hosts.length}`);
  }
  const shown = s.hosts.filter((h) => !((h.state === 'pending' && !h.waitingFor) || h.state === 'succeeded'));
  const rows = shown.map((h) => {
    const note = h.error ?? h.waitingFor;
    return [h.hostId, h.state, `${h.step ?? ''}${note ? `  (${note})` : ''}`];
  });
  lines.push(...tableLines(rows, { indent: '  ' }));
  const offlineAtStart = s.hosts.filter((h) => h.offline?.atResolution && h.state === 'pending');
  if (offlineAtStart.length > 0)
    lines.push(
      ...wrapped(
        'offline when targets resolved, looked for at their turn:',
        offlineAtStart.map((h) => h.hostId),
      ),
    );
  if (OVER.has(s.state)) lines.push(...fateLines(s));
  if (s.message) lines.push(s.message);
  return safeLines(lines);
}

/** Every target host grouped by what became of it, so none can pass unseen; names wrapped to 80 columns. */
export function fateLines(s: RolloutStatus): string[] {
  const byFate = new Map<HostFate, string[]>();
  for (const h of s.hosts) {
    const fate = h.fate ?? hostFate(h);
    byFate.set(fate, [...(byFate.get(fate) ?? []), h.hostId]);
  }
  const lines = ['what became of each host:'];
  for (const fate of HOST_FATES) {
    const hosts = byFate.get(fate);
    if (hosts) lines.push(...wrapped(`  ${fate} (${hosts.length}):`, hosts));
  }
  if (s.missingHosts.length > 0) lines.push(...wrapped(`  not present (${s.missingHosts.length}):`, s.missingHosts));
  return lines;
}

/** `head` then the words, continued on indented lines within `width` columns. */
export function wrapped(head: string, words: readonly string[], width = 80): string[] {
  const indent = ' '.repeat(Math.min(head.length - head.trimStart().length + 4, 8));
  const lines: string[] = [];
  let line = head;
  for (const w of words) {
    if (line.length + 1 + w.length > width) {
      lines.push(line);
      line = `${indent}${w}`;
    } else line = `${line} ${w}`;
  }
  lines.push(line);
  return lines;
}

/** The last line of a finished rollout, as the demo and scripts read it. */
export function summaryLine(s: RolloutStatus): string {
  const ok = s.counts.succeeded;
  const total = s.hosts.length + s.missingHosts.length;
  const offline = s.hosts
    .map(hostFate)
    .filter((f) => f === 'skipped-offline' || f === 'waited-then-failed' || f === 'failed-offline');
  const skipped = offline.filter((f) => f === 'skipped-offline').length;
  const failed = offline.length - skipped;
  const notes = [
    ...(skipped > 0 ? [`${skipped} skipped offline`] : []),
    ...(failed > 0 ? [`${failed} failed offline`] : []),
  ];
  return terminalSafe(
    `rollout ${s.id} ${s.state}: ${ok}/${total} hosts succeeded${notes.length > 0 ? ` (${notes.join(', ')})` : ''}`,
  );
}
