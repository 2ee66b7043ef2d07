import { randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll } from 'vitest';
import type { Plan } from '../../schemas/plan.js';
import type { RolloutStatus } from '../../schemas/rollout.js';
import type { RefitConfig } from '../../workers/config.js';
import { startRollout } from '../../workers/control/rollouts.js';
import { startControllerWorker, type ControllerWorker } from '../../workers/controller.js';
import { startSimFleet, type SimFleetHandle, type SimFleetOptions } from '../../workers/sim/fleet.js';
import { plan as parsePlan, quietLog, tempDir, temporalClient, testConfig, waitForOnline } from './controller.js';
import { testStack, type TestStack } from './stack.js';
import { rolloutEnd } from '../../workers/control/rollout-status.js';

/** The controller worker in this process, on the suite's own task queue, and a Temporal client to it. */
export interface TestController {
  worker: ControllerWorker;
  client: Client;
  /** Start a rollout of `plan` (a Plan or its YAML) and wait for its end. */
  runRollout(plan: Plan | string): Promise<{ id: string; result: RolloutStatus }>;
  stop(): Promise<void>;
}

export async function startTestController(config: RefitConfig): Promise<TestController> {
  const worker = await startControllerWorker(config, quietLog);
  const temporal = await temporalClient(config);
  return {
    worker,
    client: temporal.client,
    async runRollout(p) {
      const parsed = typeof p === 'string' ? parsePlan(p) : p;
      const id = `${parsed.name}-${randomBytes(4).toString('hex')}`;
      await startRollout(temporal.client, config.taskQueue, parsed, id);
      return { id, result: await rolloutEnd(temporal.client.workflow.getHandle(id)) };
    },
    async stop() {
      await temporal.close();
      await worker.shutdown();
    },
  };
}

export type TestFleetOptions = Omit<SimFleetOptions, 'home' | 'natsUrl' | 'log' | 'stateDir' | 'hosts'> & {
  hosts: string[];
  /** Where the hosts keep their state (a new temporary directory). */
  stateDir?: string;
};

/** A simulated fleet on the test stack (presence every 500 ms), once every host reports. */
export async function startOnlineSimFleet(
  stack: TestStack,
  config: RefitConfig,
  { hosts, ...options }: TestFleetOptions,
): Promise<SimFleetHandle> {
  const fleet = await startSimFleet({
    home: stack.home,
    natsUrl: stack.natsUrl,
    hosts,
    stateDir: tempDir('sim'),
    presenceIntervalMs: 500,
    log: quietLog,
    ...options,
  });
  try {
    await waitForOnline(config, hosts);
  } catch (err) {
    await fleet.stop();
    throw err;
  }
  return fleet;
}

export interface SimFleetSuite {
  readonly stack: TestStack;
  readonly config: RefitConfig;
  readonly fleet: SimFleetHandle;
  /** Absent with `controller: false`. */
  readonly controller: TestController;
}

export interface SimFleetSuiteOptions extends TestFleetOptions {
  /** Start the controller worker in this process (true), or leave it to the tests (false). */
  controller?: boolean;
  /** Runs first, before the controller and the fleet start. */
  before?: (stack: TestStack) => Promise<void>;
}

/**
 * A test file's set-up: the controller worker (on a task queue of the file's own) and a simulated
 * fleet, every host online, before the tests; all of it stopped after them.
 */
export function useSimFleet({
  controller: withController = true,
  before,
  ...fleetOptions
}: SimFleetSuiteOptions): SimFleetSuite {
  const stack = testStack();
  const config = testConfig(stack);
  let fleet: SimFleetHandle | undefined;
  let controller: TestController | undefined;
  beforeAll(async () => {
    await before?.(stack);
    if (withController) controller = await startTestController(config);
    fleet = await startOnlineSimFleet(stack, config, fleetOptions);
  });
  afterAll(async () => {
    await fleet?.stop();
    await controller?.stop();
    await stack.closeAll();
  });
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`the suite's ${what} is not running (it starts in beforeAll)`);
    return value;
  };
  return {
    stack,
    config,
    get fleet() {
      return ready(fleet, 'fleet');
    },
    get controller() {
      return ready(controller, 'controller');
    },
  };
}
