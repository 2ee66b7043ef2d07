import type { NatsConnection } from '@nats-io/transport-node';
import type { Registry } from './registry.js';

/** What /healthz and /metrics know of a NATS connection: up or down since when, and how often it came back. */
export interface NatsLink {
  /** Undefined while connected; the reason otherwise. */
  problem(): string | undefined;
  readonly reconnects: number;
}

/**
 * Follow the connection's status: a server lost is noticed by the client at once when it closes the
 * connection, within SERVER_LOSS_DETECTION's pings when it hangs. Registers
 * `refit_nats_connected` and `refit_nats_reconnects_total`.
 */
export function followNats(nc: NatsConnection, where: string, registry: Registry): NatsLink {
  let lostSince: Date | undefined;
  let reconnects = 0;
  const reconnected = registry.counter(
    'refit_nats_reconnects_total',
    'Times this process reconnected to NATS after losing it.',
  );
  reconnected.touch();
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') lostSince ??= new Date();
      else if (s.type === 'reconnect') {
        lostSince = undefined;
        reconnects += 1;
        reconnected.inc();
      }
    }
  })();
  const problem = () => {
    if (nc.isClosed()) return `NATS connection to ${where} is closed`;
    if (lostSince !== undefined) return `NATS at ${where} lost since ${lostSince.toISOString()}; reconnecting`;
    return undefined;
  };
  registry.gauge('refit_nats_connected', '1 while this process is connected to NATS, 0 otherwise.', () => [
    { value: problem() === undefined ? 1 : 0 },
  ]);
  return {
    problem,
    get reconnects() {
      return reconnects;
    },
  };
}
