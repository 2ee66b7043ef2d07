import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SimDriver } from '../activities/host/sim/driver.js';
import { until } from '../activities/poll.js';
import { credsFile, loadConfig } from '../workers/config.js';
import { startControllerWorker, type ControllerWorker } from '../workers/controller.js';
import { enrollHosts } from '../workers/dev/enroll.js';
import { startHost, type RunningHost } from '../workers/host/host-process.js';
import { startRollout } from '../workers/control/rollouts.js';
import {
  CLI,
  cliEnv,
  plan,
  quietLog,
  rolloutReaches,
  runCli,
  tempDir,
  temporalClient,
  testConfig,
} from './helpers/controller.js';
import { startOnlineSimFleet } from './helpers/fleet.js';
import { ownNatsServer } from './helpers/nats-server.js';
import { parseExposition, sampleSum, type MetricFamily } from './helpers/prometheus.js';
import { testStack, uniqueHostId } from './helpers/stack.js';
import { dashboardMetricNames } from './helpers/dashboard.js';

const stack = testStack();
const PORT_0 = { address: { host: '127.0.0.1', port: 0 }, explicit: true, from: '--metrics-listen' } as const;
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const clean of cleanups.reverse()) await clean().catch(() => undefined);
  await stack.closeAll();
});

async function scrape(url: string | undefined): Promise<MetricFamily[]> {
  const res = await fetch(`${url}/metrics`);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

async function healthz(url: string | undefined): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}/healthz`);
  return { status: res.status, text: await res.text() };
}

/** `refit host --driver sim` as its own process, serving metrics on a free port; resolves with that address. */
async function spawnAgent(
  config: ReturnType<typeof testConfig>,
  hostId: string,
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [CLI, 'host', '--driver', 'sim', '--id', hostId, '--presence-interval', '500', '--metrics-listen', '127.0.0.1:0'],
    { env: { ...cliEnv(config), REFIT_HOME: stack.home }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  cleanups.push(async () => {
    if (child.exitCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = await until(() => /metrics (http:\/\/127\.0\.0\.1:\d+)\/metrics/.exec(stderr)?.[1], {
    what: () => `refit host to say where its metrics are; stderr: ${stderr}`,
    timeoutMs: 30_000,
    intervalMs: 100,
  });
  return { child, url };
}

describe('metrics of a running controller and host agent', () => {
  it('count the steps of a sim rollout, its approval wait, and the SDK runtime metrics', async () => {
    const config = testConfig(stack);
    const controller = await startControllerWorker(config, quietLog, { metrics: PORT_0 });
    cleanups.push(() => controller.shutdown());
    const [agentHost, fleetHost] = [uniqueHostId('met-a'), uniqueHostId('met-b')];
    await enrollHosts(stack.home, [agentHost]);
    const agent = await spawnAgent(config, agentHost);
    const fleet = await startOnlineSimFleet(stack, config, { hosts: [fleetHost], speed: 4 });
    cleanups.push(() => fleet.stop());

    const before = await scrape(controller.metricsUrl);
    expect(sampleSum(before, 'refit_steps_total')).toBe(0);
    expect(sampleSum(before, 'refit_nats_connected')).toBe(1);
    expect(await healthz(controller.metricsUrl)).toEqual({ status: 200, text: 'ok\n' });
    expect(await healthz(agent.url)).toEqual({ status: 200, text: 'ok\n' });

    const temporal = await temporalClient(config);
    cleanups.push(() => temporal.close());
    const id = `metrics-${agentHost}`;
    await startRollout(
      temporal.client,
      config.taskQueue,
      plan(`apiVersion: refit/v1
kind: Campaign
name: metrics
targets: { hosts: [${agentHost}, ${fleetHost}] }
waves: { canary: 1, batchSize: 1, maxInFlight: 1 }
approvals: { afterCanary: true }
steps:
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 5 }
`),
      id,
    );
    await rolloutReaches(temporal.client, id, 'the approval after the canary', (s) => s.pendingApproval !== null);
    const waiting = await until(
      async () => {
        const m = await scrape(controller.metricsUrl);
        return sampleSum(m, 'refit_rollout_approvals_waiting', { rollout_id: id }) === 1 ? m : undefined;
      },
      { what: 'the controller to report the approval waiting', timeoutMs: 20_000, intervalMs: 500 },
    );
    expect(sampleSum(waiting, 'refit_steps_total', { kind: 'verify', mode: 'apply', outcome: 'succeeded' })).toBe(1);
    expect(sampleSum(waiting, 'refit_rollout_failure_budget_used', { rollout_id: id })).toBe(0);
    expect(sampleSum(waiting, 'refit_rollout_failure_budget_max', { rollout_id: id })).toBe(1);
    expect(sampleSum(waiting, 'refit_rollouts_running')).toBe(1);

    expect((await runCli(config, ['rollout', 'approve', id])).code).toBe(0);
    const end = await rolloutReaches(temporal.client, id, 'completed', (s) => s.state === 'completed');
    expect(end.counts.succeeded).toBe(2);

    const after = await scrape(controller.metricsUrl);
    expect(sampleSum(after, 'refit_steps_total', { kind: 'verify', mode: 'apply', outcome: 'succeeded' })).toBe(2);
    expect(sampleSum(after, 'refit_step_duration_seconds_count', { kind: 'verify' })).toBe(2);
    expect(sampleSum(after, 'refit_step_duration_seconds_sum', { kind: 'verify' })).toBeGreaterThan(0);
    expect(sampleSum(after, 'refit_temporal_sdk_metrics_up')).toBe(1);
    expect(after.some((f) => f.name.startsWith('temporal_') && f.samples.length > 0)).toBe(true);
    // Read at most every 5 s: a rollout that ended leaves the gauges at the next read.
    await until(
      async () => {
        const m = await scrape(controller.metricsUrl);
        return (
          sampleSum(m, 'refit_rollouts_running') === 0 &&
          !m.some((f) => f.samples.some((x) => x.labels.rollout_id === id))
        );
      },
      { what: 'the ended rollout to leave the gauges', timeoutMs: 20_000, intervalMs: 500 },
    );

    const host = await scrape(agent.url);
    expect(sampleSum(host, 'refit_host_steps_total', { kind: 'verify', mode: 'apply', outcome: 'succeeded' })).toBe(1);
    expect(sampleSum(host, 'refit_host_step_duration_seconds_count', { kind: 'verify' })).toBe(1);
    expect(sampleSum(host, 'refit_audit_spool_depth')).toBeGreaterThanOrEqual(0);
    expect(sampleSum(host, 'refit_host_info', { host_id: agentHost, driver: 'sim' })).toBe(1);
    expect(sampleSum(host, 'refit_nats_connected')).toBe(1);

    // The Grafana dashboard reads only what these processes export (rollout gauges while one runs).
    const exported = new Set([...waiting, ...after, ...host].flatMap((f) => f.samples.map((x) => x.name)));
    const read = dashboardMetricNames();
    expect(read.length).toBeGreaterThan(10);
    expect(read.filter((name) => !exported.has(name))).toEqual([]);
  });

  it('answer /healthz 503 with the reason while nats-server is stopped, and ok again once it is back', async () => {
    const hostId = uniqueHostId('health');
    const nats = await ownNatsServer([hostId]);
    cleanups.push(() => nats.remove());
    await nats.start();
    const config = loadConfig(
      {
        home: nats.home,
        natsUrl: nats.url,
        temporalAddress: stack.temporalAddress,
        taskQueue: testConfig(stack).taskQueue,
      },
      {},
    );
    const controller: ControllerWorker = await startControllerWorker(config, quietLog, { metrics: PORT_0 });
    cleanups.push(() => controller.shutdown());
    const host: RunningHost = await startHost({
      hostId,
      natsUrl: nats.url,
      credsFile: credsFile(nats.home, { host: hostId }),
      driver: await SimDriver.open({ hostId, stateDir: tempDir('health-sim') }),
      labels: {},
      stateDir: path.join(tempDir('health'), 'host'),
      log: quietLog,
      metrics: PORT_0,
    });
    cleanups.push(() => host.stop());
    for (const url of [controller.metricsUrl, host.metricsUrl])
      expect(await healthz(url)).toEqual({ status: 200, text: 'ok\n' });

    await nats.stop();
    for (const url of [controller.metricsUrl, host.metricsUrl]) {
      const down = await until(
        async () => {
          const h = await healthz(url);
          return h.status === 503 ? h : undefined;
        },
        { what: `${url}/healthz to answer 503`, timeoutMs: 20_000, intervalMs: 200 },
      );
      expect(down.text).toMatch(new RegExp(`NATS at ${nats.url} lost since .*; reconnecting`));
      expect(sampleSum(await scrape(url), 'refit_nats_connected')).toBe(0);
    }

    await nats.start();
    for (const url of [controller.metricsUrl, host.metricsUrl]) {
      await until(async () => (await healthz(url)).status === 200, {
        what: `${url}/healthz to answer ok again`,
        timeoutMs: 30_000,
        intervalMs: 200,
      });
      expect(sampleSum(await scrape(url), 'refit_nats_reconnects_total')).toBeGreaterThanOrEqual(1);
    }
  });

  it('refuses an address it cannot serve on, naming where it came from', async () => {
    const taken = await startControllerWorker(testConfig(stack), quietLog, { metrics: PORT_0 });
    cleanups.push(() => taken.shutdown());
    const port = new URL(taken.metricsUrl!).port;
    const out = await runCli(testConfig(stack), ['worker', '--metrics-listen', `127.0.0.1:${port}`]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(
      new RegExp(`cannot serve metrics on http://127.0.0.1:${port}: .*EADDRINUSE.*--metrics-listen`),
    );
    const bad = await runCli(testConfig(stack), ['worker', '--metrics-listen', 'nine']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--metrics-listen "nine" must be host:port/);
  });
});
