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
}

/** One nats-server of the stack. */
export interface NatsNode {
  name: string;
  url: string;
  monitorUrl: string;
  pid: number;
}

export interface StackFile {
  temporal: { address: string; uiAddress: string; pid: number };
  /**
   * `url` lists every node's client URL, comma-separated; `monitorUrl` and `pid` are the first node's.
   * `nodes` (each server) and `replicas` (of streams and buckets) are absent from a single-server
   * stack.json written before clusters.
   */
  nats: { url: string; monitorUrl: string; pid: number; nodes?: NatsNode[]; replicas?: number };
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
  };
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
