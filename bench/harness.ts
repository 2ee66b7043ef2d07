import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { Client, Connection } from '@temporalio/client';
import pLimit from 'p-limit';
import { waitForHostsOnline } from '../workers/control/inventory.js';
import { hostWorkflowId } from '../schemas/names.js';
import { getRolloutStatus, rolloutEnd } from '../workers/control/rollout-status.js';
import type { RolloutStatus } from '../schemas/rollout.js';
import {
  controllerIdentity,
  freePorts,
  startStack,
  stopStack,
  type TemporalServerOptions,
} from '../workers/dev/stack.js';
import type { ControllerTuning } from '../workers/controller.js';
import { loadConfig, type RefitConfig, type StackFile } from '../workers/config.js';
import { connectNats } from '../workers/nats.js';
import { startChild, type Child } from './child.js';
import type { FleetSpec } from './fleet-process.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Things to undo, last started first; each runs once even if the bench is interrupted twice. */
export class Cleanup {
  private readonly steps: { name: string; run: () => Promise<unknown> }[] = [];

  defer(name: string, run: () => Promise<unknown>): void {
    this.steps.push({ name, run });
  }

  async runAll(say: (line: string) => void): Promise<void> {
    for (let step = this.steps.pop(); step !== undefined; step = this.steps.pop()) {
      await step.run().catch((err: unknown) => say(`while stopping ${step?.name}: ${String(err)}`));
    }
  }
}

export interface Harness {
  home: string;
  stack: StackFile;
  config: RefitConfig;
  client: Client;
  /** A connection with the controller's identity, for the bench's own reads. */
  nc: NatsConnection;
  controller: Child<unknown>;
  env: NodeJS.ProcessEnv;
  cleanup: Cleanup;
  log: (name: string) => string;
  say(line: string): void;
  /** The dev server's own Prometheus metrics. */
  temporalMetricsUrl: string;
}

export interface BenchStack {
  home: string;
  stack: StackFile;
  config: RefitConfig;
  /** The environment that points a child process at this stack. */
  env: NodeJS.ProcessEnv;
  /** The log file of a child process, in the home's logs folder. */
  log: (name: string) => string;
  /** The dev server's own Prometheus metrics. */
  temporalMetricsUrl: string;
}

/**
 * A fresh home in the temp dir (named `<prefix>…`) and the embedded stack on free loopback ports,
 * both registered with `cleanup`.
 */
export async function startBenchStack(
  cleanup: Cleanup,
  say: (line: string) => void,
  {
    prefix,
    keepHome,
    temporalServer = {},
  }: { prefix: string; keepHome: boolean; temporalServer?: TemporalServerOptions },
): Promise<BenchStack> {
  const home = mkdtempSync(path.join(os.tmpdir(), prefix));
  mkdirSync(path.join(home, 'logs'), { recursive: true });
  cleanup.defer('the home', async () => {
    if (keepHome) say(`kept ${home}`);
    else rmSync(home, { recursive: true, force: true });
  });
  // One call, so that no two of them are the same port.
  const [temporalPort, temporalUiPort, natsPort, natsMonitorPort, metricsPort] = (await freePorts(5)) as [
    number,
    number,
    number,
    number,
    number,
  ];
  cleanup.defer('the stack', () => stopStack(home));
  const stack = await startStack({
    home,
    temporalPort,
    temporalUiPort,
    natsPort,
    natsMonitorPort,
    temporalServer: { metricsPort, ...temporalServer },
  });
  say(`stack up in ${home}: Temporal ${stack.temporal.address}, NATS ${stack.nats.url}`);
  const config = loadConfig({ home, temporalAddress: stack.temporal.address, natsUrl: stack.nats.url }, {});
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REFIT_HOME: home,
    REFIT_TEMPORAL_ADDRESS: stack.temporal.address,
    REFIT_NATS_URL: stack.nats.url,
    REFIT_LOG_LEVEL: process.env.REFIT_LOG_LEVEL ?? 'info',
  };
  return {
    home,
    stack,
    config,
    env,
    log: (name: string) => path.join(home, 'logs', `${name}.log`),
    temporalMetricsUrl: `http://127.0.0.1:${temporalServer.metricsPort ?? metricsPort}/metrics`,
  };
}

/**
 * A fresh home in the temp dir, the embedded stack on free loopback ports, the controller process,
 * a Temporal client and a NATS connection. Everything is registered with `cleanup`.
 */
export async function startHarness(
  cleanup: Cleanup,
  say: (line: string) => void,
  keepHome: boolean,
  o: {
    temporalDb?: 'file' | 'memory';
    temporalPragmas?: Record<string, string>;
    controllerWorker?: ControllerTuning;
  } = {},
): Promise<Harness> {
  const { home, stack, config, env, log, temporalMetricsUrl } = await startBenchStack(cleanup, say, {
    prefix: 'refit-bench-',
    keepHome,
    temporalServer: { inMemory: o.temporalDb === 'memory', sqlitePragmas: o.temporalPragmas ?? {} },
  });
  if (o.temporalDb === 'memory') say('Temporal dev server: workflows kept in memory, not in SQLite');
  if (Object.keys(o.temporalPragmas ?? {}).length > 0)
    say(`Temporal dev server: SQLite pragmas ${JSON.stringify(o.temporalPragmas)}`);

  const controller = await startChild<unknown>(
    'controller',
    path.join(here, 'controller-process.js'),
    [],
    { ...env, REFIT_BENCH_CONTROLLER_TUNING: JSON.stringify(o.controllerWorker ?? {}) },
    log('controller'),
  );
  cleanup.defer('the controller', () => controller.stop());
  const connection = await Connection.connect({ address: stack.temporal.address });
  cleanup.defer('the Temporal client', () => connection.close());
  const nc = await connectNats(controllerIdentity(home, stack.nats.url));
  cleanup.defer('the NATS connection', () => nc.close());
  return {
    home,
    stack,
    config,
    client: new Client({ connection }),
    nc,
    controller,
    env,
    cleanup,
    log,
    say,
    temporalMetricsUrl,
  };
}

/** A simulated fleet in its own process, started once all its hosts report presence. */
export async function startFleet(
  h: Harness,
  name: string,
  spec: Omit<FleetSpec, 'stateDir'>,
  o: { waitOnline?: boolean } = {},
): Promise<Child<{ hostIds: string[] }>> {
  const full: FleetSpec = { ...spec, stateDir: path.join(h.home, 'sim', name) };
  const fleet = await startChild<{ hostIds: string[] }>(
    `fleet ${name}`,
    path.join(here, 'fleet-process.js'),
    [JSON.stringify(full)],
    h.env,
    h.log(`fleet-${name}`),
  );
  h.cleanup.defer(`fleet ${name}`, () => fleet.stop());
  if (o.waitOnline ?? true) await waitForHostsOnline(h.nc, fleet.info.hostIds, { timeoutMs: 300_000 });
  return fleet;
}

/**
 * The rollout's final status. A rollout that pauses (its failure budget is spent) or outlives
 * `timeoutMs` would wait for an operator forever: it is terminated, and its last status returned.
 * With `progressEveryMs`, its counts are said that often.
 */
export async function awaitRollout(
  h: Harness,
  id: string,
  timeoutMs: number,
  { progressEveryMs }: { progressEveryMs?: number } = {},
): Promise<RolloutStatus> {
  const handle = h.client.workflow.getHandle(id);
  const result = rolloutEnd(handle);
  const deadline = Date.now() + timeoutMs;
  let saidAt = Date.now();
  for (;;) {
    const done = await Promise.race([result, sleep(3_000).then(() => undefined)]);
    if (done !== undefined) return done;
    const status = await getRolloutStatus(h.client, id).catch(() => undefined);
    if (status && progressEveryMs !== undefined && Date.now() - saidAt >= progressEveryMs) {
      saidAt = Date.now();
      const c = status.counts;
      h.say(
        `rollout ${id}: ${c.succeeded} succeeded, ${c.running} running, ${c.failed} failed, run ${status.runs + 1}`,
      );
    }
    const late = Date.now() > deadline;
    if (status?.state === 'paused' || late) {
      const why = late ? `not done after ${timeoutMs / 1000} s` : `paused: ${status?.message ?? ''}`;
      h.say(`rollout ${id} ${why}; terminating it`);
      // It may have ended in between: then its own result stands.
      const ended = await handle.terminate(`bench: ${why}`).then(
        () => false,
        () => true,
      );
      if (ended) return result;
      await result.catch(() => undefined);
      const failed = status ?? (await getRolloutStatus(h.client, id));
      return { ...failed, state: 'failed', message: why };
    }
  }
}

/** Read until `done` says the answer is complete or `timeoutMs` has passed; the last answer. */
export async function settle<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await sleep(2_000);
  }
}

/**
 * History events of each run of a rollout (it continues as new), oldest first. Temporal's
 * visibility lists a run a little after it closes: read until it lists the runs the status counted.
 * The last run's length comes from its own record.
 */
export async function rolloutRunEvents(h: Harness, status: RolloutStatus): Promise<number[]> {
  const runs = await settle(
    async () => {
      const runs: { startedAt: number; runId: string; events: number }[] = [];
      for await (const run of h.client.workflow.list({ query: `WorkflowId = '${status.id}'` })) {
        runs.push({ startedAt: run.startTime.getTime(), runId: run.runId, events: run.historyLength });
      }
      return runs.sort((a, b) => a.startedAt - b.startedAt);
    },
    (runs) => runs.length === status.runs + 1,
    120_000,
  );
  const last = runs.at(-1);
  if (last) last.events = (await h.client.workflow.getHandle(status.id, last.runId).describe()).historyLength;
  return runs.map((r) => r.events);
}

/** History events of each host's host workflow (its latest run). */
export function hostHistoryLengths(h: Harness, hostIds: readonly string[]): Promise<number[]> {
  return pLimit(16).map(hostIds, async (hostId) =>
    Number((await h.client.workflow.getHandle(hostWorkflowId(hostId)).describe()).historyLength),
  );
}
