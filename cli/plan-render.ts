import { formatDuration } from '../schemas/common.js';
import { gib } from '../activities/controller/inventory.js';
import type { PlanPreview } from '../workers/control/plan-preview.js';
import { wrapped } from './render.js';
import { tableLines } from './table.js';

const WIDTH = 80;

/** Cut a line to the terminal's 80 columns, saying it was cut. */
function clip(line: string): string {
  return line.length <= WIDTH ? line : `${line.slice(0, WIDTH - 1)}…`;
}

/** `refit rollout plan` for a person: what a rollout of the plan would do, in 80 columns. */
export function renderPlanPreview(p: PlanPreview): string {
  const lines: string[] = [];
  const { targets, limits } = p;
  const steps = p.plan.steps.map((k, i) => (i < p.plan.steps.length - 1 ? `${k} →` : k));
  lines.push(...wrapped(`plan ${p.plan.name}:`, steps));
  lines.push(
    `targets: ${targets.matched.length} online${targets.offline.length > 0 ? `, ${targets.offline.length} offline` : ''}, ${targets.leftOut.length} left out`,
  );
  if (targets.leftOut.length > 0)
    lines.push(
      ...tableLines(
        targets.leftOut.map((l) => [l.hostId, l.reason, l.detail]),
        { indent: '  ' },
      ).map(clip),
    );
  if (targets.offline.length > 0) {
    lines.push(`offline targets (onOffline: ${limits.onOffline}):`);
    for (const o of targets.offline)
      lines.push(
        ...wrapped(
          `  ${o.hostId}, last reported ${o.lastReportedAt.slice(0, 19).replace('T', ' ')}:`,
          o.fate.split(' '),
        ),
      );
  }

  lines.push('', `waves (${limits.maxInFlight} in flight at most):`);
  for (const w of p.waves) {
    // As rollout status names them.
    const label = w.index === 0 && p.waves.length > 1 ? 'canary' : `wave ${w.index}`;
    lines.push(...wrapped(`  ${label.padEnd(7)} (${w.hosts.length}):`, w.hosts));
  }
  for (const d of p.failureDomains) {
    lines.push(`failure domains by ${d.label}, at most ${d.max} in flight each:`);
    for (const [value, hosts] of Object.entries(d.domains)) lines.push(...wrapped(`  ${d.label}=${value}:`, hosts));
  }
  lines.push(
    `limits: failure budget ${limits.failureBudget} host${limits.failureBudget === 1 ? '' : 's'}; fleet-wide ${limits.fleetWide ?? 'none'}; on failure ${limits.onHostFailure}`,
    `        busy hosts: ${limits.onBusyHost}; offline hosts: ${limits.onOffline}${limits.onOffline === 'wait' ? ` up to ${formatDuration(limits.offlineWaitMs)}` : ''}`,
  );

  if (p.windows.length > 0) {
    lines.push('', 'next maintenance windows (a host fits before each closes):');
    for (const w of p.windows) {
      const local = w.local.map((l) => `${l.opensAt} (${l.timeZone})`).join(', ');
      lines.push(clip(`  ${w.opensAt.slice(0, 16).replace('T', ' ')} UTC${local ? `  ${local}` : ''}`));
    }
  }

  if (p.drains.length > 0) {
    lines.push('', 'drains (VM → host; free memory or VM slots there now → after):');
    for (const d of p.drains) {
      if (d.error) {
        lines.push(clip(`  ${d.hostId}: cannot drain: ${d.error}`));
        continue;
      }
      const vms = Object.entries(d.vms);
      if (vms.length === 0) {
        lines.push(`  ${d.hostId}: no VMs`);
        continue;
      }
      lines.push(
        ...wrapped(
          `  ${d.hostId}:`,
          vms.map(([vm, to]) => `${vm}→${to}`),
        ),
      );
      lines.push(
        ...wrapped(
          '     room:',
          d.destinations.map((x) =>
            x.memory
              ? `${x.hostId} ${gib(x.memory.freeBefore)}→${gib(x.memory.freeAfter)} of ${gib(x.memory.totalBytes)}`
              : `${x.hostId} ${x.freeBefore}→${x.freeAfter}/${x.slots} slots`,
          ),
        ),
      );
    }
  }

  lines.push('', 'what each host would change (its own dry run; nothing was changed):');
  for (const h of p.hosts) {
    lines.push(`  ${h.hostId} (${h.driver}${h.simulated ? ', simulated' : ''})${h.error ? `: ${h.error}` : ''}`);
    for (const s of h.steps) {
      lines.push(clip(`    ${s.kind}: ${s.error ? `WOULD FAIL: ${s.error}` : s.summary}`));
      for (const c of s.changes) lines.push(clip(`      ${c.what}: ${c.before || '(empty)'} → ${c.after}`));
      for (const f of s.files) {
        if (!f.changed) {
          lines.push(clip(`      ${f.path}: unchanged`));
          continue;
        }
        lines.push(clip(`      --- ${f.path}`));
        for (const d of f.diff) lines.push(clip(`      ${d}`));
      }
    }
  }

  lines.push('');
  for (const n of p.notes) lines.push(clip(`note: ${n}`));
  if (p.canRun) lines.push('the plan can run: refit rollout start <plan>');
  else {
    lines.push(`the plan cannot run (${p.problems.length}):`);
    for (const problem of p.problems) lines.push(clip(`  ${problem}`));
  }
  return lines.map((l) => l.trimEnd()).join('\n');
}
