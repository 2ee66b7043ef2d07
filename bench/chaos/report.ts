import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as prettier from 'prettier';
import { CHAOS_TARGETS } from './schedule.js';
import type { ChaosResult, KillRecord } from './run-chaos.js';

export const SECTION_BEGIN = '<!-- chaos:begin -->';
export const SECTION_END = '<!-- chaos:end -->';

const RELIABILITY_INTRO = `# Reliability

What refit has been shown to survive, measured on real processes, and how to measure it again.
`;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(head), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...cells.slice(1).map(line)].join('\n');
}

const seconds = (n: number) => (Number.isFinite(n) ? `${n.toFixed(1)} s` : '–');

/** Kills by target: how many, and how long until the process answered and the rollout advanced. */
export function renderByTarget(kills: readonly KillRecord[]): string {
  const rows = CHAOS_TARGETS.map((target) => {
    const of = kills.filter((k) => k.target === target);
    const recovered = of.flatMap((k) => (k.recoverS === null ? [] : [k.recoverS]));
    return [
      target,
      of.length,
      seconds(median(of.map((k) => k.restartS))),
      seconds(median(recovered)),
      seconds(recovered.length > 0 ? Math.max(...recovered) : NaN),
    ];
  });
  return table(
    ['killed', 'kills', 'answering again (median)', 'rollout advancing again (median)', '(max)'],
    [...rows, ['all', kills.length, '', '', '']],
  );
}

/** Every kill in order. */
export function renderKills(kills: readonly KillRecord[]): string {
  return table(
    ['#', 'at', 'killed', 'down for', 'answering after', 'advancing after'],
    kills.map((k) => [
      k.n,
      seconds(k.at),
      k.target,
      `${k.downMs} ms`,
      seconds(k.restartS),
      k.recoverS === null ? 'not within bound' : seconds(k.recoverS),
    ]),
  );
}

/** The checks that decide the run, and the counters. */
export function renderOutcome(r: ChaosResult): string {
  const exactlyOnce = r.effects.filter((e) => e.wrong.length === 0).length;
  return table(
    ['check', 'result'],
    [
      ['rollout', `${r.rollout.state}, ${r.rollout.succeeded}/${r.rollout.total} hosts`],
      ['step effects exactly once (hosts’ own state files)', `${exactlyOnce}/${r.effects.length} hosts`],
      [
        'audit verify',
        r.audit.ok ? `intact, ${r.audit.events} events` : `NOT intact: ${r.audit.problems.length} problems`,
      ],
      ['host workflows left open', r.openHostWorkflows.length],
      ['longest time without a completed step', seconds(r.longestStallS)],
      ['commands', r.commands],
      ['steps answered from the journal', r.journalAnswers],
      ['steps resumed by a restarted host worker', r.resumedSteps],
      ['duplicate commands dropped by JetStream', r.duplicatesDropped],
      ['processes that exited by themselves', r.unexpectedExits.length],
    ],
  );
}

export function renderResult(r: ChaosResult): string {
  return [
    renderKills(r.kills),
    '',
    renderByTarget(r.kills),
    '',
    renderOutcome(r),
    '',
    r.failures.length === 0 ? 'PASSED' : `FAILED:\n${r.failures.map((f) => `  - ${f}`).join('\n')}`,
  ].join('\n');
}

export interface RecordedRun {
  command: string;
  date: string;
  machine: string;
}

/** The Chaos section of docs/RELIABILITY.md, from one recorded run. */
export function chaosSection(r: ChaosResult, run: RecordedRun): string {
  return `${SECTION_BEGIN}
## Chaos

\`npm run chaos\` starts its own stack (Temporal's dev server on SQLite and nats-server, in a temp home, on
free ports), the controller worker and a SIMULATED fleet of ${r.hosts} hosts (the sim driver: nothing real is
touched) as separate processes, and rolls the whole campaign out (drain, ovs-convert, sriov-enable, reboot,
verify, undrain). Meanwhile a schedule drawn from \`--seed\` SIGKILLs the controller worker, the fleet's
process, nats-server and the Temporal server, in shuffled rounds of all four, and starts each again after
a random pause on the same ports and data. It passes only when the rollout completes n/n, every host's
state file (written by the simulated host, not by refit's bookkeeping) counts each step's effect exactly
once and no revert, \`refit audit verify\` finds the trail intact, and no host workflow is left open.
"Answering again" is from the kill until the process is ready again; "advancing again" until the rollout
next completes a step. The next kill does not wait for that, so this time can span later kills; a
controller kill costs up to the 20 s heartbeat timeout of the steps in flight.

Recorded run: \`${run.command}\`, ${run.date}, ${run.machine}; seed ${r.seed}, ${r.kills.length} kills,
${r.hosts} hosts, steps of ${r.stepMs / 1000} s, ${Math.round(r.durationS)} s in all: **${r.failures.length === 0 ? 'passed' : 'FAILED'}**.

${renderByTarget(r.kills)}

${renderOutcome(r)}

<details><summary>Every kill</summary>

${renderKills(r.kills)}

</details>
${SECTION_END}`;
}

/**
 * Put the section into the file between its markers, keeping everything else; create the file if
 * absent. Formatted as `npm run lint` wants it.
 */
export async function writeChaosSection(file: string, section: string): Promise<void> {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : RELIABILITY_INTRO;
  const begin = text.indexOf(SECTION_BEGIN);
  const end = text.indexOf(SECTION_END);
  const next =
    begin >= 0 && end > begin
      ? `${text.slice(0, begin)}${section}${text.slice(end + SECTION_END.length)}`
      : `${text.trimEnd()}\n\n${section}\n`;
  const options = (await prettier.resolveConfig(file)) ?? {};
  writeFileSync(file, await prettier.format(next, { ...options, filepath: file }));
}
