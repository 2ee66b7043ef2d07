import type { Client } from '@temporalio/client';
import { eventCounts, type HistoryEvent } from './history.js';
import { percentiles, round } from './stats.js';

/*
 * Where the time of a large rollout goes (docs/BENCHMARKS.md "Where the time goes at scale"): the
 * Temporal dev server's own metrics over the rollout, and the workflow tasks of the rollout's runs
 * and of a sample of host workflows, from their histories.
 */

/** One Prometheus text exposition: `name{labels}` → value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    const value = Number(line.slice(cut + 1));
    if (cut > 0 && Number.isFinite(value)) out.set(line.slice(0, cut), value);
  }
  return out;
}

/** The value of `label` in a series key such as `persistence_latency_sum{operation="X",…}`. */
export function labelOf(series: string, label: string): string | undefined {
  return new RegExp(`[{,]${label}="([^"]*)"`).exec(series)?.[1];
}

export interface MetricTotals {
  /** Seconds summed over the window, and how many. */
  seconds: number;
  count: number;
}

/**
 * The increase of `<family>_sum` and `<family>_count` between two scrapes, added up by the values
 * of `by` (for example the persistence operation), largest first.
 */
export function histogramDelta(
  before: Map<string, number>,
  after: Map<string, number>,
  family: string,
  by: string[],
): Record<string, MetricTotals> {
  const totals: Record<string, MetricTotals> = {};
  for (const [series, value] of after) {
    const kind = series.startsWith(`${family}_sum{`) ? 'seconds' : series.startsWith(`${family}_count{`) ? 'count' : '';
    if (kind === '') continue;
    const key = by.map((l) => labelOf(series, l) ?? '-').join(' ');
    const t = (totals[key] ??= { seconds: 0, count: 0 });
    t[kind] += value - (before.get(series) ?? 0);
  }
  return Object.fromEntries(
    Object.entries(totals)
      .filter(([, t]) => t.count > 0)
      .sort(([, a], [, b]) => b.seconds - a.seconds)
      .map(([k, t]) => [k, { seconds: round(t.seconds, 1), count: Math.round(t.count) }]),
  );
}

export async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return parseMetrics(await res.text());
}

/** What the dev server spent over the rollout, from its own metrics. */
export interface ServerPace {
  /** History service persistence calls by operation (seconds summed over calls, calls). */
  persistence: Record<string, MetricTotals>;
  visibility: Record<string, MetricTotals>;
  /** Time workflows' mutable-state locks were held, by operation. */
  lockHeld: Record<string, MetricTotals>;
  /** Tasks waiting in matching before a worker took them, by task type and partition (sticky or not). */
  scheduleToStart: Record<string, MetricTotals>;
}

export function serverPace(before: Map<string, number>, after: Map<string, number>): ServerPace {
  const top = (r: Record<string, MetricTotals>, n = 8) => Object.fromEntries(Object.entries(r).slice(0, n));
  return {
    persistence: top(histogramDelta(before, after, 'persistence_latency', ['operation'])),
    visibility: top(histogramDelta(before, after, 'visibility_persistence_latency', ['operation'])),
    lockHeld: top(histogramDelta(before, after, 'history_workflow_execution_cache_lock_hold_duration', ['operation'])),
    scheduleToStart: histogramDelta(before, after, 'task_schedule_to_start_latency', ['task_type', 'partition']),
  };
}

/** The workflow tasks of one history: how long each waited for a worker and how long the worker took. */
export interface TaskTimes {
  workflowTasks: number;
  /** WorkflowTaskScheduled → Started, ms. */
  queueMs: number[];
  /** WorkflowTaskStarted → Completed, ms. */
  runMs: number[];
  /** Child workflows: StartChildWorkflowExecutionInitiated → ChildWorkflowExecutionStarted, and Started → Completed, ms. */
  childStartMs: number[];
  childRunMs: number[];
  /** First to last event, ms. */
  spanMs: number;
  events: number;
}

const ms = (e: HistoryEvent | undefined): number => {
  const t = e?.eventTime;
  return t ? Number(t.seconds ?? 0) * 1000 + Math.round((t.nanos ?? 0) / 1e6) : NaN;
};

export function workflowTaskTimes(events: readonly HistoryEvent[]): TaskTimes {
  const byId = new Map(events.map((e) => [Number(e.eventId), e]));
  const queueMs: number[] = [];
  const runMs: number[] = [];
  const childStartMs: number[] = [];
  const childRunMs: number[] = [];
  for (const e of events) {
    const child = e.childWorkflowExecutionStartedEventAttributes;
    if (child) childStartMs.push(ms(e) - ms(byId.get(Number(child.initiatedEventId))));
    const childDone = e.childWorkflowExecutionCompletedEventAttributes;
    if (childDone) childRunMs.push(ms(e) - ms(byId.get(Number(childDone.startedEventId))));
    const done = e.workflowTaskCompletedEventAttributes;
    if (!done) continue;
    const scheduled = byId.get(Number(done.scheduledEventId));
    const started = byId.get(Number(done.startedEventId));
    queueMs.push(ms(started) - ms(scheduled));
    runMs.push(ms(e) - ms(started));
  }
  return {
    workflowTasks: runMs.length,
    queueMs,
    runMs,
    childStartMs,
    childRunMs,
    spanMs: ms(events.at(-1)) - ms(events[0]),
    events: events.length,
  };
}

const pick = (xs: number[]) => {
  const p = percentiles(xs);
  return { n: xs.length, p50: p.p50, p90: p.p90 };
};

export interface TaskSummary {
  histories: number;
  workflowTasks: number;
  queueMs: { p50: number; p90: number; sum: number };
  runMs: { p50: number; p90: number; sum: number };
  /** Child workflows started by these histories: initiated → started, started → completed (as the parent records them). */
  childStartMs: { n: number; p50: number; p90: number };
  childRunMs: { n: number; p50: number; p90: number };
  /** Children between initiated and completed, on average over the histories' spans. */
  childrenInFlight: number;
  /** Share of the histories' spans (added up) in which a workflow task was queued or running. */
  busyPct: number;
}

export function summariseTasks(all: TaskTimes[]): TaskSummary {
  const queue = all.flatMap((t) => t.queueMs);
  const run = all.flatMap((t) => t.runMs);
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const q = percentiles(queue);
  const r = percentiles(run);
  const span = sum(all.map((t) => t.spanMs));
  return {
    histories: all.length,
    workflowTasks: run.length,
    queueMs: { p50: q.p50, p90: q.p90, sum: round(sum(queue), 0) },
    runMs: { p50: r.p50, p90: r.p90, sum: round(sum(run), 0) },
    childStartMs: pick(all.flatMap((t) => t.childStartMs)),
    childRunMs: pick(all.flatMap((t) => t.childRunMs)),
    childrenInFlight: round(
      (sum(all.flatMap((t) => t.childStartMs)) + sum(all.flatMap((t) => t.childRunMs))) / span,
      1,
    ),
    busyPct: round((100 * (sum(queue) + sum(run))) / span, 1),
  };
}

/** Every run of a workflow, oldest first, each with its workflow-task times and event types. */
export async function runTaskTimes(
  client: Client,
  workflowId: string,
): Promise<(TaskTimes & { byType: Record<string, number> })[]> {
  const runs: { start: number; runId: string }[] = [];
  for await (const run of client.workflow.list({ query: `WorkflowId = '${workflowId}'` }))
    runs.push({ start: run.startTime.getTime(), runId: run.runId });
  runs.sort((a, b) => a.start - b.start);
  const out = [];
  for (const run of runs) {
    const events = (await client.workflow.getHandle(workflowId, run.runId).fetchHistory()).events ?? [];
    out.push({ ...workflowTaskTimes(events), byType: eventCounts(events) });
  }
  return out;
}
