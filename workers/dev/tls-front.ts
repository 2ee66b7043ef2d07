import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

/**
 * The TLS front of the embedded Temporal server. `temporal server start-dev` (CLI 1.x) has no TLS
 * options, so `refit dev up --tls` runs the dev server on a loopback port of its own and this
 * process in front of it: TLS (h2 by ALPN, as gRPC clients ask) with the dev certificates, the
 * client's certificate required when `--verify` is given, and each connection passed on unchanged.
 * Started detached by workers/dev/stack.ts, stopped with the stack.
 */
export interface TlsFrontOptions {
  listen: { host: string; port: number };
  to: { host: string; port: number };
  certFile: string;
  keyFile: string;
  caFile: string;
  /** Require a client certificate signed by the CA (mutual TLS). */
  verifyClients: boolean;
}

export function startTlsFront(o: TlsFrontOptions): Promise<tls.Server> {
  const server = tls.createServer(
    {
      cert: readFileSync(o.certFile),
      key: readFileSync(o.keyFile),
      ca: readFileSync(o.caFile),
      requestCert: o.verifyClients,
      rejectUnauthorized: o.verifyClients,
      ALPNProtocols: ['h2'],
    },
    (client) => {
      const upstream = net.connect(o.to.port, o.to.host);
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close);
      upstream.on('error', close);
      client.pipe(upstream).pipe(client);
    },
  );
  // A client that fails the handshake (no certificate, wrong CA) is dropped; the front goes on.
  server.on('tlsClientError', () => undefined);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, () => resolve(server));
  });
}

/** The arguments stack.ts passes; every file is under the stack's home, which is how its pid is recognised. */
export function tlsFrontArgs(o: TlsFrontOptions): string[] {
  return [
    '--listen',
    `${o.listen.host}:${o.listen.port}`,
    '--to',
    `${o.to.host}:${o.to.port}`,
    '--cert',
    o.certFile,
    '--key',
    o.keyFile,
    '--ca',
    o.caFile,
    ...(o.verifyClients ? ['--verify'] : []),
  ];
}

function parseArgs(argv: string[]): TlsFrontOptions {
  const value = (flag: string) => {
    const i = argv.indexOf(flag);
    const v = i >= 0 ? argv[i + 1] : undefined;
    if (v === undefined) throw new Error(`tls-front: ${flag} is missing`);
    return v;
  };
  const address = (flag: string) => {
    const [host, port] = value(flag).split(/:(?=\d+$)/);
    if (host === undefined || port === undefined) throw new Error(`tls-front: ${flag} needs host:port`);
    return { host, port: Number(port) };
  };
  return {
    listen: address('--listen'),
    to: address('--to'),
    certFile: value('--cert'),
    keyFile: value('--key'),
    caFile: value('--ca'),
    verifyClients: argv.includes('--verify'),
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  startTlsFront(parseArgs(process.argv.slice(2))).catch((err: unknown) => {
    process.stderr.write(`tls-front: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
