import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import { pino } from 'pino';
import { parsePlan, type Plan } from '../../schemas/plan.js';
import { loadConfig, temporalTlsOptions, type RefitConfig } from '../../workers/config.js';
import { waitForHostsOnline } from '../../workers/control/inventory.js';
import { withNats } from '../../workers/clients.js';
import type { ProvidedStack } from '../setup/global-stack.js';
import { until } from '../../activities/poll.js';
import type { RolloutStatus } from '../../schemas/rollout.js';
import { rolloutStatusQuery } from '../../workflows/messages.js';

export const quietLog = pino({ level: process.env.REFIT_TEST_LOG_LEVEL ?? 'silent' });

/** A config on the test stack with a task queue of its own, so test files never share a controller. */
export function testConfig(stack: ProvidedStack): RefitConfig {
  return loadConfig(
    {
      home: stack.home,
      temporalAddress: stack.temporalAddress,
      natsUrl: stack.natsUrl,
      taskQueue: `refit-test-${randomBytes(3).toString('hex')}`,
    },
    {},
  );
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `refit-${prefix}-`));
}

export async function temporalClient(config: RefitConfig): Promise<{ client: Client; close(): Promise<void> }> {
  const connection = await Connection.connect({
    address: config.temporalAddress,
    ...temporalTlsOptions(config.temporalTls),
  });
  return { client: new Client({ connection }), close: () => connection.close() };
}

/** Parse a plan from YAML text; a test plan that fails validation is a bug in the test. */
export function plan(yaml: string): Plan {
  const parsed = parsePlan(yaml);
  if (!parsed.ok) throw new Error(`test plan invalid: ${JSON.stringify(parsed.problems)}`);
  return parsed.plan;
}

/** A drain-and-undrain campaign of the named hosts, with `extra` plan lines (waves, approvals, …). */
export const drainUndrainPlan = (name: string, targets: string[], extra: string) =>
  plan(`apiVersion: refit/v1
kind: Campaign
name: ${name}
targets: { hosts: [${targets.join(', ')}] }
${extra}
steps:
  - kind: drain
  - kind: undrain
`);

/** The whole campaign, in order: what every host of `campaignStepsYaml` goes through. */
export const CAMPAIGN_STEPS = ['drain', 'ovs-convert', 'sriov-enable', 'reboot', 'verify', 'undrain'];

/** The `steps:` of a plan running the whole campaign on simulated hosts; the reboot waits up to `rebootTimeout`. */
export function campaignStepsYaml(rebootTimeout = '1m'): string {
  return `steps:
  - kind: drain
  - kind: ovs-convert
  - kind: sriov-enable
    params: { nic: ens6, vfs: 7 }
  - kind: reboot
    params: { timeout: ${rebootTimeout} }
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 10 }
  - kind: undrain`;
}

/** Wait until every host reports presence, as a rollout's target resolution will see it. */
export async function waitForOnline(
  config: RefitConfig,
  hostIds: readonly string[],
  timeoutMs = 30_000,
): Promise<void> {
  await withNats(config, (nc) => waitForHostsOnline(nc, hostIds, { timeoutMs, intervalMs: 200 }));
}

export const CLI = path.resolve('dist/cli/main.js');

/** Environment that points a spawned `refit` at the test stack. */
export function cliEnv(config: RefitConfig): NodeJS.ProcessEnv {
  return {
    ...process.env,
    REFIT_HOME: config.home,
    REFIT_TEMPORAL_ADDRESS: config.temporalAddress,
    REFIT_NATS_URL: config.natsUrl,
    REFIT_TASK_QUEUE: config.taskQueue,
    REFIT_LOG_LEVEL: process.env.REFIT_TEST_LOG_LEVEL ?? 'warn',
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the built `refit` command against the test stack, with `env` added to its environment. */
export function runCli(config: RefitConfig, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...cliEnv(config), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Query a rollout's status until `ok` holds; the timeout error says what was awaited and the last status. */
export async function rolloutReaches(
  client: Client,
  id: string,
  what: string,
  ok: (s: RolloutStatus) => boolean,
): Promise<RolloutStatus> {
  let last: RolloutStatus | undefined;
  return until(
    async () => {
      last = await client.workflow.getHandle(id).query(rolloutStatusQuery);
      return ok(last) ? last : undefined;
    },
    {
      what: () => `rollout ${id} to reach: ${what}; last: ${JSON.stringify(last)}`,
      timeoutMs: 60_000,
      intervalMs: 100,
    },
  );
}

/** `refit worker` as its own process, to be killed for real. */
export function spawnControllerWorker(config: RefitConfig): ChildProcess {
  return spawn(process.execPath, [CLI, 'worker'], { env: cliEnv(config), stdio: ['ignore', 'ignore', 'inherit'] });
}
