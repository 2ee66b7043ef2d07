import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomicSync } from '../activities/files.js';
import { TASK_QUEUE } from '../schemas/names.js';

/**
 * Where refit finds its servers. Order: explicit overrides, environment variables (the same ones
 * docker-compose.yml sets), the `stack.json` that `refit dev up` writes, then defaults.
 */
export interface RefitConfig {
  /** State directory of the embedded stack and of credentials (REFIT_HOME, default ./.refit). */
  home: string;
  temporalAddress: string;
  temporalNamespace: string;
  taskQueue: string;
  natsUrl: string;
  /** Replicas of streams and buckets (REFIT_NATS_REPLICAS): 1 for one server, 3 for a cluster. */
  natsReplicas: number;
  /** Credentials file for this process's NATS identity (REFIT_NATS_CREDS); default by identity under home. */
  natsCreds?: string;
  /** TLS to NATS (REFIT_NATS_TLS_CA, _CERT, _KEY); absent: plain TCP. */
  natsTls?: NatsTls;
  /** TLS to Temporal (REFIT_TEMPORAL_TLS, REFIT_TEMPORAL_TLS_CA, _CERT, _KEY, _SERVER_NAME); absent: plain TCP. */
  temporalTls?: TemporalTls;
}

/** How a client reaches NATS over TLS: the CA that signed the server's certificate, and its own pair if the server verifies clients. */
export interface NatsTls {
  caFile: string;
  certFile?: string;
  keyFile?: string;
}

/** How a client reaches Temporal over TLS: no CA means the system's roots; a pair means mutual TLS. */
export interface TemporalTls {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** The name to expect in the server's certificate when it differs from the address's host. */
  serverName?: string;
}

/** One nats-server of the stack. */
export interface NatsNode {
  name: string;
  url: string;
  monitorUrl: string;
  pid: number;
}

export interface StackFile {
  /** With `--tls`, `pid` is the TLS front (workers/dev/tls-front.ts) and `serverPid` the dev server behind it. */
  temporal: { address: string; uiAddress: string; pid: number; serverPid?: number };
  /**
   * `url` lists every node's client URL, comma-separated; `monitorUrl` and `pid` are the first node's.
   * `nodes` (each server) and `replicas` (of streams and buckets) are absent from a single-server
   * stack.json written before clusters.
   */
  nats: { url: string; monitorUrl: string; pid: number; nodes?: NatsNode[]; replicas?: number };
  /** Present when `refit dev up --tls` made the stack: the files clients use. */
  tls?: { nats: NatsTls; temporal: TemporalTls };
  home: string;
  startedAt: string;
}

export function refitHome(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.REFIT_HOME ?? '.refit');
}

/** Where `refit dev up` records the embedded stack it started. */
export const stackFilePath = (home: string) => path.join(home, 'stack.json');

export function readStackFile(home: string): StackFile | undefined {
  const file = stackFilePath(home);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as StackFile;
}

export function loadConfig(overrides: Partial<RefitConfig> = {}, env: NodeJS.ProcessEnv = process.env): RefitConfig {
  const home = overrides.home ?? refitHome(env);
  const stack = readStackFile(home);
  const creds = overrides.natsCreds ?? env.REFIT_NATS_CREDS;
  return {
    home,
    temporalAddress:
      overrides.temporalAddress ?? env.REFIT_TEMPORAL_ADDRESS ?? stack?.temporal.address ?? '127.0.0.1:7233',
    temporalNamespace: overrides.temporalNamespace ?? env.REFIT_TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: overrides.taskQueue ?? env.REFIT_TASK_QUEUE ?? TASK_QUEUE,
    natsUrl: overrides.natsUrl ?? env.REFIT_NATS_URL ?? stack?.nats.url ?? 'nats://127.0.0.1:4222',
    natsReplicas:
      overrides.natsReplicas ??
      positiveInt('REFIT_NATS_REPLICAS', env.REFIT_NATS_REPLICAS ?? String(stack?.nats.replicas ?? 1)),
    ...(creds !== undefined ? { natsCreds: creds } : {}),
    ...optional('natsTls', overrides.natsTls ?? natsTlsFromEnv(env) ?? stack?.tls?.nats),
    ...optional('temporalTls', overrides.temporalTls ?? temporalTlsFromEnv(env) ?? stack?.tls?.temporal),
  };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [k in K]?: V } {
  return value === undefined ? {} : ({ [key]: value } as { [k in K]: V });
}

/** A client certificate comes with its key, and the other way round. */
function pair(prefix: string, cert: string | undefined, key: string | undefined) {
  if ((cert === undefined) !== (key === undefined))
    throw new Error(`${prefix}_CERT and ${prefix}_KEY go together: set both or neither`);
  return cert !== undefined && key !== undefined ? { certFile: cert, keyFile: key } : {};
}

const set = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);

/** REFIT_NATS_TLS_CA, _CERT, _KEY; undefined when none is set. */
export function natsTlsFromEnv(env: NodeJS.ProcessEnv): NatsTls | undefined {
  const ca = set(env.REFIT_NATS_TLS_CA);
  const client = pair('REFIT_NATS_TLS', set(env.REFIT_NATS_TLS_CERT), set(env.REFIT_NATS_TLS_KEY));
  if (ca === undefined) {
    if (client.certFile !== undefined) throw new Error('REFIT_NATS_TLS_CERT needs REFIT_NATS_TLS_CA');
    return undefined;
  }
  return { caFile: ca, ...client };
}

function temporalTlsFromEnv(env: NodeJS.ProcessEnv): TemporalTls | undefined {
  const on = set(env.REFIT_TEMPORAL_TLS);
  if (on !== undefined && !['1', 'true', '0', 'false'].includes(on))
    throw new Error(`REFIT_TEMPORAL_TLS must be 1, true, 0 or false, not "${on}"`);
  const ca = set(env.REFIT_TEMPORAL_TLS_CA);
  const name = set(env.REFIT_TEMPORAL_TLS_SERVER_NAME);
  const client = pair('REFIT_TEMPORAL_TLS', set(env.REFIT_TEMPORAL_TLS_CERT), set(env.REFIT_TEMPORAL_TLS_KEY));
  const any = ca !== undefined || name !== undefined || client.certFile !== undefined;
  if (on === '0' || on === 'false') {
    if (any) throw new Error('REFIT_TEMPORAL_TLS=false contradicts the REFIT_TEMPORAL_TLS_* settings');
    return undefined;
  }
  if (on === undefined && !any) return undefined;
  return {
    ...(ca !== undefined ? { caFile: ca } : {}),
    ...client,
    ...(name !== undefined ? { serverName: name } : {}),
  };
}

/** Connection options for the Temporal SDK (client and worker): `tls` as TLSConfig, or nothing. */
export function temporalTlsOptions(tls: TemporalTls | undefined) {
  if (tls === undefined) return {};
  return {
    tls: {
      ...(tls.caFile !== undefined ? { serverRootCACertificate: readTlsFile(tls.caFile, 'Temporal CA') } : {}),
      ...(tls.certFile !== undefined && tls.keyFile !== undefined
        ? {
            clientCertPair: {
              crt: readTlsFile(tls.certFile, 'Temporal client certificate'),
              key: readTlsFile(tls.keyFile, 'Temporal client key'),
            },
          }
        : {}),
      ...(tls.serverName !== undefined ? { serverNameOverride: tls.serverName } : {}),
    },
  };
}

function readTlsFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new Error(`cannot read the ${what} ${file}: ${(cause as Error).message}`, { cause });
  }
}

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number of at least 1, not "${text}"`);
  return n;
}

/** Where `refit dev` keeps the credentials of an identity ("controller", "cli" or a host id). */
export function credsFile(home: string, identity: { host: string } | 'controller' | 'cli'): string {
  return typeof identity === 'string'
    ? path.join(home, 'creds', `${identity}.nk`)
    : path.join(home, 'creds', 'hosts', `${identity.host}.nk`);
}

/** Every nats-server of a stack, also of a stack.json that predates clusters. */
export function natsNodes(stack: StackFile): NatsNode[] {
  return (
    stack.nats.nodes ?? [{ name: 'nats', url: stack.nats.url, monitorUrl: stack.nats.monitorUrl, pid: stack.nats.pid }]
  );
}

export function writeStackFile(home: string, stack: StackFile): void {
  writeFileAtomicSync(stackFilePath(home), JSON.stringify(stack, null, 2) + '\n', { mode: 0o600 });
}
