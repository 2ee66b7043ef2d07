import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { enrollHosts } from '../workers/dev/enroll.js';
import { hostWorkflowId } from '../schemas/names.js';
import { PRESENCE_INTERVAL_MS } from '../schemas/host.js';
import { credsFile } from '../workers/config.js';
import type { HostMaintenanceInput, HostMaintenanceResult } from '../schemas/rollout.js';
import type { Harness } from './harness.js';
import { waitForHostsOnline } from '../workers/control/inventory.js';
import { benchPlan } from './plans.js';
import { cpuBetween, sampleProcess } from './proc.js';
import { round } from './stats.js';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** How the host worker is started: the `refit` CLI, or the host worker's own entry without the CLI. */
export type FootprintEntry = 'refit host' | 'run-sim-host';

export interface FootprintResult {
  entry: FootprintEntry;
  command: string;
  hostId: string;
  presenceIntervalMs: number;
  idle: { seconds: number; rssMb: number; cpuPctOfCore: number };
  busy: { seconds: number; steps: number; rssMb: number; peakRssMb: number; cpuPctOfCore: number };
}

function argvOf(h: Harness, entry: FootprintEntry, hostId: string): string[] {
  const stateDir = path.join(h.home, 'sim', hostId);
  const presence = String(PRESENCE_INTERVAL_MS);
  return entry === 'refit host'
    ? [
        path.join(DIST, 'cli', 'main.js'),
        'host',
        '--id',
        hostId,
        '--driver',
        'sim',
        '--state-dir',
        stateDir,
        '--presence-interval',
        presence,
      ]
    : [
        path.join(DIST, 'workers', 'sim', 'run-host.js'),
        ...['--id', hostId, '--url', h.stack.nats.url, '--creds', credsFile(h.home, { host: hostId })],
        ...['--state-dir', stateDir, '--presence-interval', presence],
      ];
}

interface RunningHost {
  entry: FootprintEntry;
  hostId: string;
  pid: number;
  argv: string[];
  stop(): Promise<void>;
}

function startHostProcess(h: Harness, entry: FootprintEntry, hostId: string): RunningHost {
  const argv = argvOf(h, entry, hostId);
  const fd = openSync(h.log(`host-${hostId}`), 'a', 0o600);
  const child = spawn(process.execPath, argv, { env: h.env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(15_000).then(() => child.kill('SIGKILL'))]);
  };
  h.cleanup.defer(`host worker ${hostId}`, stop);
  if (child.pid === undefined) throw new Error(`${entry} did not start`);
  return { entry, hostId, pid: child.pid, argv, stop };
}

/**
 * 5. One host worker as its own process, exactly as an operator starts it (`refit host --driver
 * sim`) and through the host worker's own entry: RSS and CPU while idle (presence only; both idle
 * side by side) and while it runs steps back to back (one after the other).
 */
export async function measureFootprint(
  h: Harness,
  o: { idleSeconds: number; busySeconds: number },
): Promise<FootprintResult[]> {
  const entries: FootprintEntry[] = ['refit host', 'run-sim-host'];
  const hostIds = entries.map((_, i) => `footprint-${String(i + 1).padStart(3, '0')}`);
  await enrollHosts(h.home, hostIds);
  const hosts = entries.map((entry, i) => startHostProcess(h, entry, hostIds[i] as string));
  try {
    await waitForHostsOnline(h.nc, hostIds, { timeoutMs: 60_000 });
    await sleep(5_000); // start-up work (JIT, first presence) is not idling

    h.say(`footprint: ${entries.join(' and ')} idle for ${o.idleSeconds} s`);
    const befores = hosts.map((x) => sampleProcess(x.pid));
    const t0 = performance.now();
    await sleep(o.idleSeconds * 1000);
    const idleSeconds = (performance.now() - t0) / 1000;
    const idles = hosts.map((x, i) => {
      const after = sampleProcess(x.pid);
      if (after === undefined)
        throw new Error(`host worker ${x.hostId} (${x.entry}) is gone; see ${h.log(`host-${x.hostId}`)}`);
      return {
        seconds: round(idleSeconds, 1),
        rssMb: round(after.rssMb, 1),
        cpuPctOfCore: round((100 * cpuBetween(befores[i], after)) / idleSeconds, 3),
      };
    });

    const results: FootprintResult[] = [];
    for (const [i, x] of hosts.entries()) {
      h.say(`footprint: ${x.entry} runs steps back to back for ${o.busySeconds} s`);
      const busy = await busyWindow(h, x, o.busySeconds);
      results.push({
        entry: x.entry,
        command: `node ${path.relative(path.dirname(DIST), x.argv[0] ?? '')} ${x.argv.slice(1).join(' ')}`.replaceAll(
          h.home,
          '<bench-home>',
        ),
        hostId: x.hostId,
        presenceIntervalMs: PRESENCE_INTERVAL_MS,
        idle: idles[i] as FootprintResult['idle'],
        busy,
      });
    }
    return results;
  } finally {
    await Promise.all(hosts.map((x) => x.stop()));
  }
}

async function busyWindow(h: Harness, x: RunningHost, seconds: number): Promise<FootprintResult['busy']> {
  const plan = benchPlan({
    name: 'bench-footprint',
    hosts: [x.hostId],
    steps: ['verify'],
    canary: 0,
    batchSize: 1,
    maxInFlight: 1,
  });
  const input: HostMaintenanceInput = {
    rolloutId: 'bench-footprint',
    hostId: x.hostId,
    steps: plan.steps,
    onHostFailure: plan.onHostFailure,
  };
  const before = sampleProcess(x.pid);
  const t0 = performance.now();
  let steps = 0;
  while (performance.now() - t0 < seconds * 1000) {
    const result = await h.client.workflow.execute<(i: HostMaintenanceInput) => Promise<HostMaintenanceResult>>(
      'hostMaintenance',
      {
        taskQueue: h.config.taskQueue,
        workflowId: hostWorkflowId(x.hostId),
        args: [input],
      },
    );
    if (result.state !== 'succeeded') throw new Error(`footprint step ended ${result.state}: ${result.error}`);
    steps++;
  }
  const elapsed = (performance.now() - t0) / 1000;
  const after = sampleProcess(x.pid);
  if (after === undefined) throw new Error(`host worker ${x.hostId} (${x.entry}) is gone`);
  return {
    seconds: round(elapsed, 1),
    steps,
    rssMb: round(after.rssMb, 1),
    peakRssMb: round(after.peakRssMb, 1),
    cpuPctOfCore: round((100 * cpuBetween(before, after)) / elapsed, 2),
  };
}
