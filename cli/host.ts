import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { HostId } from '../schemas/common.js';
import { Driver, PRESENCE_INTERVAL_MS } from '../schemas/host.js';
import { credsFile, loadConfig } from '../workers/config.js';
import { createLogger } from '../workers/log.js';
import { InvalidLabelsError, parseLabels, startHost, runUntilStopped } from '../workers/host/host-process.js';
import {
  createDriver,
  defaultHostId,
  defaultStateDir,
  enrollRequest,
  hostSeedFile,
  startLine,
} from '../workers/host/agent.js';
import { linuxChoice, type LinuxChoice } from '../workers/host/linux-choice.js';
import { connectPolicy } from '../workers/connect-retry.js';
import { StateDirError } from '../workers/host/state-lock.js';
import { InvalidFailSpecError, parseFailSpec, type FailSpec } from '../workers/sim/fail-spec.js';
import { UsageError } from '../schemas/errors.js';
import { AGENT_METRICS_LISTEN, InvalidListenAddressError, metricsListen } from '../workers/metrics/listen.js';
import { MetricsListenError } from '../workers/metrics/server.js';
import { checkedSetting as checked } from '../schemas/problems.js';
import { positiveInteger, positiveNumber } from './numeric-options.js';

interface HostCommandOptions {
  id?: string;
  driver: string;
  labels?: string;
  creds?: string;
  stateDir?: string;
  presenceInterval: number;
  speed?: number;
  metricsListen?: string;
  vmBackend?: string;
  pveNode?: string;
  pveNodes?: string;
}

interface SimFleetCommandOptions {
  hosts: number;
  prefix: string;
  fail?: string;
  speed?: number;
  presenceInterval: number;
  stateDir?: string;
}

export function registerHostCommands(program: Command): void {
  const host = program
    .command('host')
    .description('run the host worker (agent) of one host: presence, its command queue, its steps')
    .option('--id <hostId>', 'this host id (a DNS label; default: the short hostname)')
    .option(
      '--driver <driver>',
      'where steps run: linux (this machine, as root), lab (a lab host) or sim (simulated)',
      'linux',
    )
    .option('--labels <k=v,...>', 'inventory labels, e.g. rack=r1,role=hypervisor')
    .option(
      '--creds <file>',
      "this host's NATS credentials (default: REFIT_NATS_CREDS, then the one `refit dev enroll` made, then the host's own key in its state dir, made on first start: admit it with refit enroll)",
    )
    .option(
      '--state-dir <dir>',
      'where the command journal and driver state live (default: linux /var/lib/refit as root, else $XDG_STATE_HOME/refit or ~/.local/state/refit; lab <REFIT_HOME>/lab/agents/<id>; sim <REFIT_HOME>/sim/<id>)',
    )
    .option('--presence-interval <ms>', 'how often presence is published', positiveInteger, PRESENCE_INTERVAL_MS)
    .option('--speed <x>', 'sim only: 2 runs steps twice as fast, 0.5 half as fast', positiveNumber)
    .option(
      '--vm-backend <backend>',
      'linux only: who runs the VMs: proxmox (qm, pvesh, ha-manager), libvirt (virsh) or auto (proxmox where qm and pvesh are on PATH)',
      'auto',
    )
    .option('--pve-node <name>', "linux on Proxmox: this node's name in the cluster (default: the short hostname)")
    .option(
      '--pve-nodes <hostId=node,...>',
      'linux on Proxmox: node names of refit host ids that differ from them (default: a host id is its node name)',
    )
    .option(
      '--metrics-listen <host:port>',
      `serve /metrics and /healthz there, or off (REFIT_METRICS_LISTEN; default ${AGENT_METRICS_LISTEN}; port 0 takes a free port)`,
    )
    .action(async (opts: HostCommandOptions) => {
      const { hostId, driver, stateDir, labDir, config } = hostAndStateDir(opts);
      const log = createLogger('refit-host', driver === 'sim' ? { hostId, simulated: true } : { hostId, driver });
      const central = credsFile(config.home, { host: hostId });
      const given = opts.creds ?? config.natsCreds ?? (existsSync(central) ? central : undefined);
      if (given === undefined) {
        const [, publicKey] = enrollRequest(hostId, stateDir).split(' ');
        process.stderr.write(
          `refit host ${hostId}: own NATS identity ${publicKey}; waiting until admitted (refit enroll --pubkey ${publicKey} --id ${hostId})\n`,
        );
      }
      const policy = connectPolicy();
      const metrics = withUsage(() => metricsListen(opts.metricsListen, process.env, AGENT_METRICS_LISTEN));
      const running = await withUsageAsync(async () =>
        startHost({
          hostId,
          natsUrl: config.natsUrl,
          natsTls: config.natsTls,
          credsFile: given ?? hostSeedFile(stateDir),
          // With its own key a host waits, however long, to be admitted.
          connect: given === undefined ? { ...policy, timeoutMs: Number.POSITIVE_INFINITY } : policy,
          labels: withUsage(() => parseLabels(opts.labels ?? '')),
          presenceIntervalMs: opts.presenceInterval,
          stateDir,
          log,
          metrics,
          driver: await createDriver({
            driver,
            hostId,
            stateDir,
            labDir,
            log,
            ...optional('speed', opts.speed),
            linux: linuxFlags(opts),
          }),
        }),
      );
      process.stderr.write(
        startLine('refit host', { hostId, driver, natsUrl: config.natsUrl, stateDir, metricsUrl: running.metricsUrl }),
      );
      await runUntilStopped(running);
    });

  host
    .command('enroll-request')
    .description(
      'print "<hostId> <publicKey>" of this host\'s own NATS identity (made on first use) for refit enroll --from',
    )
    .action((_opts: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<HostCommandOptions>();
      const { hostId, stateDir } = hostAndStateDir(opts);
      process.stdout.write(`${enrollRequest(hostId, stateDir)}\n`);
    });

  program
    .command('sim-fleet')
    .description('run a SIMULATED fleet in this process: each host with its own NATS identity and host worker')
    .requiredOption('--hosts <n>', 'how many hosts', positiveInteger)
    .option('--prefix <prefix>', 'host ids are <prefix>-001, <prefix>-002, …', 'sim')
    .option('--fail <host=step,...>', 'inject failures: host=step fails every time, host=step:once only the first')
    .option('--speed <x>', '2 runs steps twice as fast, 0.5 half as fast', positiveNumber)
    .option('--presence-interval <ms>', 'how often each host publishes presence', positiveInteger, PRESENCE_INTERVAL_MS)
    .option('--state-dir <dir>', 'where the simulated hosts live (default: <REFIT_HOME>/sim)')
    .action(async (opts: SimFleetCommandOptions) => {
      const fail: FailSpec = withUsage(() => parseFailSpec(opts.fail ?? ''));
      const config = loadConfig();
      const log = createLogger('refit-sim-fleet', { simulated: true });
      const stateDir = path.resolve(opts.stateDir ?? path.join(config.home, 'sim'));
      // Enrolment reaches the dev stack (and the Temporal client with it): loaded only here, so
      // that `refit host` stays small.
      const { startSimFleet } = await import('../workers/sim/fleet.js');
      const fleet = await withUsageAsync(() =>
        startSimFleet({
          home: config.home,
          natsUrl: config.natsUrl,
          natsTls: config.natsTls,
          hosts: opts.hosts,
          prefix: opts.prefix,
          fail,
          stateDir,
          log,
          presenceIntervalMs: opts.presenceInterval,
          ...optional('speed', opts.speed),
        }),
      );
      const ids = fleet.hostIds;
      process.stderr.write(
        `refit sim-fleet: ${ids.length} SIMULATED hosts ${ids[0]}…${ids.at(-1)} (sim driver: no commands run, no packets sent), NATS ${config.natsUrl}, state ${stateDir}\n`,
      );
      await runUntilStopped(fleet);
    });
}

/** The host id (default: the short hostname), driver and state directory `refit host` and its enroll-request use. */
function hostAndStateDir(opts: HostCommandOptions) {
  const hostId = checked(
    HostId,
    opts.id ?? defaultHostId(),
    opts.id === undefined ? 'the short hostname (give --id)' : '--id',
  );
  const driver = checked(Driver, opts.driver, '--driver');
  const config = loadConfig();
  const labDir = path.join(config.home, 'lab');
  const stateDir = path.resolve(opts.stateDir ?? defaultStateDir(driver, hostId, { home: config.home, labDir }));
  return { hostId, driver, stateDir, labDir, config };
}

/** The linux driver's VM backend and Proxmox node names from the flags, checked: a hostile name is a usage error. */
function linuxFlags(opts: HostCommandOptions): LinuxChoice {
  const flag = (from: string, value: string | undefined) => (value === undefined ? undefined : { value, from });
  return linuxChoice({
    vmBackend: flag('--vm-backend', opts.vmBackend),
    pveNode: flag('--pve-node', opts.pveNode),
    pveNodes: flag('--pve-nodes', opts.pveNodes),
  });
}

function optional<K extends string>(key: K, value: number | undefined): { [P in K]?: number } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: number };
}

function withUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (
      err instanceof InvalidLabelsError ||
      err instanceof InvalidFailSpecError ||
      err instanceof InvalidListenAddressError
    )
      throw new UsageError(err.message);
    throw err;
  }
}

async function withUsageAsync<T>(start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    if (err instanceof InvalidFailSpecError) throw new UsageError(err.message);
    if (err instanceof StateDirError || err instanceof MetricsListenError) throw new UsageError(err.message, 1);
    throw err;
  }
}
