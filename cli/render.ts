import type { RolloutStatus } from '../schemas/rollout.js';
import { tableLines } from './table.js';
import { safeLines, terminalSafe } from './terminal-text.js';

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
  if (s.message) lines.push(s.message);
  return safeLines(lines);
}

/** The last line of a finished rollout, as the demo and scripts read it. */
export function summaryLine(s: RolloutStatus): string {
  const ok = s.counts.succeeded;
  const total = s.hosts.length + s.missingHosts.length;
  return terminalSafe(`rollout ${s.id} ${s.state}: ${ok}/${total} hosts succeeded`);
}
