import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { readStackFile } from '../../workers/config.js';
import { isStackProcess, restartStackServer } from '../../workers/dev/stack.js';
import { startChild, type Child } from '../child.js';
import type { FleetSpec } from '../fleet-process.js';
import type { ChaosTarget } from './schedule.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The compiled child scripts: under vitest this module is the TypeScript source, the children run from dist/. */
const scripts = here.includes(`${path.sep}dist${path.sep}`)
  ? { bench: path.resolve(here, '..'), chaos: here }
  : { bench: path.resolve(here, '../../dist/bench'), chaos: path.resolve(here, '../../dist/bench/chaos') };

/** A process that exited without being killed by the chaos run; it is started again, as a supervisor would. */
export interface UnexpectedExit {
  target: ChaosTarget;
  at: number;
  code: number | null;
  signal: string | null;
}

/** One thing the chaos run kills and starts again. */
export interface Killable {
  readonly target: ChaosTarget;
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>;
  /** Start it again on the same ports and data; resolves once it is ready. */
  restart(): Promise<void>;
  /** Stop for good (SIGTERM, then SIGKILL). */
  stop(): Promise<void>;
}

/**
 * A child process of the run (the controller worker or the simulated fleet). An exit the run did
 * not cause is recorded and the process is started again after a second, like systemd's
 * Restart=always would.
 */
export class SupervisedChild implements Killable {
  private child: Child<unknown> | undefined;
  private killing = false;
  private stopped = false;
  private restarting: Promise<void> | undefined;

  constructor(
    readonly target: ChaosTarget,
    private readonly start: () => Promise<Child<unknown>>,
    private readonly unexpected: UnexpectedExit[],
    private readonly say: (line: string) => void,
  ) {}

  async restart(): Promise<void> {
    this.killing = false;
    const child = await this.start();
    this.child = child;
    void child.exited.then((exit) => {
      if (this.killing || this.stopped || this.child !== child) return;
      this.unexpected.push({ target: this.target, at: Date.now(), code: exit.code, signal: exit.signal });
      this.say(`${this.target} exited by itself (${exit.signal ?? exit.code}); starting it again`);
      this.restarting = sleep(1_000)
        .then(() => (this.stopped ? undefined : this.restart()))
        .catch((err: unknown) => this.say(`${this.target} could not be started again: ${String(err)}`));
    });
  }

  async kill(): Promise<void> {
    await this.restarting;
    const child = this.child;
    if (child === undefined) return;
    this.killing = true;
    process.kill(child.pid, 'SIGKILL');
    await child.exited;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.restarting;
    await this.child?.stop();
  }
}

/** One server of the embedded stack, killed by the pid in its stack file. */
export class StackServer implements Killable {
  constructor(
    readonly target: 'nats' | 'temporal',
    private readonly home: string,
  ) {}

  async kill(): Promise<void> {
    const pid = readStackFile(this.home)?.[this.target].pid;
    if (pid === undefined || !isStackProcess(pid, this.home)) return;
    process.kill(pid, 'SIGKILL');
    while (isStackProcess(pid, this.home)) await sleep(20);
  }

  async restart(): Promise<void> {
    await restartStackServer(this.home, this.target);
  }

  async stop(): Promise<void> {
    // stopStack, registered when the stack started, stops the servers.
  }
}

export function controllerChild(env: NodeJS.ProcessEnv, logFile: string): () => Promise<Child<unknown>> {
  return () => startChild('controller', path.join(scripts.chaos, 'controller-process.js'), [], env, logFile, 120_000);
}

export function fleetChild(env: NodeJS.ProcessEnv, spec: FleetSpec, logFile: string): () => Promise<Child<unknown>> {
  return () =>
    startChild('fleet', path.join(scripts.bench, 'fleet-process.js'), [JSON.stringify(spec)], env, logFile, 120_000);
}
