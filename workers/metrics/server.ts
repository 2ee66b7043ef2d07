import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RefitError } from '../../schemas/errors.js';
import type { Logger } from '../log.js';
import { urlOf } from './listen.js';

export class MetricsListenError extends RefitError {}

/** Healthy, or the reasons it is not (each a sentence an operator can act on). */
export type Health = { ok: true } | { ok: false; reasons: string[] };

export interface MetricsServerOptions {
  host: string;
  port: number;
  /** The text exposition of every metric, made at each scrape. */
  metrics: () => Promise<string>;
  health: () => Promise<Health>;
  log: Logger;
}

export interface MetricsServer {
  /** Where it listens, e.g. http://127.0.0.1:9464 (the real port when 0 was asked for). */
  readonly url: string;
  close(): Promise<void>;
}

export const EXPOSITION_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * `/metrics` (Prometheus text format) and `/healthz` (200 `ok`, or 503 with one reason a line) over
 * plain HTTP, GET and HEAD only. Nothing here changes anything: it is safe on any address the
 * operator chooses, and it binds loopback unless told otherwise.
 */
export async function startMetricsServer(o: MetricsServerOptions): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    const answer = async (): Promise<[number, string, string]> => {
      if (path === '/metrics') return [200, EXPOSITION_TYPE, await o.metrics()];
      if (path === '/healthz') {
        const h = await o.health();
        return h.ok ? [200, 'text/plain', 'ok\n'] : [503, 'text/plain', h.reasons.map((r) => `${r}\n`).join('')];
      }
      return [404, 'text/plain', 'not found: try /metrics or /healthz\n'];
    };
    answer().then(
      ([status, type, body]) => {
        res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => {
        o.log.warn({ err, path }, 'cannot answer a metrics request');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(
        new MetricsListenError(`cannot serve metrics on ${urlOf(o.host, o.port)}: ${err.message}`, { cause: err }),
      ),
    );
    server.listen(o.port, o.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = urlOf(o.host, port);
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
