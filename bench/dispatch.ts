import path from 'node:path';
import { StorageType } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { DispatchRequest } from '../schemas/activities.js';
import { writeJsonAtomic } from '../activities/files.js';
import { CommandStatus } from '../schemas/command.js';
import { VerifyParams } from '../schemas/steps.js';
import { BUCKETS, hostWorkflowId } from '../schemas/names.js';
import type { HostMaintenanceInput, HostMaintenanceResult } from '../schemas/rollout.js';
import { startFleet, type Harness } from './harness.js';
import { BENCH_TASK_QUEUE, ECHO_SUBJECT } from './names.js';
import { benchPlan, NO_WAIT } from './plans.js';
import { median, percentiles, round, type Percentiles } from './stats.js';

export interface DispatchOptions {
  /** Pairs of (workflow with one bare activity, hostMaintenance with one no-op step), one at a time. */
  rounds: number;
  natsRequests: number;
}

export interface DispatchResult {
  rawNatsRequestReply: Percentiles;
  /** The durable writes the path is made of: a KV put on a file-store bucket, the host's atomic state-file write. */
  unitCosts: { jetStreamKvPut: Percentiles; stateFileWrite: Percentiles };
  /** Schedule → completion of the activity, from each workflow's history (server timestamps). */
  activity: { bare: Percentiles; dispatch: Percentiles; ratioP50: number; ratioP99: number };
  /** Median milliseconds of each leg of a dispatched step. */
  dispatchBreakdownMs: {
    temporalToActivity: number;
    activityToHostAccepted: number;
    hostAcceptedToRunning: number;
    hostRunningToSucceeded: number;
    hostSucceededToActivityCompleted: number;
  };
  /** Client start → result of a whole workflow: one bare activity, or the real hostMaintenance with one step. */
  endToEnd: { bareWorkflow: Percentiles; hostMaintenance: Percentiles; ratioP50: number; ratioP99: number };
}

const WARM_UP = 10;

/** The parts of a Temporal history event this file reads; ids and seconds are Longs or numbers. */
interface HistoryEvent {
  eventId?: unknown;
  eventTime?: { seconds?: unknown; nanos?: number | null } | null;
  activityTaskScheduledEventAttributes?: {
    activityType?: { name?: string | null } | null;
    activityId?: string | null;
  } | null;
  activityTaskStartedEventAttributes?: { scheduledEventId?: unknown } | null;
  activityTaskCompletedEventAttributes?: { scheduledEventId?: unknown } | null;
}

/**
 * 1. What the whole dispatch path adds over a bare Temporal activity, and over raw NATS. Pairs of
 * workflows run one at a time, interleaved: the bench's `bareStep` (one no-op activity) and the real
 * `hostMaintenance` with one no-op step on a simulated host in its own process. In both, the activity
 * runs on its workflow's own task queue, as in a rollout.
 */
export async function measureDispatch(h: Harness, o: DispatchOptions): Promise<DispatchResult> {
  const fleet = await startFleet(h, 'probe', { hosts: 1, prefix: 'probe', stepMs: NO_WAIT, echoSubject: ECHO_SUBJECT });
  const hostId = fleet.info.hostIds[0] as string;
  const request: DispatchRequest = {
    rolloutId: 'bench-dispatch',
    hostId,
    kind: 'verify',
    mode: 'apply',
    params: VerifyParams.parse({ targets: [{ address: '10.77.0.1' }], count: 1 }),
  };

  h.say(`dispatch: ${o.natsRequests} raw NATS requests, KV puts and state-file writes`);
  const payload = new TextEncoder().encode(
    JSON.stringify({ ...request, commandId: 'x'.repeat(80), issuedAt: new Date().toISOString() }),
  );
  const nats: number[] = [];
  for (let i = 0; i < o.natsRequests + 100; i++) {
    const t0 = performance.now();
    await h.nc.request(ECHO_SUBJECT, payload, { timeout: 5_000 });
    if (i >= 100) nats.push(performance.now() - t0);
  }
  const unitCosts = await measureUnitCosts(h, o.natsRequests);

  const hostTimes = await watchHostStatuses(h, hostId);
  try {
    h.say(`dispatch: ${o.rounds} rounds of (workflow with one bare activity, hostMaintenance with one no-op step)`);
    const plan = benchPlan({
      name: 'bench-dispatch',
      hosts: [hostId],
      steps: ['verify'],
      canary: 0,
      batchSize: 1,
      maxInFlight: 1,
    });
    const input: HostMaintenanceInput = {
      rolloutId: request.rolloutId,
      hostId,
      steps: plan.steps,
      onHostFailure: plan.onHostFailure,
    };
    const client = { bare: [] as number[], full: [] as number[] };
    const activity = { bare: [] as number[], dispatch: [] as number[] };
    const legs = {
      pickup: [] as number[],
      toHost: [] as number[],
      accepted: [] as number[],
      running: [] as number[],
      back: [] as number[],
    };
    for (let i = -WARM_UP; i < o.rounds; i++) {
      let t0 = performance.now();
      const bare = await h.client.workflow.start('bareStep', {
        taskQueue: BENCH_TASK_QUEUE,
        workflowId: `bench-bare-step-${i}`,
        args: [request],
      });
      await bare.result();
      const bareMs = performance.now() - t0;
      t0 = performance.now();
      const full = await h.client.workflow.start<(i: HostMaintenanceInput) => Promise<HostMaintenanceResult>>(
        'hostMaintenance',
        { taskQueue: h.config.taskQueue, workflowId: hostWorkflowId(hostId), args: [input] },
      );
      const result = await full.result();
      const fullMs = performance.now() - t0;
      if (result.state !== 'succeeded')
        throw new Error(`the one-step host maintenance ended ${result.state}: ${result.error}`);
      if (i < 0) continue;
      client.bare.push(bareMs);
      client.full.push(fullMs);
      for (const a of activitiesOf((await bare.fetchHistory()).events ?? [])) {
        if (a.type === 'noopStep') activity.bare.push(a.completed - a.scheduled);
      }
      for (const a of activitiesOf((await full.fetchHistory()).events ?? [])) {
        // Since decision 0040 the one step is a run of one (dispatchRun, its command id `…#0`), which also
        // stores the host's start and end audit events.
        if (a.type !== 'dispatchStep' && a.type !== 'dispatchRun') continue;
        activity.dispatch.push(a.completed - a.scheduled);
        legs.pickup.push(a.started - a.scheduled);
        const commandId = `${full.workflowId}/${full.firstExecutionRunId}/${a.activityId}`;
        const seen = hostTimes.get(a.type === 'dispatchRun' ? `${commandId}#0` : commandId);
        // Agents before 0023 wrote `accepted`, then `running`; since, one `running` says both.
        const accepted = seen?.accepted ?? seen?.running;
        if (accepted !== undefined && seen?.running !== undefined && seen.succeeded !== undefined) {
          legs.toHost.push(accepted - a.started);
          legs.accepted.push(seen.running - accepted);
          legs.running.push(seen.succeeded - seen.running);
          legs.back.push(a.completed - seen.succeeded);
        }
      }
    }
    const [b, d] = [percentiles(activity.bare), percentiles(activity.dispatch)];
    const [cb, cf] = [percentiles(client.bare), percentiles(client.full)];
    return {
      rawNatsRequestReply: percentiles(nats),
      unitCosts,
      activity: { bare: b, dispatch: d, ratioP50: round(d.p50 / b.p50), ratioP99: round(d.p99 / b.p99) },
      dispatchBreakdownMs: {
        temporalToActivity: median(legs.pickup),
        activityToHostAccepted: median(legs.toHost),
        hostAcceptedToRunning: median(legs.accepted),
        hostRunningToSucceeded: median(legs.running),
        hostSucceededToActivityCompleted: median(legs.back),
      },
      endToEnd: {
        bareWorkflow: cb,
        hostMaintenance: cf,
        ratioP50: round(cf.p50 / cb.p50),
        ratioP99: round(cf.p99 / cb.p99),
      },
    };
  } finally {
    hostTimes.stop();
    await fleet.stop();
  }
}

interface ActivityTimes {
  type: string;
  activityId: string;
  scheduled: number;
  started: number;
  completed: number;
}

/** Each completed activity of a history with the server's timestamps of its three events. */
export function activitiesOf(events: readonly HistoryEvent[]): ActivityTimes[] {
  const byScheduled = new Map<number, Partial<ActivityTimes>>();
  const out: ActivityTimes[] = [];
  for (const e of events) {
    const at = Number(e.eventTime?.seconds ?? NaN) * 1000 + (e.eventTime?.nanos ?? 0) / 1e6;
    if (e.activityTaskScheduledEventAttributes) {
      const attrs = e.activityTaskScheduledEventAttributes;
      byScheduled.set(Number(e.eventId), {
        type: attrs.activityType?.name ?? '',
        activityId: attrs.activityId ?? '',
        scheduled: at,
      });
    } else if (e.activityTaskStartedEventAttributes) {
      const a = byScheduled.get(Number(e.activityTaskStartedEventAttributes.scheduledEventId));
      if (a) a.started = at;
    } else if (e.activityTaskCompletedEventAttributes) {
      const a = byScheduled.get(Number(e.activityTaskCompletedEventAttributes.scheduledEventId));
      if (a?.type !== undefined && a.activityId !== undefined && a.scheduled !== undefined && a.started !== undefined) {
        out.push({ type: a.type, activityId: a.activityId, scheduled: a.scheduled, started: a.started, completed: at });
      }
    }
  }
  return out;
}

/** When the host stored each state of each of its commands, by command id (host clock = this machine's). */
async function watchHostStatuses(h: Harness, hostId: string) {
  const kv = await new Kvm(h.nc).open(BUCKETS.results);
  const watcher = await kv.watch({ key: `${hostId}.>` });
  const times = new Map<string, Partial<Record<CommandStatus['state'], number>>>();
  void (async () => {
    for await (const entry of watcher) {
      if (entry.operation !== 'PUT') continue;
      const status = CommandStatus.safeParse(entry.json());
      if (!status.success) continue;
      const seen = times.get(status.data.commandId) ?? {};
      seen[status.data.state] ??= Date.parse(status.data.updatedAt);
      times.set(status.data.commandId, seen);
    }
  })();
  return { get: (commandId: string) => times.get(commandId), stop: () => watcher.stop() };
}

/**
 * What one durable write costs here: a put on a file-store KV bucket (like the results bucket), and
 * the host's own atomic state-file write (journal, audit spool, sim state: write, fsync, rename, fsync dir).
 */
async function measureUnitCosts(h: Harness, samples: number): Promise<DispatchResult['unitCosts']> {
  const kv = await new Kvm(h.nc).create('bench_unit_cost', { history: 1, storage: StorageType.File });
  const puts: number[] = [];
  const value = JSON.stringify({ state: 'running', progress: { pct: 50, message: 'x'.repeat(200) } });
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    await kv.put(`probe.k${i % 10}`, value);
    puts.push(performance.now() - t0);
  }
  await kv.destroy();
  const file = path.join(h.home, 'state-file-probe.json');
  const writes: number[] = [];
  for (let i = 0; i < Math.min(samples, 500); i++) {
    const t0 = performance.now();
    await writeJsonAtomic(file, { state: 'running', progress: { pct: 50, message: 'x'.repeat(200) } });
    writes.push(performance.now() - t0);
  }
  return { jetStreamKvPut: percentiles(puts), stateFileWrite: percentiles(writes) };
}
