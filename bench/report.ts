import type { AnsibleRun } from './ansible.js';
import type { CarriedRun } from './carried.js';
import type { DispatchResult } from './dispatch.js';
import type { FootprintResult } from './footprint.js';
import type { HistoryRun } from './history.js';
import { round, type Percentiles } from './stats.js';
import type { ModelledRun } from './modelled.js';
import type { ScaleRun } from './scale.js';
import type { ThroughputRun } from './throughput.js';

export interface BenchResults {
  dispatch?: DispatchResult;
  footprint?: FootprintResult[];
  throughput: ThroughputRun[];
  ansible: AnsibleRun[];
  modelled: ModelledRun[];
  history?: HistoryRun;
  carried?: CarriedRun;
  scale?: ScaleRun;
}

/** Temporal terminates a workflow whose history reaches this many events (its default limit). */
const TEMPORAL_HISTORY_LIMIT = 51_200;

export interface Target {
  id: number;
  target: string;
  measured: string;
  met: boolean | null;
}

function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.slice(1).map(line)].join('\n');
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  if (Number.isInteger(n)) return String(n);
  if (Math.abs(n) >= 100) return String(Math.round(n));
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

/** The tables, as Markdown so that docs/BENCHMARKS.md can quote them as printed. */
export function renderTables(r: BenchResults): string {
  const out: string[] = [];
  const d = r.dispatch;
  if (d) {
    out.push('### 1. Dispatch overhead (one no-op step, sequential)');
    const row = (path: string, p: Percentiles) => [path, p.p50, p.p90, p.p99, p.n];
    out.push(
      table(
        ['path', 'p50 ms', 'p90 ms', 'p99 ms', 'samples'],
        [
          row('raw NATS request/reply', d.rawNatsRequestReply),
          row('unit: JetStream KV put (file store)', d.unitCosts.jetStreamKvPut),
          row('unit: host state-file write (write, fsync, rename, fsync dir)', d.unitCosts.stateFileWrite),
          row('bare Temporal activity (schedule → complete, in its workflow)', d.activity.bare),
          row('dispatched host step (schedule → complete, in hostMaintenance)', d.activity.dispatch),
          row('workflow with one bare activity (client start → result)', d.endToEnd.bareWorkflow),
          row('hostMaintenance with one step (client start → result)', d.endToEnd.hostMaintenance),
        ],
      ),
    );
    const b = d.dispatchBreakdownMs;
    out.push(
      `ratios: activity p50 ${fmt(d.activity.ratioP50)}×, p99 ${fmt(d.activity.ratioP99)}×; whole workflow p50 ${fmt(d.endToEnd.ratioP50)}×, p99 ${fmt(d.endToEnd.ratioP99)}×; ` +
        `dispatch vs raw NATS p50 ${fmt(d.activity.dispatch.p50 / d.rawNatsRequestReply.p50)}×`,
    );
    out.push(
      `dispatched step, median legs (ms): Temporal → activity ${fmt(b.temporalToActivity)}, activity → host accepted ${fmt(b.activityToHostAccepted)}, ` +
        `on the host: accepted → running ${fmt(b.hostAcceptedToRunning)}, running → succeeded ${fmt(b.hostRunningToSucceeded)}; ` +
        `result stored → activity completed ${fmt(b.hostSucceededToActivityCompleted)}`,
    );
  }
  if (r.throughput.length > 0) {
    out.push('### 2. Rollout throughput (N sim hosts × 5 steps, each step runs /bin/true)');
    out.push(
      table(
        [
          'N',
          'in flight',
          'wall s',
          'host-steps/s',
          'wall ms/host-step',
          'CPU ms/host-step',
          'controller RSS MB',
          'fleet RSS MB (per host)',
          'Temporal RSS MB',
          'NATS RSS MB',
          'events/host wf',
          'rollout events (runs)',
          'state',
        ],
        r.throughput.map((t) => [
          t.hosts,
          t.maxInFlight,
          t.wallS,
          t.hostStepsPerS,
          t.wallMsPerHostStep,
          t.cpuMsPerHostStep,
          t.peakRssMb.controller,
          `${fmt(t.peakRssMb.fleet)} (${fmt(t.fleetRssPerHostMb)})`,
          t.peakRssMb.temporal,
          t.peakRssMb.nats,
          t.historyEvents.hostMean,
          `${t.historyEvents.rollout} (${t.historyEvents.rolloutRuns})`,
          t.state,
        ]),
      ),
    );
  }
  if (r.ansible.length > 0) {
    out.push('### 3. Ansible side by side (same 5 trivial tasks, same N, forks = hosts in flight)');
    const rows = r.throughput.map((t) => {
      const cmd = r.ansible.find((a) => a.hosts === t.hosts && a.module === 'command');
      const raw = r.ansible.find((a) => a.hosts === t.hosts && a.module === 'raw');
      const wall = (a: AnsibleRun | undefined) => (a ? `${fmt(a.wallS)}${a.measured ? '' : ' (projected)'}` : 'n/a');
      return [
        t.hosts,
        t.maxInFlight,
        t.wallS,
        wall(cmd),
        cmd ? `${fmt(cmd.wallS / t.wallS)}×` : 'n/a',
        cmd ? cmd.cpuMsPerHostStep : NaN,
        t.cpuMsPerHostStep,
        wall(raw),
        raw ? `${fmt(raw.wallS / t.wallS)}×` : 'n/a',
        `${fmt(t.loadAverage[1])} → ${cmd?.measured ? fmt(cmd.loadAverage[1]) : 'n/a'}`,
      ];
    });
    out.push(
      table(
        [
          'N',
          'forks',
          'refit wall s',
          'ansible command wall s',
          'ansible/refit',
          'ansible CPU ms/host-step',
          'refit CPU ms/host-step',
          'ansible raw wall s',
          'raw/refit',
          'load refit → ansible',
        ],
        rows,
      ),
    );
  }
  if (r.modelled.length > 0) {
    out.push('### 4. Modelled real steps (durations from real ones, compressed)');
    out.push(
      table(
        [
          'compression',
          'hosts',
          'in flight',
          'ideal path s',
          'wall s',
          'overhead ms',
          'of compressed path',
          'of real path',
          'per-host overhead p50 ms',
          'per-step ms',
          'state',
        ],
        r.modelled.map((m) => [
          `÷${m.compression}`,
          m.hosts,
          m.maxInFlight,
          m.idealCriticalPathMs / 1000,
          m.wallMs / 1000,
          m.overheadMs,
          `${fmt(m.overheadPctCompressed)}%`,
          `${m.overheadPctReal.toFixed(3)}%`,
          m.perHostOverheadMs.p50,
          m.perStepOverheadMs,
          m.state,
        ]),
      ),
    );
  }
  if (r.footprint && r.footprint.length > 0) {
    out.push('### 5. Host worker footprint (one sim host worker in its own process)');
    out.push(
      table(
        ['entry', 'state', 'seconds', 'RSS MB', 'peak RSS MB', 'CPU % of a core'],
        r.footprint.flatMap((f) => [
          [
            f.entry,
            `idle (presence every ${f.presenceIntervalMs / 1000} s)`,
            f.idle.seconds,
            f.idle.rssMb,
            NaN,
            f.idle.cpuPctOfCore,
          ],
          [
            f.entry,
            `steps back to back (${f.busy.steps} steps)`,
            f.busy.seconds,
            f.busy.rssMb,
            f.busy.peakRssMb,
            f.busy.cpuPctOfCore,
          ],
        ]),
      ),
    );
  }
  if (r.history) {
    const hr = r.history;
    out.push(`### History events per host-step (the campaign on one SIMULATED host: ${hr.steps.join(', ')})`);
    out.push(
      table(
        ['events', 'steps', 'per step', 'by type', 'state'],
        [
          [
            hr.events,
            hr.steps.length,
            hr.perStep,
            Object.entries(hr.byType)
              .map(([k, v]) => `${k} ${v}`)
              .join(', '),
            hr.state,
          ],
        ],
      ),
    );
  }
  if (r.carried) {
    const c = r.carried;
    out.push(`### What a rollout carries through continue-as-new (modelled, ${c.hosts} hosts)`);
    out.push(
      table(
        [
          'hosts',
          'failed',
          'racks',
          'as carried before KB',
          'compact KB',
          'first run: plan KB',
          'first run: resolved targets KB (rack only)',
          'as resolved before (all labels) KB',
          'model ms',
        ],
        [
          [
            c.hosts,
            c.failed,
            c.racks,
            c.beforeKb,
            c.compactKb,
            c.firstRun.planKb,
            c.firstRun.resolvedKb,
            c.firstRun.resolvedAllKb ?? '—',
            c.ms,
          ],
        ],
      ),
    );
    out.push(
      `each grows with the fleet; Temporal's 2 MB would be reached at about ${c.ceilingHosts.carried} hosts by the carried state, ${c.ceilingHosts.plan} by the plan's named hosts, ${c.ceilingHosts.resolved} by the resolved targets (ids and the failure-domain label; lean-targets)`,
    );
  }
  const x = r.scale;
  if (x) {
    out.push(
      `### 6. Scale (one rollout, ${x.hosts} SIMULATED hosts in ${x.fleets} processes, steps ${x.steps.join(',')})`,
    );
    out.push(
      table(
        [
          'hosts',
          'in flight',
          'state',
          'succeeded',
          'wall s',
          'hosts/s',
          'CPU s (controller/fleets/Temporal/NATS)',
          'rollout runs',
          'events per run (max)',
          'rollout events/host',
          'host wf events (mean, sample)',
          'host wfs completed',
          'carried status KB',
        ],
        [
          [
            x.hosts,
            x.maxInFlight,
            x.state,
            x.counts.succeeded,
            x.wallS,
            x.hostsPerS,
            `${fmt(x.cpuS.controller)}/${fmt(x.cpuS.fleets)}/${fmt(x.cpuS.temporal)}/${fmt(x.cpuS.nats)}`,
            x.rollout.runs,
            x.rollout.eventsPerRun.length > 0 ? Math.max(...x.rollout.eventsPerRun) : NaN,
            x.rollout.eventsPerHost,
            `${fmt(x.hostWorkflows.eventsMean)} (${x.hostWorkflows.sampled})`,
            x.hostWorkflows.completed,
            round(x.rollout.statusBytes / 1024, 0),
          ],
        ],
      ),
    );
    out.push(
      `enrolment ${fmt(x.enrolS)} s, fleet start ${fmt(x.fleetStartS)} s; peak RSS MB: controller ${fmt(x.peakRssMb.controller)}, fleets ${fmt(x.peakRssMb.fleets)} (sum of the processes' peaks), Temporal ${fmt(x.peakRssMb.temporal)}, NATS ${fmt(x.peakRssMb.nats)}`,
    );
    const p = x.pace;
    const tasks = (t: typeof p.hosts) =>
      `${t.workflowTasks} workflow tasks in ${t.histories} histories, queued p50 ${fmt(t.queueMs.p50)} ms (sum ${fmt(t.queueMs.sum / 1000)} s), running p50 ${fmt(t.runMs.p50)} ms (sum ${fmt(t.runMs.sum / 1000)} s), a task queued or running ${fmt(t.busyPct)}% of the time`;
    const totals = (r: Record<string, { seconds: number; count: number }>) =>
      Object.entries(r)
        .map(([k, v]) => `${k} ${fmt(v.seconds)} s/${v.count}`)
        .join(', ');
    out.push(
      [
        `where the time went: load average ${fmt(x.loadAverage[0])} → ${fmt(x.loadAverage[1])}`,
        `- rollout: ${tasks(p.rollout)}; ${fmt(p.rollout.eventsPerS)} events/s; its ${p.rollout.childStartMs.n} children initiated → started p50 ${fmt(p.rollout.childStartMs.p50)} ms (p90 ${fmt(p.rollout.childStartMs.p90)}), started → completed p50 ${fmt(p.rollout.childRunMs.p50)} ms (p90 ${fmt(p.rollout.childRunMs.p90)}), ${fmt(p.rollout.childrenInFlight)} in flight on average`,
        `- host workflows (sample): ${tasks(p.hosts)}`,
        `- Temporal persistence (s summed/calls): ${totals(p.server.persistence)}`,
        `- Temporal visibility: ${totals(p.server.visibility)}`,
        `- mutable-state locks held: ${totals(p.server.lockHeld)}`,
        `- task schedule → start in matching: ${totals(p.server.scheduleToStart)}`,
      ].join('\n'),
    );
  }
  return out.join('\n\n');
}

/** Each target of the issue, with what this run measured. */
export function checkTargets(r: BenchResults): Target[] {
  const targets: Target[] = [];
  if (r.dispatch) {
    const a = r.dispatch.activity;
    targets.push({
      id: 1,
      target: 'full dispatch path p50 ≤ 1.2 × bare activity p50',
      measured: `${fmt(a.ratioP50)}× (activity level); ${fmt(r.dispatch.endToEnd.ratioP50)}× (whole one-step workflow)`,
      met: a.ratioP50 <= 1.2,
    });
  }
  const at = (n: number) => r.throughput.find((t) => t.hosts === n);
  const [t100, t1000] = [at(100), at(1000)];
  if (t100 && t1000) {
    const wall = t1000.wallMsPerHostStep / t100.wallMsPerHostStep;
    const cpu = t1000.cpuMsPerHostStep / t100.cpuMsPerHostStep;
    targets.push({
      id: 2,
      target: 'cost per host-step flat from 100 to 1,000 hosts (within 1.5×)',
      measured: `wall ${fmt(wall)}×, CPU ${fmt(cpu)}× (1,000 vs 100)`,
      met: wall <= 1.5 && cpu <= 1.5,
    });
  }
  const largest = r.throughput.at(-1);
  const a1000 = r.ansible.find((a) => a.hosts === 1000 && a.module === 'command');
  if (t1000 && a1000) {
    const ratio = a1000.wallS / t1000.wallS;
    targets.push({
      id: 3,
      target: 'refit ≥ 2× faster than Ansible at N = 1,000',
      measured: `${fmt(ratio)}×${a1000.measured ? '' : ' (Ansible projected from a smaller N)'}`,
      met: ratio >= 2,
    });
  } else if (largest) {
    const a = r.ansible.find((x) => x.hosts === largest.hosts && x.module === 'command');
    if (a)
      targets.push({
        id: 3,
        target: 'refit ≥ 2× faster than Ansible at N = 1,000',
        measured: `N = 1,000 not run; ${fmt(a.wallS / largest.wallS)}× at N = ${largest.hosts}`,
        met: null,
      });
  }
  if (r.modelled.length > 0) {
    const worst = Math.max(...r.modelled.map((m) => m.overheadPctReal));
    targets.push({
      id: 4,
      target: 'orchestration overhead < 1% of the ideal critical path',
      measured: `${worst.toFixed(3)}% of the real path (worst compression); ${r.modelled.map((m) => `${fmt(m.overheadPctCompressed)}% at ÷${m.compression}`).join(', ')} of the compressed one`,
      met: worst < 1,
    });
  }
  if (r.scale) {
    const x = r.scale;
    const maxRun = x.rollout.eventsPerRun.length > 0 ? Math.max(...x.rollout.eventsPerRun) : NaN;
    targets.push({
      id: 6,
      target: `scale: a ${x.hosts}-host sim rollout completes, every run of it far below Temporal's 51,200 events`,
      measured: `${x.state}: ${x.counts.succeeded}/${x.hosts} succeeded, ${x.hostWorkflows.completed} host workflows completed; ${x.rollout.runs} runs, at most ${maxRun} events`,
      met:
        x.state === 'completed' &&
        x.counts.succeeded === x.hosts &&
        x.hostWorkflows.completed === x.hosts &&
        x.rollout.runs > 0 &&
        maxRun < TEMPORAL_HISTORY_LIMIT / 2,
    });
  }
  for (const f of r.footprint ?? []) {
    targets.push({
      id: 5,
      target: `host worker idle RSS ≤ 80 MB (${f.entry})`,
      measured: `${fmt(f.idle.rssMb)} MB`,
      met: f.idle.rssMb <= 80,
    });
    targets.push({
      id: 5,
      target: `host worker idle CPU ≤ 0.5% of a core (${f.entry})`,
      measured: `${f.idle.cpuPctOfCore.toFixed(3)}%`,
      met: f.idle.cpuPctOfCore <= 0.5,
    });
  }
  return targets;
}

export interface IssueTarget {
  measure: string;
  /** As issue #17 recorded it. */
  today: string;
  target: string;
  measured: string;
  met: boolean | null;
}

/** Issue #17's six targets, each with the value the issue started from and what this run measured. */
export function checkIssueTargets(r: BenchResults): IssueTarget[] {
  const notRun = (what: string) => ({ measured: `not measured (${what} not run)`, met: null });
  const d = r.dispatch;
  const t1000 = r.throughput.find((t) => t.hosts === 1000);
  const largest = r.throughput.at(-1);
  const a1000 = r.ansible.find((a) => a.hosts === 1000 && a.module === 'command');
  const c = r.carried;
  return [
    {
      measure: 'dispatched step p50 ÷ bare activity p50',
      today: '4.42×',
      target: '≤ 2×',
      ...(d ? { measured: `${fmt(d.activity.ratioP50)}×`, met: d.activity.ratioP50 <= 2 } : notRun('dispatch')),
    },
    {
      measure: 'hostMaintenance with one step ÷ workflow with one bare activity',
      today: '2.33×',
      target: '≤ 1.5×',
      ...(d ? { measured: `${fmt(d.endToEnd.ratioP50)}×`, met: d.endToEnd.ratioP50 <= 1.5 } : notRun('dispatch')),
    },
    {
      measure: 'CPU per host-step, whole system, N = 1,000',
      today: '93 ms',
      target: '≤ 45 ms',
      ...(t1000
        ? { measured: `${fmt(t1000.cpuMsPerHostStep)} ms`, met: t1000.cpuMsPerHostStep <= 45 }
        : largest
          ? { measured: `N = 1,000 not run; ${fmt(largest.cpuMsPerHostStep)} ms at N = ${largest.hosts}`, met: null }
          : notRun('throughput')),
    },
    {
      measure: 'Ansible command module ÷ refit, wall, N = 1,000',
      today: '2.96×',
      target: '≥ 5×',
      ...(t1000 && a1000
        ? {
            measured: `${fmt(a1000.wallS / t1000.wallS)}×${a1000.measured ? '' : ' (Ansible projected from a smaller N)'}`,
            met: a1000.wallS / t1000.wallS >= 5,
          }
        : notRun('throughput and ansible at N = 1,000')),
    },
    {
      measure: 'carried state at 100,000 hosts',
      today: 'over the 2 MB limit',
      target: 'bounded, under 256 KB',
      ...(c
        ? {
            measured: `${fmt(c.compactKb)} KB at ${c.hosts} hosts, modelled (${fmt(c.beforeKb)} KB as carried before)`,
            met: c.hosts >= 100_000 ? c.compactKb < 256 : null,
          }
        : notRun('carried')),
    },
    {
      measure: 'history events per host-step',
      today: '~10',
      target: '≤ 6',
      ...(r.history
        ? {
            measured: `${fmt(r.history.perStep)} (${r.history.events} events, ${r.history.steps.length} steps)`,
            met: r.history.perStep <= 6,
          }
        : notRun('history')),
    },
  ];
}

export function renderIssueTargets(targets: IssueTarget[]): string {
  return table(
    ['measure', 'today (issue #17)', 'target', 'this run', 'met'],
    targets.map((t) => [
      t.measure,
      t.today,
      t.target,
      t.measured,
      t.met === null ? 'not measured' : t.met ? 'yes' : 'NO',
    ]),
  );
}

export function renderTargets(targets: Target[]): string {
  return table(
    ['#', 'target', 'measured', 'met'],
    targets.map((t) => [String(t.id), t.target, t.measured, t.met === null ? 'not measured' : t.met ? 'yes' : 'NO']),
  );
}
