import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTool } from '../workers/dev/tools.js';
import { ansiblePlaybookBin, projectAnsible, runAnsible } from './ansible.js';
import { measureDispatch } from './dispatch.js';
import { measureFootprint } from './footprint.js';
import { measureCarried } from './carried.js';
import { Cleanup, startHarness } from './harness.js';
import { measureHistory } from './history.js';
import { measureModelled } from './modelled.js';
import { BenchUsageError, benchOptions, type BenchOptions } from './options.js';
import {
  checkIssueTargets,
  checkTargets,
  renderIssueTargets,
  renderTables,
  renderTargets,
  type BenchResults,
} from './report.js';
import { measureScale } from './scale.js';
import { hostsInFlight, measureThroughput } from './throughput.js';

/**
 * `npm run bench`: the embedded stack in a temp home on free ports, the controller, simulated
 * fleets and Ansible, measured side by side in one run. Prints the tables, writes the JSON, and
 * stops everything it started, also when it fails or is interrupted.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const say = (line: string) => process.stderr.write(`bench ${new Date().toISOString().slice(11, 19)}: ${line}\n`);

let options: BenchOptions;
try {
  options = benchOptions(process.argv.slice(2), process.env, root);
} catch (err) {
  if (!(err instanceof BenchUsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))) throw err;
  say((err as Error).message);
  process.exit(2);
}

const cleanup = new Cleanup();
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    say(`${signal}: stopping what the bench started`);
    void cleanup.runAll(say).finally(() => process.exit(130));
  });
}

const startedAt = new Date();
const results: BenchResults = { throughput: [], ansible: [], modelled: [] };
const want = (s: BenchOptions['sections'][number]) => options.sections.includes(s);
let failure: unknown;
let machine: ReturnType<typeof describeMachine> | undefined;
try {
  machine = describeMachine(want('ansible'));
  say(
    `${machine.cpus} CPUs, ${machine.memoryGb} GB; node ${machine.versions.node}, ${machine.versions.temporal}, ${machine.versions.natsServer}, ${machine.versions.ansibleCore}`,
  );
  const h = await startHarness(cleanup, say, options.keepHome, {
    temporalDb: options.temporalDb,
    temporalPragmas: options.temporalPragmas,
    controllerWorker: options.controllerWorker,
  });

  if (want('dispatch')) {
    results.dispatch = await measureDispatch(h, {
      rounds: options.dispatchRounds,
      natsRequests: options.natsRequests,
    });
  }
  if (want('footprint')) {
    results.footprint = await measureFootprint(h, {
      idleSeconds: options.idleSeconds,
      busySeconds: options.busySeconds,
    });
  }
  for (const n of want('throughput') || want('ansible') ? options.sizes : []) {
    const forks = hostsInFlight(n, options.inFlight);
    if (want('throughput')) {
      results.throughput.push(
        await measureThroughput(h, n, {
          maxInFlight: options.inFlight,
          presenceIntervalMs: options.presenceIntervalMs,
        }),
      );
    }
    if (!want('ansible')) continue;
    const dir = path.join(h.home, 'ansible', `n${n}`);
    if (n <= options.ansibleMax) {
      say(`ansible: command module, ${n} hosts, ${forks} forks`);
      results.ansible.push(await runAnsible(dir, n, forks, 'command'));
    } else {
      const largest = results.ansible.filter((a) => a.module === 'command' && a.measured).at(-1);
      if (largest) {
        say(
          `ansible: command module at ${n} hosts projected from ${largest.hosts} (raise --ansible-max to measure it)`,
        );
        results.ansible.push(projectAnsible(largest, n, forks));
      }
    }
    if (options.ansibleRaw) {
      say(`ansible: raw module, ${n} hosts, ${forks} forks`);
      results.ansible.push(await runAnsible(dir, n, forks, 'raw'));
    }
  }
  if (want('modelled')) {
    for (const compression of options.modelCompressions) {
      results.modelled.push(
        await measureModelled(h, { compression, hosts: options.modelHosts, maxInFlight: options.modelInFlight }),
      );
    }
  }
  if (want('history')) results.history = await measureHistory(h);
  if (want('carried')) {
    say(`carried: the continue-as-new state of ${options.carriedHosts} hosts, modelled`);
    results.carried = measureCarried(options.carriedHosts);
  }

  if (want('scale')) {
    results.scale = await measureScale(h, {
      hosts: options.scaleHosts,
      fleets: options.scaleFleets,
      maxInFlight: options.scaleInFlight,
      presenceIntervalMs: options.scalePresenceMs,
    });
  }

  const report = writeReport();
  process.stdout.write(
    `${renderTables(results)}\n\n### Targets\n\n${renderTargets(report.targets)}\n\n### Issue #17 targets\n\n${renderIssueTargets(report.issueTargets)}\n\n`,
  );
  say(`took ${report.minutes} minutes; results in ${path.relative(process.cwd(), options.out)}`);
} catch (err) {
  failure = err;
  // A long run that fails late keeps what it measured before.
  if (!interrupted && machine !== undefined) {
    const report = writeReport(err instanceof Error ? err.message : String(err));
    say(`partial results (${report.failed ?? ''}) in ${path.relative(process.cwd(), options.out)}`);
  }
} finally {
  if (!interrupted) {
    say('stopping what the bench started');
    await cleanup.runAll(say);
  }
}
if (failure !== undefined) {
  say(`failed: ${failure instanceof Error ? (failure.stack ?? failure.message) : JSON.stringify(failure)}`);
  process.exit(1);
}
process.exit(0);

/** The JSON result file: what was run, on what, what it measured, and the targets. */
function writeReport(failed?: string) {
  const targets = checkTargets(results);
  const finishedAt = new Date();
  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    minutes: Math.round((finishedAt.getTime() - startedAt.getTime()) / 600) / 100,
    ...(failed !== undefined ? { failed } : {}),
    command: [
      ...Object.entries(process.env)
        .filter(([k]) => k.startsWith('REFIT_BENCH_'))
        .map(([k, v]) => `${k}=${v ?? ''}`),
      'npm run bench',
      ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : []),
    ].join(' '),
    machine,
    options: { ...options, out: path.relative(root, options.out) },
    results,
    targets,
    issueTargets: checkIssueTargets(results),
    note: 'Shared machine: absolute times are noisy; ratios measured in the same run are what count.',
  };
  mkdirSync(path.dirname(options.out), { recursive: true });
  writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

function describeMachine(withAnsible: boolean) {
  const version = (bin: string, args: string[]) => {
    try {
      return (
        execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
          .split('\n')[0]
          ?.trim() ?? '?'
      );
    } catch (err) {
      return `unknown (${(err as Error).message.split('\n')[0]})`;
    }
  };
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
    kernel: os.release(),
    versions: {
      node: process.version,
      temporal: version(findTool('temporal'), ['--version']),
      natsServer: version(findTool('nats-server'), ['--version']),
      ansibleCore: withAnsible ? version(ansiblePlaybookBin(), ['--version']) : 'not used',
      temporalSdk: pkg.dependencies['@temporalio/worker'] ?? '?',
      natsJs: pkg.dependencies['@nats-io/transport-node'] ?? '?',
    },
  };
}
