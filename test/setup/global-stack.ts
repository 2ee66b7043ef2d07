import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { freePorts, startStack, stopStack } from '../../workers/dev/stack.js';

/** What every test file gets from `inject('stack')`: one Temporal and one NATS for the whole run. */
export interface ProvidedStack {
  home: string;
  temporalAddress: string;
  natsUrl: string;
}

/** Start a stack in a fresh temporary home on free loopback ports; stop it and remove the home afterwards. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const home = mkdtempSync(path.join(os.tmpdir(), 'refit-test-'));
  let stopped = false;
  const teardown = async () => {
    if (stopped) return;
    stopped = true;
    try {
      await stopStack(home);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  };
  try {
    const [temporalPort, temporalUiPort, natsPort, natsMonitorPort] = await freePorts(4);
    const stack = await startStack({ home, temporalPort, temporalUiPort, natsPort, natsMonitorPort });
    project.provide('stack', { home, temporalAddress: stack.temporal.address, natsUrl: stack.nats.url });
    // If vitest dies without running the teardown, the servers must not outlive it.
    process.once('exit', () => {
      if (stopped) return;
      for (const pid of [stack.temporal.pid, stack.nats.pid]) killQuietly(pid);
      rmSync(home, { recursive: true, force: true });
    });
  } catch (cause) {
    await teardown();
    throw cause;
  }
  return teardown;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
