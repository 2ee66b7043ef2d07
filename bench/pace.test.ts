import { describe, expect, it } from 'vitest';
import { histogramDelta, labelOf, parseMetrics, summariseTasks, workflowTaskTimes } from './pace.js';
import { temporal } from '@temporalio/proto';

// Lines as the Temporal dev server (CLI 1.9.1, Server 1.32.0) serves them on its /metrics.
const before = `# HELP persistence_latency persistence_latency histogram
# TYPE persistence_latency histogram
persistence_latency_bucket{namespace="default",operation="UpdateWorkflowExecution",service_name="history",le="0.001"} 10
persistence_latency_sum{namespace="default",operation="UpdateWorkflowExecution",service_name="history"} 100.5
persistence_latency_count{namespace="default",operation="UpdateWorkflowExecution",service_name="history"} 4000
persistence_latency_sum{namespace="system",operation="GetNamespace",service_name="frontend"} 0.193298528
persistence_latency_count{namespace="system",operation="GetNamespace",service_name="frontend"} 46
`;
const after = `persistence_latency_sum{namespace="default",operation="UpdateWorkflowExecution",service_name="history"} 148.7718455080001
persistence_latency_count{namespace="default",operation="UpdateWorkflowExecution",service_name="history"} 5934
persistence_latency_sum{namespace="system",operation="GetNamespace",service_name="frontend"} 0.193298528
persistence_latency_count{namespace="system",operation="GetNamespace",service_name="frontend"} 46
persistence_latency_sum{namespace="system",operation="GetNamespace",service_name="history"} 45.222454058000025
persistence_latency_count{namespace="system",operation="GetNamespace",service_name="history"} 8992
`;

describe('the dev server metrics', () => {
  it('takes the increase of a histogram over the window by operation, largest first, leaving out what did not move', () => {
    const b = parseMetrics(before);
    expect(b.size).toBe(5);
    expect(
      labelOf(
        'persistence_latency_sum{namespace="default",operation="UpdateWorkflowExecution",service_name="history"}',
        'operation',
      ),
    ).toBe('UpdateWorkflowExecution');
    expect(histogramDelta(b, parseMetrics(after), 'persistence_latency', ['operation', 'service_name'])).toEqual({
      'UpdateWorkflowExecution history': { seconds: 48.3, count: 1934 },
      'GetNamespace history': { seconds: 45.2, count: 8992 },
    });
  });
});

const at = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });

describe('workflow tasks from a history', () => {
  it('times each task from scheduled to started to completed, and how busy the workflow was', () => {
    const events = [
      { eventId: 1, eventTime: at(1_000), workflowExecutionStartedEventAttributes: {} },
      { eventId: 2, eventTime: at(1_000), workflowTaskScheduledEventAttributes: {} },
      { eventId: 3, eventTime: at(1_030), workflowTaskStartedEventAttributes: {} },
      {
        eventId: 4,
        eventTime: at(1_050),
        workflowTaskCompletedEventAttributes: { scheduledEventId: 2, startedEventId: 3 },
      },
      { eventId: 5, eventTime: at(1_500), activityTaskScheduledEventAttributes: {} },
      { eventId: 6, eventTime: at(1_900), workflowTaskScheduledEventAttributes: {} },
      { eventId: 7, eventTime: at(1_910), workflowTaskStartedEventAttributes: {} },
      {
        eventId: 8,
        eventTime: at(2_000),
        workflowTaskCompletedEventAttributes: { scheduledEventId: 6, startedEventId: 7 },
      },
    ].map((e) => temporal.api.history.v1.HistoryEvent.fromObject(e));
    const t = workflowTaskTimes(events);
    expect(t).toEqual({
      workflowTasks: 2,
      queueMs: [30, 10],
      runMs: [20, 90],
      childStartMs: [],
      childRunMs: [],
      spanMs: 1_000,
      events: 8,
    });
    const s = summariseTasks([t]);
    expect(s.queueMs.sum).toBe(40);
    expect(s.runMs.sum).toBe(110);
    expect(s.busyPct).toBe(15);
  });
});
