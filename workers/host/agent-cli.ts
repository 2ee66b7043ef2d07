import path from 'node:path';
import { parseArgs } from 'node:util';
import { HostId } from '../../schemas/common.js';
import { Driver, PRESENCE_INTERVAL_MS } from '../../schemas/host.js';
import { checkedSetting as checked } from '../../schemas/problems.js';
import { UsageError } from '../../schemas/errors.js';
import { natsTlsFromEnv, refitHome, type NatsTls } from '../config.js';
import { connectPolicy } from '../connect-retry.js';
import { createLogger } from '../log.js';
import { ensureSeed } from '../nkey.js';
import { createDriver, defaultHostId, defaultStateDir, enrollRequest, hostSeedFile, startLine } from './agent.js';
import { linuxChoice, type LinuxChoice } from './linux-choice.js';
import { parseLabels, startHost, runUntilStopped, InvalidLabelsError } from './host-process.js';
import { AGENT_VERSION } from './version.js';
import { StateDirError } from './state-lock.js';
import { AGENT_METRICS_LISTEN, InvalidListenAddressError, metricsListen } from '../metrics/listen.js';
import type { MetricsSetting } from '../metrics/endpoint.js';
import { MetricsListenError } from '../metrics/server.js';

/**
 * The command line of the host agent as installed on a hypervisor (`refit-host`, entry point
 * agent-main.ts). Flags override the environment (/etc/refit/host.env).
 */
export const AGENT_USAGE = `usage: refit-host [run|enroll-request] [options]

  run              run the host agent (the default)
  enroll-request   print "<hostId> <publicKey>" of this host's own NATS identity (made on first use)

options (environment variable in brackets):
  --nats-url <urls>        NATS server(s), comma-separated [REFIT_NATS_URL] (default nats://127.0.0.1:4222)
  --creds <file>           NATS credentials [REFIT_NATS_CREDS] (default: the host's own nkey, <state-dir>/nats.nk)
  TLS to NATS (environment only): REFIT_NATS_TLS_CA, and REFIT_NATS_TLS_CERT with REFIT_NATS_TLS_KEY
                           when the server verifies clients
  --id <hostId>            this host's id [REFIT_HOST_ID] (default: the short hostname)
  --labels <k=v,...>       inventory labels [REFIT_HOST_LABELS]
  --driver <linux|lab|sim> where steps run [REFIT_DRIVER] (default linux)
  --state-dir <dir>        journal, backups, identity [REFIT_STATE_DIR] (default /var/lib/refit as root,
                           $XDG_STATE_HOME/refit or ~/.local/state/refit otherwise)
  --lab-dir <dir>          lab driver only: the lab [REFIT_LAB_DIR] (default <REFIT_HOME>/lab)
  --vm-backend <backend>   linux only: proxmox (qm, pvesh, ha-manager), libvirt (virsh) or auto [REFIT_VM_BACKEND]
                           (default auto: proxmox where qm and pvesh are on PATH)
  --pve-node <name>        linux on Proxmox: this node's name [REFIT_PVE_NODE] (default: the short hostname)
  --pve-nodes <id=node,..> linux on Proxmox: node names of host ids that differ from them [REFIT_PVE_NODES]
                           (default: a host id is its node name)
  --presence-interval <ms> how often presence is published (default ${PRESENCE_INTERVAL_MS})
  --metrics-listen <addr>  serve /metrics and /healthz on host:port, or off [REFIT_METRICS_LISTEN]
                           (default ${AGENT_METRICS_LISTEN}; port 0 takes a free port)
  --version, --help
`;

export interface AgentSettings {
  command: 'run' | 'enroll-request';
  hostId: string;
  driver: Driver;
  natsUrl: string;
  natsTls?: NatsTls;
  credsFile?: string;
  labels: string;
  stateDir: string;
  labDir: string;
  presenceIntervalMs: number;
  metrics: MetricsSetting;
  /** Linux driver only: its VM backend and Proxmox node names. */
  linux: LinuxChoice;
}

/** Flags, then the environment, then defaults; every bad value a UsageError naming where it came from. */
export function agentSettings(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): AgentSettings | 'help' | 'version' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'nats-url': { type: 'string' },
        creds: { type: 'string' },
        id: { type: 'string' },
        labels: { type: 'string' },
        driver: { type: 'string' },
        'state-dir': { type: 'string' },
        'lab-dir': { type: 'string' },
        'vm-backend': { type: 'string' },
        'pve-node': { type: 'string' },
        'pve-nodes': { type: 'string' },
        'presence-interval': { type: 'string' },
        'metrics-listen': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values: v, positionals } = parsed;
  if (v.help) return 'help';
  if (v.version) return 'version';
  if (positionals.length > 1) throw new UsageError(`one command at most, not "${positionals.join(' ')}"`);
  const command = positionals[0] ?? 'run';
  if (command !== 'run' && command !== 'enroll-request')
    throw new UsageError(`unknown command "${command}" (run or enroll-request)`);
  const pick = (flag: string, name: string, value: string | undefined) =>
    value !== undefined
      ? { value, from: `--${flag}` }
      : env[name] !== undefined && env[name] !== ''
        ? { value: env[name], from: name }
        : undefined;

  const id = pick('id', 'REFIT_HOST_ID', v.id);
  const hostId = checked(
    HostId,
    id?.value ?? defaultHostId(),
    id?.from ?? 'the short hostname (give --id or REFIT_HOST_ID)',
  );
  const driverIn = pick('driver', 'REFIT_DRIVER', v.driver);
  const driver = checked(Driver, driverIn?.value ?? 'linux', driverIn?.from ?? '--driver');
  const home = refitHome(env);
  const labDir = path.resolve(pick('lab-dir', 'REFIT_LAB_DIR', v['lab-dir'])?.value ?? path.join(home, 'lab'));
  const stateIn = pick('state-dir', 'REFIT_STATE_DIR', v['state-dir']);
  if (stateIn !== undefined && !path.isAbsolute(stateIn.value))
    throw new UsageError(`${stateIn.from} "${stateIn.value}" must be an absolute path`);
  const stateDir = stateIn?.value ?? defaultStateDir(driver, hostId, { home, labDir, env });
  const creds = pick('creds', 'REFIT_NATS_CREDS', v.creds);
  let natsTls: NatsTls | undefined;
  try {
    natsTls = natsTlsFromEnv(env);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const interval = v['presence-interval'];
  const presenceIntervalMs = interval === undefined ? PRESENCE_INTERVAL_MS : Number(interval);
  if (!Number.isInteger(presenceIntervalMs) || presenceIntervalMs <= 0)
    throw new UsageError(`--presence-interval must be a whole number of milliseconds above 0, not "${interval}"`);
  let metrics: MetricsSetting;
  try {
    metrics = metricsListen(v['metrics-listen'], env, AGENT_METRICS_LISTEN);
  } catch (err) {
    if (err instanceof InvalidListenAddressError) throw new UsageError(err.message);
    throw err;
  }
  const linux = linuxChoice({
    vmBackend: pick('vm-backend', 'REFIT_VM_BACKEND', v['vm-backend']),
    pveNode: pick('pve-node', 'REFIT_PVE_NODE', v['pve-node']),
    pveNodes: pick('pve-nodes', 'REFIT_PVE_NODES', v['pve-nodes']),
  });
  return {
    command,
    hostId,
    metrics,
    linux,
    driver,
    natsUrl: pick('nats-url', 'REFIT_NATS_URL', v['nats-url'])?.value ?? 'nats://127.0.0.1:4222',
    ...(creds !== undefined ? { credsFile: path.resolve(creds.value) } : {}),
    ...(natsTls !== undefined ? { natsTls } : {}),
    labels: pick('labels', 'REFIT_HOST_LABELS', v.labels)?.value ?? '',
    stateDir,
    labDir,
    presenceIntervalMs,
  };
}

async function run(s: AgentSettings): Promise<void> {
  let labels;
  try {
    labels = parseLabels(s.labels);
  } catch (err) {
    if (err instanceof InvalidLabelsError) throw new UsageError(err.message);
    throw err;
  }
  const log = createLogger('refit-host', { hostId: s.hostId, driver: s.driver, version: AGENT_VERSION });
  const credsFile = s.credsFile ?? hostSeedFile(s.stateDir);
  // A host with its own key waits, however long, until the operator admits it (refit enroll).
  const policy = connectPolicy();
  const connect = s.credsFile === undefined ? { ...policy, timeoutMs: Number.POSITIVE_INFINITY } : policy;
  if (s.credsFile === undefined) {
    const publicKey = ensureSeed(credsFile);
    process.stderr.write(
      `refit-host ${s.hostId}: NATS identity ${publicKey} (admit it with: refit enroll --pubkey ${publicKey} --id ${s.hostId})\n`,
    );
  }
  const driver = await createDriver({
    driver: s.driver,
    hostId: s.hostId,
    stateDir: s.stateDir,
    labDir: s.labDir,
    log,
    linux: s.linux,
  });
  const host = await asUsage(() =>
    startHost({
      hostId: s.hostId,
      natsUrl: s.natsUrl,
      natsTls: s.natsTls,
      credsFile,
      driver,
      labels,
      stateDir: s.stateDir,
      log,
      presenceIntervalMs: s.presenceIntervalMs,
      connect,
      metrics: s.metrics,
    }),
  );
  process.stderr.write(startLine(`refit-host ${AGENT_VERSION}`, { ...s, metricsUrl: host.metricsUrl }));
  await runUntilStopped(host);
}

/** The whole agent command line: what agent-main.ts runs. */
export async function agentMain(argv: string[]): Promise<void> {
  const settings = agentSettings(argv);
  if (settings === 'help') return void process.stdout.write(AGENT_USAGE);
  if (settings === 'version') return void process.stdout.write(`${AGENT_VERSION}\n`);
  if (settings.command === 'enroll-request') {
    return void process.stdout.write(`${enrollRequest(settings.hostId, settings.stateDir)}\n`);
  }
  await run(settings);
}

/** A state directory held by another agent, or no directory: the operator's to fix, said without a stack (exit 1). */
async function asUsage<T>(start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    if (err instanceof StateDirError || err instanceof MetricsListenError) throw new UsageError(err.message, 1);
    throw err;
  }
}
