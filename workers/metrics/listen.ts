import { RefitError } from '../../schemas/errors.js';

export class InvalidListenAddressError extends RefitError {}

/** Where /metrics and /healthz are served: a host and port (0: any free port), or not at all. */
export type ListenAddress = { host: string; port: number } | 'off';

/** The controller's default: loopback only, the port Prometheus' exporters commonly start from. */
export const CONTROLLER_METRICS_LISTEN = '127.0.0.1:9464';
/** A host agent's default: next to the controller's, so both fit on one machine. */
export const AGENT_METRICS_LISTEN = '127.0.0.1:9465';

/** `127.0.0.1:9464`, `[::1]:9464`, `0.0.0.0:9464`, `:9464` (every address), `off`; `from` names the flag or variable. */
export function parseListen(text: string, from: string): ListenAddress {
  const value = text.trim();
  if (value === 'off') return 'off';
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65_535)
    throw new InvalidListenAddressError(
      `${from} "${text}" must be host:port (e.g. 127.0.0.1:9464, [::1]:9464, :9464; port 0 takes any free port) or off`,
    );
  return { host: m[1] ?? (m[2] === '' ? '0.0.0.0' : m[2]!), port };
}

/**
 * The flag, else the environment variable (REFIT_METRICS_LISTEN), else the default. `explicit` says
 * whether the operator chose it: an address they chose must be served, a default one may be taken
 * (several agents on one machine), and then the process runs on without metrics.
 */
export function metricsListen(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
  fallback: string,
): { address: ListenAddress; explicit: boolean; from: string } {
  if (flag !== undefined)
    return { address: parseListen(flag, '--metrics-listen'), explicit: true, from: '--metrics-listen' };
  const fromEnv = env.REFIT_METRICS_LISTEN;
  if (fromEnv !== undefined && fromEnv !== '')
    return { address: parseListen(fromEnv, 'REFIT_METRICS_LISTEN'), explicit: true, from: 'REFIT_METRICS_LISTEN' };
  return { address: parseListen(fallback, 'the default'), explicit: false, from: 'the default' };
}

/** `http://127.0.0.1:9464`, `http://[::1]:9464`. */
export function urlOf(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
