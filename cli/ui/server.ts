import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HostId } from '../../schemas/common.js';
import { UsageError } from '../../schemas/errors.js';
import type { UiReader } from './views.js';

/** The page and its two assets, served from the package (no build step): cli/ui/static. */
const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/**
 * Every response: no inline script or style runs even if some text got past the page's escaping,
 * nothing is framed, nothing is sniffed, nothing is cached.
 */
const HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export interface UiServerOptions {
  reader: UiReader;
  host: string;
  port: number;
  /** Host headers other than these are refused (DNS rebinding); undefined accepts any. */
  allowedHosts?: (port: number) => ReadonlySet<string>;
  /** Told of each API read that failed. */
  onError?: (path: string, err: unknown) => void;
}

export interface UiServer {
  url: string;
  close(): Promise<void>;
}

export async function startUiServer(opts: UiServerOptions): Promise<UiServer> {
  const assets = await loadAssets();
  const server = http.createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      opts.onError?.(req.url ?? '', err);
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
      else res.end();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const allowed = opts.allowedHosts?.((server.address() as AddressInfo).port);
    if (allowed !== undefined && !allowed.has((req.headers.host ?? '').toLowerCase())) {
      send(res, 421, { error: `this server answers only to ${[...allowed].join(', ')}` });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, { error: 'the web view is read-only' });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://ui.invalid');
    const asset = STATIC[url.pathname];
    if (asset !== undefined) {
      res.writeHead(200, { ...HEADERS, 'content-type': asset.type });
      res.end(req.method === 'HEAD' ? undefined : assets.get(asset.file));
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204, HEADERS);
      res.end();
      return;
    }
    if (!url.pathname.startsWith('/api/')) {
      send(res, 404, { error: `no page ${url.pathname}` });
      return;
    }
    const route = api(url, opts.reader);
    if (route.status !== 200) {
      send(res, route.status, { error: route.error });
      return;
    }
    try {
      send(res, 200, await route.read());
    } catch (err) {
      opts.onError?.(url.pathname, err);
      // A rollout that does not exist is the operator's error; anything else is the stack's.
      if (err instanceof UsageError && err.exitCode === 1 && /^no rollout /.test(err.message))
        send(res, 404, { error: err.message });
      else send(res, 503, { error: err instanceof Error ? err.message : String(err) });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${shownHost}:${port}/`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

type Route = { status: 200; read: () => Promise<unknown> } | { status: 400 | 404; error: string };

/** `/api/rollouts`, `/api/rollouts/<id>`, `/api/hosts/<hostId>?rollout=<id>`: what each page shows, as JSON. */
function api(url: URL, reader: UiReader): Route {
  let parts: string[];
  try {
    parts = url.pathname.split('/').slice(2).map(decodeURIComponent);
  } catch {
    return { status: 400, error: 'the path is not valid percent-encoding' };
  }
  if (parts[0] === 'rollouts' && parts.length === 1) {
    const limit = Number(url.searchParams.get('limit') ?? '50');
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      return { status: 400, error: 'limit: expected a whole number from 1 to 1000' };
    return { status: 200, read: () => reader.rollouts(limit) };
  }
  if (parts[0] === 'rollouts' && parts.length === 2 && parts[1] !== '') {
    const id = parts[1] as string;
    return { status: 200, read: () => reader.rollout(id) };
  }
  if (parts[0] === 'hosts' && parts.length === 2) {
    const hostId = parts[1] as string;
    if (!HostId.safeParse(hostId).success) return { status: 400, error: `${hostId} is not a host id` };
    const rollout = url.searchParams.get('rollout') ?? undefined;
    return { status: 200, read: () => reader.host(hostId, rollout === '' ? undefined : rollout) };
  }
  return { status: 404, error: `no API ${url.pathname}` };
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { ...HEADERS, 'content-type': 'application/json; charset=utf-8' });
  res.end(`${JSON.stringify(body)}\n`);
}

async function loadAssets(): Promise<Map<string, Buffer>> {
  const dir = new URL('./static/', import.meta.url);
  const files = [...new Set(Object.values(STATIC).map((a) => a.file))];
  const loaded = await Promise.all(
    files.map(async (file) => {
      try {
        return [file, await readFile(new URL(file, dir))] as const;
      } catch (cause) {
        throw new Error(`the web view's ${file} is missing from ${dir.pathname} (run npm run build)`, { cause });
      }
    }),
  );
  return new Map(loaded);
}
