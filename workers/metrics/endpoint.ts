import type { NatsConnection } from '@nats-io/transport-node';
import type { StepMetrics } from '../../activities/step-metrics.js';
import type { Logger } from '../log.js';
import type { ListenAddress } from './listen.js';
import { followNats } from './nats-link.js';
import { Registry, STEP_SECONDS_BUCKETS } from './registry.js';
import { MetricsListenError, startMetricsServer, type Health, type MetricsServer } from './server.js';

/** Where to serve, and whether the operator chose it (see `metricsListen`). */
export interface MetricsSetting {
  address: ListenAddress;
  explicit: boolean;
  /** The flag or variable it came from, for errors. */
  from: string;
}

/** A check /healthz runs: undefined when fine, else why not. */
export type HealthCheck = () => Promise<string | undefined> | string | undefined;

/** One process's /metrics and /healthz: its registry, its health checks, more text appended at scrape. */
export interface MetricsEndpoint {
  readonly registry: Registry;
  /** Where it listens; undefined when off (or its default address was taken). */
  readonly url: string | undefined;
  /** Health and `refit_nats_*` from now on follow this connection. */
  followNats(nc: NatsConnection, where: string): void;
  /** Another check /healthz must pass. */
  check(name: string, check: HealthCheck): void;
  /** Text appended to every scrape (the Temporal SDK's own metrics). */
  append(text: () => Promise<string>): void;
  close(): Promise<void>;
}

/**
 * Serve /metrics and /healthz as `setting` says. An address the operator chose that cannot be bound
 * fails the start (MetricsListenError); the default one, taken (a second agent on the machine), is
 * logged and the process runs on without them. Until `followNats`, /healthz answers 503.
 */
export async function openMetricsEndpoint(
  setting: MetricsSetting | undefined,
  log: Logger,
  what: string,
): Promise<MetricsEndpoint> {
  const registry = new Registry();
  const checks = new Map<string, HealthCheck>([['nats', () => 'not connected to NATS yet']]);
  const appended: (() => Promise<string>)[] = [];
  let server: MetricsServer | undefined;
  if (setting !== undefined && setting.address !== 'off') {
    try {
      server = await startMetricsServer({
        ...setting.address,
        log,
        metrics: async () => registry.render() + (await Promise.all(appended.map((a) => a()))).join(''),
        health: async () => {
          const found = await Promise.all(
            [...checks.values()].map(async (c) => {
              try {
                return await c();
              } catch (err) {
                return (err as Error).message;
              }
            }),
          );
          const reasons = found.filter((r): r is string => r !== undefined);
          return reasons.length === 0 ? { ok: true } : ({ ok: false, reasons } satisfies Health);
        },
      });
      log.info({ metrics: `${server.url}/metrics`, healthz: `${server.url}/healthz` }, `${what} metrics served`);
    } catch (err) {
      if (setting.explicit || !(err instanceof MetricsListenError))
        throw new MetricsListenError(`${(err as Error).message} (${setting.from}; "off" serves none)`, { cause: err });
      log.warn(
        { err: err.message },
        `${what} runs without /metrics and /healthz: the default address is taken (set --metrics-listen or REFIT_METRICS_LISTEN)`,
      );
    }
  }
  return {
    registry,
    url: server?.url,
    followNats(nc, where) {
      const link = followNats(nc, where, registry);
      checks.set('nats', () => link.problem());
    },
    check(name, check) {
      checks.set(name, check);
    },
    append(text) {
      appended.push(text);
    },
    close: async () => server?.close(),
  };
}

/** `<prefix>_steps_total` by kind, mode and outcome and `<prefix>_step_duration_seconds`, fed by StepMetrics. */
export function stepMetricsOn(registry: Registry, prefix: string, whose: string): StepMetrics {
  const total = registry.counter(`${prefix}_steps_total`, `Steps ${whose} that ended, by kind, mode and outcome.`, [
    'kind',
    'mode',
    'outcome',
  ]);
  const seconds = registry.histogram(
    `${prefix}_step_duration_seconds`,
    `How long steps ${whose} took, by kind, mode and outcome.`,
    STEP_SECONDS_BUCKETS,
    ['kind', 'mode', 'outcome'],
  );
  return {
    stepEnded({ kind, mode, outcome, seconds: s }) {
      total.inc({ kind, mode, outcome });
      seconds.observe({ kind, mode, outcome }, s);
    },
  };
}
