import { describe, expect, it } from 'vitest';
import { parseExposition, sampleSum } from './helpers/prometheus.js';
import { Registry } from '../workers/metrics/registry.js';
import { rolloutGaugesText } from '../workers/metrics/controller-metrics.js';
import { parseListen } from '../workers/metrics/listen.js';
import { openMetricsEndpoint } from '../workers/metrics/endpoint.js';
import { pino } from 'pino';

describe('the metrics registry', () => {
  it('writes counters, gauges and histograms that the Prometheus parser reads back as given', async () => {
    const r = new Registry();
    const steps = r.counter('refit_steps_total', 'Steps that ended.', ['kind', 'outcome']);
    steps.inc({ kind: 'drain', outcome: 'succeeded' });
    steps.inc({ kind: 'drain', outcome: 'succeeded' }, 2);
    steps.inc({ kind: 'ovs-convert', outcome: 'failed' });
    r.gauge('refit_audit_spool_depth', 'Spooled events.\nSecond line \\ of help.', () => [{ value: 7 }]);
    r.gauge('refit_odd_labels', 'Label values that need escaping.', () => [
      { labels: { reason: 'a "quoted"\nline with \\' }, value: 1 },
    ]);
    const h = r.histogram('refit_step_duration_seconds', 'Durations.', [1, 10], ['kind']);
    h.observe({ kind: 'drain' }, 0.5);
    h.observe({ kind: 'drain' }, 5);
    h.observe({ kind: 'drain' }, 50);

    const families = await parseExposition(r.render());
    expect(families.map((f) => [f.name, f.type])).toEqual([
      ['refit_steps', 'counter'],
      ['refit_audit_spool_depth', 'gauge'],
      ['refit_odd_labels', 'gauge'],
      ['refit_step_duration_seconds', 'histogram'],
    ]);
    expect(sampleSum(families, 'refit_steps_total', { kind: 'drain', outcome: 'succeeded' })).toBe(3);
    expect(sampleSum(families, 'refit_steps_total', { kind: 'ovs-convert' })).toBe(1);
    expect(sampleSum(families, 'refit_audit_spool_depth')).toBe(7);
    expect(families[2]!.samples[0]!.labels.reason).toBe('a "quoted"\nline with \\');
    const bucket = (le: string) => sampleSum(families, 'refit_step_duration_seconds_bucket', { le });
    expect([bucket('1'), bucket('10'), bucket('+Inf')]).toEqual([1, 2, 3]);
    expect(sampleSum(families, 'refit_step_duration_seconds_sum')).toBe(55.5);
    expect(sampleSum(families, 'refit_step_duration_seconds_count')).toBe(3);
  });

  it('refuses a series with other labels than the metric declared, and a name twice', () => {
    const r = new Registry();
    const c = r.counter('refit_x_total', 'x', ['kind']);
    expect(() => c.inc({ mode: 'apply' })).toThrow(/takes the labels kind, not mode/);
    expect(() => r.counter('refit_x_total', 'again')).toThrow(/registered twice/);
    expect(() => r.counter('refit-bad', 'x')).toThrow(/not a metric name/);
  });

  it('writes the gauges of running rollouts from their status', async () => {
    const status = {
      id: 'r-1',
      hosts: [{ state: 'running' }, { state: 'running' }, { state: 'failed' }],
      counts: { pending: 0, running: 2, succeeded: 0, failed: 1, 'rolled-back': 0, held: 0, skipped: 0 },
      failureBudget: { maxFailedHosts: 3, failed: 1 },
      pendingApproval: { gate: 'after-canary', wave: 1, since: '2026-01-01T00:00:00Z' },
      paused: null,
    };
    const families = await parseExposition(rolloutGaugesText([status as never]));
    expect(sampleSum(families, 'refit_rollouts_running')).toBe(1);
    expect(sampleSum(families, 'refit_rollout_hosts_in_flight', { rollout_id: 'r-1' })).toBe(2);
    expect(sampleSum(families, 'refit_rollout_failure_budget_used', { rollout_id: 'r-1' })).toBe(1);
    expect(sampleSum(families, 'refit_rollout_failure_budget_max', { rollout_id: 'r-1' })).toBe(3);
    expect(sampleSum(families, 'refit_rollout_approvals_waiting', { rollout_id: 'r-1' })).toBe(1);
    expect(sampleSum(families, 'refit_rollout_hosts', { rollout_id: 'r-1', state: 'failed' })).toBe(1);
  });
});

describe('the metrics address', () => {
  it('takes host:port, [v6]:port, :port and off, and names the flag of a bad one', () => {
    expect(parseListen('127.0.0.1:9464', '--metrics-listen')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseListen('[::1]:0', '--metrics-listen')).toEqual({ host: '::1', port: 0 });
    expect(parseListen(':9464', 'x')).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(parseListen('off', 'x')).toBe('off');
    expect(() => parseListen('9464', 'REFIT_METRICS_LISTEN')).toThrow(/REFIT_METRICS_LISTEN "9464" must be host:port/);
    expect(() => parseListen('h:70000', '--metrics-listen')).toThrow(/--metrics-listen/);
  });
});

describe('the metrics endpoint', () => {
  const log = pino({ level: 'silent' });
  it('runs on without it when its default address is taken, and refuses an address the operator chose', async () => {
    const first = await openMetricsEndpoint(
      { address: { host: '127.0.0.1', port: 0 }, explicit: true, from: '--metrics-listen' },
      log,
      'test',
    );
    try {
      const port = Number(new URL(first.url!).port);
      const taken = { host: '127.0.0.1', port };
      const byDefault = await openMetricsEndpoint(
        { address: taken, explicit: false, from: 'the default' },
        log,
        'test',
      );
      expect(byDefault.url).toBeUndefined();
      await expect(
        openMetricsEndpoint({ address: taken, explicit: true, from: 'REFIT_METRICS_LISTEN' }, log, 'test'),
      ).rejects.toThrow(
        new RegExp(`cannot serve metrics on http://127.0.0.1:${port}: .*EADDRINUSE.*REFIT_METRICS_LISTEN`),
      );
      // Until it follows a NATS connection, /healthz says so.
      const res = await fetch(`${first.url}/healthz`);
      expect([res.status, await res.text()]).toEqual([503, 'not connected to NATS yet\n']);
      expect((await fetch(`${first.url}/nothing`)).status).toBe(404);
      expect((await fetch(`${first.url}/metrics`, { method: 'POST' })).status).toBe(405);
    } finally {
      await first.close();
    }
  });
});
