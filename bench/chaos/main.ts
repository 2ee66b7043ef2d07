import { execFileSync, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { findTool } from '../../workers/dev/tools.js';
import { Cleanup } from '../harness.js';
import { chaosSection, renderResult, writeChaosSection } from './report.js';
import { runChaos, type ChaosOptions } from './run-chaos.js';

/**
 * `npm run chaos -- [--kills 50] [--seed S] [--hosts 16] [--step-ms MS] [--json] [--record] [--keep-home]`:
 * a rollout over a SIMULATED fleet while a seeded schedule SIGKILLs the controller, the fleet, nats-server
 * and Temporal. Exits 0 when it passed, 1 when it failed, 2 on a usage error.
 * `npm run chaos -- --lab` (as root): the lab variant instead, test/lab/lab-chaos.test.ts: host agents
 * of a real lab rollout SIGKILLed in ovs-convert's confirmation window and during verify.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const say = (line: string) => process.stderr.write(`chaos ${new Date().toISOString().slice(11, 19)}: ${line}\n`);

function usage(message: string): never {
  say(
    `${message}\nusage: npm run chaos -- [--kills N] [--seed S] [--hosts H] [--step-ms MS] [--json] [--record] | --lab`,
  );
  process.exit(2);
}

function wholeNumber(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < min)
    usage(`--${name} must be a whole number of at least ${min}, not "${text}"`);
  return Number(text);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      kills: { type: 'string' },
      seed: { type: 'string' },
      hosts: { type: 'string' },
      'step-ms': { type: 'string' },
      json: { type: 'boolean', default: false },
      record: { type: 'boolean', default: false },
      'keep-home': { type: 'boolean', default: false },
      lab: { type: 'boolean', default: false },
    },
  }));
} catch (err) {
  usage((err as Error).message);
}
if (values.lab) {
  if (Object.keys(values).some((k) => !['lab', 'json', 'record', 'keep-home'].includes(k)))
    usage('--lab runs the lab scenario as it is: no --kills, --seed, --hosts or --step-ms');
  if (values.json || values.record || values['keep-home']) usage('--lab takes no other option');
  const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');
  const run = spawnSync(process.execPath, [vitest, 'run', 'test/lab/lab-chaos.test.ts'], {
    cwd: root,
    stdio: 'inherit',
  });
  process.exit(run.status ?? 1);
}
const options: ChaosOptions = {
  kills: wholeNumber('kills', values.kills, 50, 1),
  seed: wholeNumber('seed', values.seed, Math.floor(Math.random() * 2 ** 31), 0),
  // Drained VMs need hosts outside their wave: a canary and one more.
  hosts: wholeNumber('hosts', values.hosts, 16, 2),
  keepHome: values['keep-home'],
  say,
};
if (values['step-ms'] !== undefined) options.stepMs = wholeNumber('step-ms', values['step-ms'], 0, 100);

const cleanup = new Cleanup();
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    say(`${signal}: stopping everything the chaos run started`);
    void cleanup.runAll(say).finally(() => process.exit(130));
  });
}

const startedAt = new Date();
const loadAtStart = os.loadavg()[0] ?? NaN;
let exitCode = 1;
try {
  const result = await runChaos(options, cleanup);
  if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(`\nseed ${result.seed}\n${renderResult(result)}\n`);
  if (values.record) {
    const file = path.join(root, 'docs', 'RELIABILITY.md');
    const args = process.argv.slice(2).filter((a) => a !== '--record' && a !== '--json');
    const seeded = args.includes('--seed') ? args : [...args, '--seed', String(result.seed)];
    await writeChaosSection(
      file,
      chaosSection(result, {
        command: `npm run chaos -- ${seeded.join(' ')}`,
        date: startedAt.toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
        machine: describeMachine(),
      }),
    );
    say(`recorded in ${path.relative(process.cwd(), file)}`);
  }
  exitCode = result.failures.length === 0 ? 0 : 1;
} catch (err) {
  if (!interrupted) say(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
} finally {
  if (!interrupted) {
    say('stopping everything the chaos run started');
    await cleanup.runAll(say);
  }
}
if (!interrupted) process.exit(exitCode);

function describeMachine(): string {
  const version = (bin: string) => {
    try {
      return execFileSync(bin, ['--version'], { encoding: 'utf8' }).split('\n')[0]?.trim() ?? '?';
    } catch {
      return '?';
    }
  };
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GB, load ${loadAtStart.toFixed(1)} at the start, node ${process.version}, ${version(findTool('temporal'))}, ${version(findTool('nats-server'))}`;
}
