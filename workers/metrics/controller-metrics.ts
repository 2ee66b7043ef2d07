import { createServer } from 'node:net';
import { Client } from '@temporalio/client';
import type { NativeConnection, Worker } from '@temporalio/worker';
import type { RolloutStatus } from '../../schemas/rollout.js';
import { rolloutStatusQuery } from '../../workflows/messages.js';
import type { MetricsEndpoint } from './endpoint.js';
import { Registry } from './registry.js';

/** A free loopback port for the Temporal SDK's own Prometheus exporter, which refit's /metrics reads. */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/**
 * The Temporal SDK's runtime metrics (its exporter on a loopback port of its own), appended to
 * refit's /metrics, so one scrape has both. `refit_temporal_sdk_metrics_up` says whether they came.
 */
export function appendSdkMetrics(endpoint: MetricsEndpoint, sdkUrl: string | undefined): void {
  endpoint.append(async () => {
    let text = '';
    if (sdkUrl !== undefined) {
      try {
        const res = await fetch(`${sdkUrl}/metrics`, { signal: AbortSignal.timeout(3_000) });
        if (res.ok) text = await res.text();
      } catch {
        text = '';
      }
    }
    const up = text === '' ? 0 : 1;
    const own = `# HELP refit_temporal_sdk_metrics_up 1 when the Temporal SDK's runtime metrics are included below.\n# TYPE refit_temporal_sdk_metrics_up gauge\nrefit_temporal_sdk_metrics_up ${up}\n`;
    return own + (text.endsWith('\n') || text === '' ? text : `${text}\n`);
  });
}

/** /healthz of the controller: its worker runs and Temporal answers, within 3 s. */
export function checkTemporal(
  endpoint: MetricsEndpoint,
  connection: NativeConnection,
  worker: Worker,
  address: string,
): void {
  endpoint.check('temporal', async () => {
    const state = worker.getState();
    if (state !== 'RUNNING') return `controller worker is ${state.toLowerCase()}`;
    try {
      await connection.withDeadline(Date.now() + 3_000, () => connection.workflowService.getSystemInfo({}));
      return undefined;
    } catch (err) {
      return `Temporal at ${address} does not answer: ${(err as Error).message}`;
    }
  });
}

const ROLLOUTS_CACHE_MS = 5_000;
/** More running rollouts than this on one task queue are not looked into one by one. */
const MAX_ROLLOUTS = 50;

/**
 * Gauges of the rollouts running on this task queue, read at scrape time (at most every 5 s) from
 * their status query: hosts in flight, failure budget used and allowed, approvals waiting, hosts by
 * state. Every controller on the queue reports the same rollouts: aggregate with max, not sum.
 */
export function appendRolloutGauges(
  endpoint: MetricsEndpoint,
  connection: NativeConnection,
  namespace: string,
  taskQueue: string,
): void {
  const client = new Client({ connection, namespace });
  let cached: { at: number; rollouts: Promise<RolloutStatus[]> } | undefined;
  const running = async (): Promise<RolloutStatus[]> => {
    const ids: string[] = [];
    const query = `WorkflowType = "fleetRollout" AND ExecutionStatus = "Running" AND TaskQueue = ${JSON.stringify(taskQueue)}`;
    for await (const wf of client.workflow.list({ query })) {
      if (ids.length >= MAX_ROLLOUTS) break;
      ids.push(wf.workflowId);
    }
    const statuses = await Promise.all(
      ids.map((id) =>
        Promise.race([
          client.workflow.getHandle(id).query(rolloutStatusQuery),
          new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5_000).unref()),
        ]).catch(() => undefined),
      ),
    );
    return statuses.filter((s): s is RolloutStatus => s !== undefined);
  };
  endpoint.append(async () => {
    if (cached === undefined || Date.now() - cached.at > ROLLOUTS_CACHE_MS) {
      cached = { at: Date.now(), rollouts: running().catch(() => []) };
    }
    return rolloutGaugesText(await cached.rollouts);
  });
}

/** The text of the rollout gauges for these statuses. */
export function rolloutGaugesText(rollouts: readonly RolloutStatus[]): string {
  const r = new Registry();
  const each = (value: (s: RolloutStatus) => number) => () =>
    rollouts.map((s) => ({ labels: { rollout_id: s.id }, value: value(s) }));
  r.gauge('refit_rollouts_running', 'Rollouts running on this task queue.', () => [{ value: rollouts.length }]);
  r.gauge(
    'refit_rollout_hosts_in_flight',
    'Hosts under maintenance now, per running rollout.',
    each((s) => s.hosts.filter((h) => h.state === 'running').length),
  );
  r.gauge(
    'refit_rollout_failure_budget_used',
    'Failed hosts counted against the failure budget, per running rollout.',
    each((s) => s.failureBudget.failed),
  );
  r.gauge(
    'refit_rollout_failure_budget_max',
    'Failed hosts the plan allows before the rollout pauses, per running rollout.',
    each((s) => s.failureBudget.maxFailedHosts),
  );
  r.gauge(
    'refit_rollout_approvals_waiting',
    '1 while a running rollout waits for an operator approval.',
    each((s) => (s.pendingApproval !== null ? 1 : 0)),
  );
  r.gauge(
    'refit_rollout_paused',
    '1 while a running rollout is paused.',
    each((s) => (s.paused !== null ? 1 : 0)),
  );
  r.gauge('refit_rollout_hosts', 'Hosts of each running rollout by state.', () =>
    rollouts.flatMap((s) =>
      Object.entries(s.counts).map(([state, n]) => ({ labels: { rollout_id: s.id, state }, value: n })),
    ),
  );
  return r.render();
}
