import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { until } from '../activities/poll.js';
import { startRollout } from '../workers/control/rollouts.js';
import { startControllerWorker, type ControllerWorker } from '../workers/controller.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { plan, quietLog, temporalClient } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';
import { hostCommands } from './helpers/results.js';

// Four hosts, two in the campaign: the drained VMs need somewhere outside the wave to go.
const fleetHosts = simHostIds(4, `rs${randomBytes(2).toString('hex')}`);
const hosts = fleetHosts.slice(0, 2);
const suite = useSimFleet({ hosts: fleetHosts, controller: false, speed: 0.25, rebootPauseMs: 500 });
const { stack, config } = suite;
let controller: ControllerWorker | undefined;
afterAll(() => controller?.shutdown());

const commandsOf = hostCommands(() => stack.controllerConnection());

describe('a controller upgrade: the worker stopped (SIGTERM) and a new one started mid-rollout', () => {
  it('leaves the steps running on the hosts alone, and the rollout completes', async () => {
    const temporal = await temporalClient(config);
    try {
      controller = await startControllerWorker(config, quietLog);
      const id = `restart-${randomBytes(4).toString('hex')}`;
      await startRollout(
        temporal.client,
        config.taskQueue,
        plan(`
apiVersion: refit/v1
kind: Campaign
name: restart
targets: { hosts: [${hosts.join(', ')}] }
waves: { canary: 0, batchSize: 2, maxInFlight: 2 }
steps:
  - kind: drain
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 10 }
  - kind: undrain
`),
        id,
      );
      await until(async () => (await Promise.all(hosts.map(commandsOf))).flat().some((c) => c.state === 'running'), {
        what: 'a step running on a host',
        timeoutMs: 60_000,
        intervalMs: 50,
      });
      // What `refit worker` does on SIGTERM.
      await controller.shutdown();
      controller = await startControllerWorker(config, quietLog);
      const result = await rolloutEnd(temporal.client.workflow.getHandle(id));

      expect(result.state, JSON.stringify(result.hosts)).toBe('completed');
      for (const hostId of hosts) {
        const commands = await commandsOf(hostId);
        expect(commands.map((c) => [c.kind, c.state]).sort(), hostId).toEqual([
          ['drain', 'succeeded'],
          ['undrain', 'succeeded'],
          ['verify', 'succeeded'],
        ]);
        for (const c of commands) expect(c.starts, `${hostId} ${c.kind}`).toBe(1);
      }
    } finally {
      await temporal.close();
    }
  });
});
