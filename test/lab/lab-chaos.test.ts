import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { until as untilAnswered } from '../../activities/poll.js';
import { reachableFromSwitch } from '../../activities/host/lab/attach.js';
import { locateVms } from '../../activities/host/lab/migrate.js';
import type { LabState } from '../../activities/host/lab/state.js';
import { pendingConfirmationFile } from '../../activities/host/linux/confirm.js';
import { labDown } from '../../lab/down.js';
import { labUp } from '../../lab/up.js';
import type { LabWorkers } from '../../lab/workers.js';
import type { RolloutStatus } from '../../schemas/rollout.js';
import { rolloutEnd } from '../../workers/control/rollout-status.js';
import { startRollout } from '../../workers/control/rollouts.js';
import { plan, spawnControllerWorker, temporalClient, testConfig, waitForOnline } from '../helpers/controller.js';
import { hostCommands } from '../helpers/results.js';
import { testStack } from '../helpers/stack.js';
import { labSkipReason, startLabAgents, testLabDir } from './lab-env.js';

const skip = labSkipReason();
const { labDir, prefix } = testLabDir('k');

/**
 * Host agents SIGKILLed during real steps of a lab rollout (examples/lab-ovs-sriov.yaml on one lab
 * host): once in ovs-convert's confirmation window, after the host switched to Open vSwitch and
 * before the controller confirmed it (the controller, its own process, is frozen with SIGSTOP for
 * that moment so that its confirmation cannot come first), and once while verify runs. Each time the
 * agent is started again as refit-host.service's Restart=always does. `npm run chaos` does the same
 * at random to simulated hosts; this is the part only real networking can show.
 */
describe.skipIf(skip !== '')(
  `host agents killed during a lab rollout (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`,
  () => {
    const stack = testStack();
    const config = testConfig(stack);
    let lab: LabState;
    let workers: LabWorkers;
    let controller: ChildProcess | undefined;

    beforeAll(async () => {
      // Namespace VMs, not QEMU guests: this test is about agents killed mid-step (QEMU: lab.test, lab-e2e).
      lab = await labUp({
        labDir,
        hosts: 2,
        vmsPerHost: 1,
        prefix,
        hostPrefix: `k${randomBytes(2).toString('hex')}-`,
        vmKind: 'netns',
      });
      workers = await startLabAgents(lab, stack);
      controller = spawnControllerWorker(config);
      await waitForOnline(
        config,
        lab.hosts.map((h) => h.id),
      );
    }, 180_000);

    afterAll(async () => {
      controller?.kill('SIGCONT');
      controller?.kill('SIGKILL');
      await workers?.stop();
      await labDown({ labDir, prefix });
      rmSync(path.dirname(labDir), { recursive: true, force: true });
    }, 120_000);

    it(
      'confirms a host whose agent died in the confirmation window, resumes verify after a kill, and completes with the network intact',
      { timeout: 600_000 },
      async () => {
        const host = lab.hosts[0] as LabState['hosts'][number];
        const id = host.id;
        const service = workers.services.get(id) ?? expect.fail(`no agent for ${id}`);
        const stateDir = path.join(labDir, 'agents', id);
        const commandsOf = hostCommands(() => stack.controllerConnection());
        const commands = () => commandsOf(id);
        const kills: { during: string; pid: number; restartedAs: number }[] = [];
        const killAgent = async (during: string): Promise<void> => {
          const pid = service.mainPid ?? expect.fail(`${id}'s agent is not running`);
          process.kill(pid, 'SIGKILL');
          const restartedAs = await untilAnswered(
            () => (service.mainPid !== undefined && service.mainPid !== pid ? service.mainPid : undefined),
            { what: `${id}'s agent to be started again by its unit`, timeoutMs: 60_000, intervalMs: 100 },
          );
          kills.push({ during, pid, restartedAs });
        };

        const doc = parseYaml(
          readFileSync(new URL('../../examples/lab-ovs-sriov.yaml', import.meta.url), 'utf8'),
        ) as Record<string, unknown>;
        const temporal = await temporalClient(config);
        try {
          const rolloutId = `lab-chaos-${randomBytes(4).toString('hex')}`;
          await startRollout(
            temporal.client,
            config.taskQueue,
            plan(JSON.stringify({ ...doc, targets: { hosts: [id] } })),
            rolloutId,
          );
          // A rollout that ends before the moment a wait is for fails the test at once, saying how it ended.
          let ended: RolloutStatus | string | undefined;
          const ending = rolloutEnd(temporal.client.workflow.getHandle(rolloutId)).then(
            (status) => (ended = status),
            (err: unknown) => (ended = String(err)),
          );
          const until = async <T>(check: () => T | Promise<T>, o: Parameters<typeof untilAnswered>[1]) =>
            untilAnswered(async () => {
              if (ended !== undefined)
                throw new Error(
                  `the rollout ended before ${typeof o.what === 'string' ? o.what : 'that'}: ${JSON.stringify(ended)}; ${id}'s commands: ${JSON.stringify(await commands())}`,
                );
              return check();
            }, o);

          // 1. The switch recorded: freeze the controller, so its confirmation waits; once the host
          //    says it is on Open vSwitch and waits for the word, kill its agent; thaw the controller.
          const pending = pendingConfirmationFile(stateDir, 'vmbr0');
          await until(() => existsSync(pending), {
            what: `${id} to record its pending switch`,
            timeoutMs: 300_000,
            intervalMs: 10,
          });
          controller?.kill('SIGSTOP');
          try {
            await until(
              async () =>
                (await commands()).some(
                  (c) => c.kind === 'ovs-convert' && c.state === 'running' && c.progress?.awaitingConfirmation === true,
                ),
              { what: `${id} to wait for the confirmation`, timeoutMs: 60_000, intervalMs: 100 },
            );
            expect(existsSync(pending)).toBe(true);
            await killAgent('ovs-convert, switched and not yet confirmed');
          } finally {
            controller?.kill('SIGCONT');
          }

          // 2. verify running: kill again; the restarted agent resumes it from its journal.
          await until(async () => (await commands()).some((c) => c.kind === 'verify' && c.state === 'running'), {
            what: `${id}'s verify to run`,
            timeoutMs: 400_000,
            intervalMs: 100,
          });
          await killAgent('verify');

          const result = await ending;
          if (typeof result === 'string') expect.fail(`the rollout: ${result}`);
          console.log(
            `lab chaos: ${kills.map((k) => `agent ${k.pid} killed during ${k.during}, restarted as ${k.restartedAs}`).join('; ')}; rollout ${result.state}`,
          );
          expect(result.state, JSON.stringify({ message: result.message, hosts: result.hosts })).toBe('completed');
          expect(kills).toHaveLength(2);

          const steps = await commands();
          const convert = steps.find((c) => c.kind === 'ovs-convert' && c.mode === 'apply');
          expect(convert?.state).toBe('succeeded');
          // Confirmed by the controller after the restart, not reverted and done again.
          expect(convert?.outcome?.summary).toMatch(/confirmed after a host worker restart/);
          expect(convert?.starts).toBeGreaterThanOrEqual(2);
          expect(steps.filter((c) => c.state === 'succeeded').map((c) => c.kind)).toEqual(
            expect.arrayContaining(['drain', 'ovs-convert', 'sriov-enable', 'reboot', 'verify', 'undrain']),
          );
          expect(existsSync(pending)).toBe(false);

          // The network intact: the host on OVS and reachable, its VM back and reachable.
          const facts = await (workers.drivers.get(id) ?? expect.fail(id)).facts();
          expect(facts.bridge.type).toBe('ovs');
          expect(facts.sriov).toMatchObject({ iommu: true, numVfs: 7 });
          expect(await reachableFromSwitch(lab, host.address.split('/')[0] as string)).toBe(true);
          const where = await locateVms(lab);
          for (const vm of lab.vms.filter((v) => v.home === id)) {
            expect(where.get(vm.name), vm.name).toBe(id);
            expect(await reachableFromSwitch(lab, vm.address.split('/')[0] as string), vm.name).toBe(true);
          }
        } finally {
          await temporal.close();
        }
      },
    );
  },
);
