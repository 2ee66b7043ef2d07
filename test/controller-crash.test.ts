import { afterAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { until } from '../activities/poll.js';
import type { CommandStatus } from '../schemas/command.js';
import type { RolloutStatus } from '../schemas/rollout.js';
import { startRollout } from '../workers/control/rollouts.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { plan, spawnControllerWorker, temporalClient } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';
import { hostCommands } from './helpers/results.js';
import { withNats } from '../workers/clients.js';
import { trailEvents } from './audit-helpers.js';

// Eight hosts, three in each campaign: the drained VMs need somewhere outside the wave to go.
const fleetHosts = simHostIds(8, `kc${randomBytes(2).toString('hex')}`);
const hosts = fleetHosts.slice(0, 3);
const stoppedHosts = fleetHosts.slice(3, 6);
// The controller worker runs as its own process (`refit worker`), to be killed for real.
const suite = useSimFleet({ hosts: fleetHosts, controller: false, speed: 0.5, rebootPauseMs: 500 });
const { stack, config } = suite;
let worker: ChildProcess | undefined;
afterAll(() => {
  worker?.kill('SIGKILL');
});

const commandsOf = hostCommands(() => stack.controllerConnection());

/** The first step after drain that runs on one of the hosts. */
function untilRunning(hostIds: readonly string[]): Promise<CommandStatus> {
  return until(
    async () => {
      for (const h of hostIds) {
        const running = (await commandsOf(h)).find((c) => c.state === 'running' && c.kind !== 'drain');
        if (running) return running;
      }
      return undefined;
    },
    { what: 'a step after drain to run', timeoutMs: 60_000, intervalMs: 100 },
  );
}

const crashPlan = (targets: readonly string[]) =>
  plan(`
apiVersion: refit/v1
kind: Campaign
name: crash
targets: { hosts: [${targets.join(', ')}] }
waves: { canary: 0, batchSize: 3, maxInFlight: 3 }
steps:
  - kind: drain
  - kind: ovs-convert
  - kind: reboot
    params: { timeout: 2m }
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 3 }
  - kind: undrain
`);

/**
 * Each host's start and end on the rollout's chain once (the runs' activities store them since decision
 * 0040, and the killed one was tried again), the start before the host had its first command.
 */
async function expectHostAuditedOnce(rolloutId: string, hostIds: readonly string[]): Promise<void> {
  const trail = await withNats(config, trailEvents);
  for (const hostId of hostIds) {
    const mine = trail.filter(({ event }) => event.hostId === hostId && event.rolloutId === rolloutId);
    const host = mine.filter(({ event }) => event.type.startsWith('host.'));
    expect(
      host.map(({ event }) => event.type),
      hostId,
    ).toEqual(['host.started', 'host.succeeded']);
    const firstStep = mine.find(({ event }) => event.type === 'step.requested');
    expect(host[0]?.record.streamSeq, hostId).toBeLessThan(firstStep?.record.streamSeq ?? 0);
  }
}

async function expectEachStepOnce(hostIds: readonly string[]): Promise<void> {
  for (const hostId of hostIds) {
    const commands = await commandsOf(hostId);
    // One command per step, each started once on the host and succeeded: no step was sent, run or stopped twice.
    expect(commands.map((c) => c.kind).sort(), hostId).toEqual(['drain', 'ovs-convert', 'reboot', 'undrain', 'verify']);
    for (const c of commands) expect([c.state, c.starts], `${hostId} ${c.kind}`).toEqual(['succeeded', 1]);
    const effects = suite.fleet.hosts.get(hostId)?.snapshot().effects ?? {};
    expect(effects, hostId).toEqual({ drain: 1, 'ovs-convert': 1, reboot: 1, verify: 1, undrain: 1 });
  }
}

describe('the controller worker killed mid-rollout', () => {
  it('is restarted, and the rollout completes with no step run twice', async () => {
    const temporal = await temporalClient(config);
    try {
      worker = spawnControllerWorker(config);
      const id = `crash-${randomBytes(4).toString('hex')}`;
      await startRollout(temporal.client, config.taskQueue, crashPlan(hosts), id);
      const caught = await untilRunning(hosts);
      worker.kill('SIGKILL');
      await new Promise((r) => worker?.once('exit', r));
      // The step the controller was waiting on goes on without it.
      worker = spawnControllerWorker(config);
      const result = await rolloutEnd(temporal.client.workflow.getHandle(id));

      expect(caught.state).toBe('running');
      // Caught inside a run of steps (decision 0037): drain done, ovs-convert running, reboot to come.
      expect(caught.commandId).toMatch(/#1$/);
      expect(result.state, JSON.stringify(result.hosts)).toBe('completed');
      await expectEachStepOnce(hosts);
      await expectHostAuditedOnce(id, hosts);
    } finally {
      await temporal.close();
    }
  });
});

describe('the controller worker stopped gracefully mid-rollout (SIGTERM, as systemd stops it for an upgrade)', () => {
  it('leaves the steps in flight running on their hosts, and the rollout completes with no step run twice', async () => {
    const temporal = await temporalClient(config);
    try {
      // The only worker: the one whose steps run is the one stopped.
      worker?.kill('SIGKILL');
      if (worker?.exitCode === null) await new Promise((r) => worker?.once('exit', r));
      worker = spawnControllerWorker(config);
      const id = `stop-${randomBytes(4).toString('hex')}`;
      await startRollout(temporal.client, config.taskQueue, crashPlan(stoppedHosts), id);
      const caught = await untilRunning(stoppedHosts);
      worker.kill('SIGTERM');
      const exit = await new Promise((r) => worker?.once('exit', (code) => r(code)));
      worker = spawnControllerWorker(config);
      const result = await Promise.race<RolloutStatus>([
        rolloutEnd(temporal.client.workflow.getHandle(id)),
        sleep(60_000).then(async () => {
          const states = await Promise.all(stoppedHosts.map(commandsOf));
          const seen = states.flat().map((c) => `${c.hostId} ${c.kind}: ${c.state}, starts ${c.starts}`);
          throw new Error(`the rollout did not end within 60 s; the hosts' commands: ${seen.join('; ')}`);
        }),
      ]);

      expect(caught.state).toBe('running');
      expect(exit).toBe(0);
      expect(result.state, JSON.stringify(result.hosts)).toBe('completed');
      await expectEachStepOnce(stoppedHosts);
      await expectHostAuditedOnce(id, stoppedHosts);
    } finally {
      await temporal.close();
    }
  });
});
