import { readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { Plan } from '../../schemas/plan.js';
import { hpingArgv, parseHpingStats } from '../../activities/host/linux/hping.js';
import { ovsShowArgv, parseOvsShow } from '../../activities/host/linux/ovs-vsctl.js';
import { until } from '../../activities/poll.js';
import { labDown } from '../../lab/down.js';
import { hostRunner } from '../../activities/host/lab/exec.js';
import { clearFaults, injectLoss } from '../../lab/faults.js';
import { locateVms } from '../../activities/host/lab/migrate.js';
import type { LabState } from '../../activities/host/lab/state.js';
import { reachableFromSwitch } from '../../activities/host/lab/attach.js';
import { labUp } from '../../lab/up.js';
import { buildHostPackage } from '../../scripts/package-host.js';
import { startLabWorkers, type LabWorkers } from '../../lab/workers.js';
import { plan, quietLog, testConfig, waitForOnline } from '../helpers/controller.js';
import { startTestController, type TestController } from '../helpers/fleet.js';
import { testStack } from '../helpers/stack.js';
import { labSkipReason, testLabDir } from './lab-env.js';

const skip = labSkipReason();

/** Whether a process runs (signal 0 only asks). */
function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
const { labDir, prefix } = testLabDir('e');

/**
 * examples/lab-ovs-sriov.yaml as shipped (the campaign of ovs-sriov.yaml with the lab's latency
 * tolerance), aimed at these lab hosts instead of a selector.
 */
function examplePlan(hosts: string[], extra: Record<string, unknown> = {}) {
  const doc = parseYaml(readFileSync(new URL('../../examples/lab-ovs-sriov.yaml', import.meta.url), 'utf8')) as Record<
    string,
    unknown
  >;
  return plan(JSON.stringify({ ...doc, targets: { hosts }, ...extra }));
}

describe.skipIf(skip !== '')(
  `examples/lab-ovs-sriov.yaml across lab hosts (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`,
  () => {
    const stack = testStack();
    const config = testConfig(stack);
    let lab: LabState;
    let workers: LabWorkers;
    let controller: TestController;
    const bootIds = new Map<string, string>();
    const hostIds = () => lab.hosts.map((h) => h.id);
    const host = (id: string) => lab.hosts.find((h) => h.id === id) as LabState['hosts'][number];
    const facts = (id: string) =>
      (workers.drivers.get(id) as NonNullable<ReturnType<LabWorkers['drivers']['get']>>).facts();

    const runToEnd = async (p: Plan) => (await controller.runRollout(p)).result;

    beforeAll(async () => {
      lab = await labUp({ labDir, hosts: 4, vmsPerHost: 1, prefix, hostPrefix: `e${randomBytes(2).toString('hex')}-` });
      // The agents run the package built from this tree, as refit-host.service runs it on a host.
      const built = await buildHostPackage({ outDir: path.join(path.dirname(labDir), 'package') });
      workers = await startLabWorkers({
        lab,
        home: stack.home,
        natsUrl: stack.natsUrl,
        log: quietLog,
        // ovs-convert waits for the controller's own confirmation over NATS (not the lab's probe).
        confirm: 'controller',
        hostPackage: built.deb,
      });
      for (const id of hostIds()) bootIds.set(id, (await facts(id)).bootId);
      controller = await startTestController(config);
      await waitForOnline(config, hostIds());
    }, 180_000);

    afterAll(async () => {
      await workers?.stop();
      await controller?.stop();
      await labDown({ labDir, prefix });
      rmSync(path.dirname(labDir), { recursive: true, force: true });
    }, 120_000);

    it(
      'converts three hosts with VMs to OVS with 7 VFs, reboots them and brings their VMs back',
      { timeout: 600_000 },
      async () => {
        const targets = hostIds().slice(0, 3);
        const agentPids = new Map(targets.map((id) => [id, workers.services.get(id)?.mainPid]));
        const result = await runToEnd(examplePlan(targets));
        expect(result.state, JSON.stringify({ message: result.message, hosts: result.hosts })).toBe('completed');
        const where = await locateVms(lab);
        for (const id of targets) {
          const f = await facts(id);
          expect(f.bridge.type, id).toBe('ovs');
          expect(f.sriov, id).toMatchObject({ iommu: true, numVfs: 7 });
          expect(f.bootId, id).not.toBe(bootIds.get(id));
          // The reboot step stopped the agent and started it again from refit-host.service's ExecStart.
          expect(workers.services.get(id)?.mainPid, id).toBeDefined();
          expect(workers.services.get(id)?.mainPid, id).not.toBe(agentPids.get(id));
          expect(alive(agentPids.get(id)), `${id}: the agent before the reboot is gone`).toBe(false);
          expect(f.cordoned, id).toBe(false);
          const show = parseOvsShow((await hostRunner(lab, host(id))(ovsShowArgv())).stdout);
          expect(show.bridges.find((b) => b.name === 'vmbr0')?.ports.map((p) => p.name)).toEqual(
            expect.arrayContaining(['ens6', 'vlan1']),
          );
          for (const vm of lab.vms.filter((v) => v.home === id)) {
            expect(where.get(vm.name), vm.name).toBe(id);
            expect(await reachableFromSwitch(lab, vm.address.split('/')[0] as string), vm.name).toBe(true);
          }
          const probe = await hostRunner(lab, host(id))(hpingArgv({ address: '10.77.0.1', port: 80, count: 20 }));
          expect(parseHpingStats(probe.stderr).lossPct, id).toBe(0);
        }
        expect((await facts(hostIds()[3] as string)).bridge.type).toBe('linux');
      },
    );

    it(
      'still holds after one more lab reboot, which proves the persisted configuration and restarts the agent from its unit',
      { timeout: 180_000 },
      async () => {
        for (const id of hostIds().slice(0, 3)) {
          const agent = workers.services.get(id);
          const before = agent?.mainPid;
          await workers.reboot(id);
          expect(agent?.mainPid, id).toBeDefined();
          expect(agent?.mainPid, id).not.toBe(before);
          expect(alive(before), `${id}: the agent before the reboot is gone`).toBe(false);
          const f = await facts(id);
          expect(f.bridge.type, id).toBe('ovs');
          expect(f.sriov, id).toMatchObject({ iommu: true, numVfs: 7 });
          expect(await reachableFromSwitch(lab, host(id).address.split('/')[0] as string), id).toBe(true);
        }
      },
    );

    it(
      'rolls a host whose verify fails (lab-injected loss) back to its Linux bridge, reachable again',
      { timeout: 600_000 },
      async () => {
        const id = hostIds()[3] as string;
        const steps = examplePlan([id]).steps;
        const verifyAt = steps.findIndex((s) => s.kind === 'verify');
        // The loss starts just before verify runs: the reboot happens under loss-free conditions.
        const watcher = until(async () => (await facts(id).catch(() => undefined))?.sriov.iommu === true, {
          what: `${id} to boot with the IOMMU on`,
          timeoutMs: 150_000,
        }).then(() => injectLoss(lab, host(id)));
        const [result] = await Promise.all([
          runToEnd(examplePlan([id], { onHostFailure: 'rollback', failureBudget: { maxFailedHosts: 0 } })),
          watcher,
        ]);
        await clearFaults(lab, host(id));
        expect(verifyAt).toBeGreaterThan(0);
        expect(result.state).toBe('failed');
        expect(result.hosts[0]).toMatchObject({ hostId: id, state: 'rolled-back' });
        expect(result.hosts[0]?.error).toMatch(/loss/);
        const f = await facts(id);
        expect(f.bridge.type).toBe('linux');
        expect(f.cordoned).toBe(false);
        expect(await reachableFromSwitch(lab, host(id).address.split('/')[0] as string)).toBe(true);
        await workers.reboot(id);
        expect((await facts(id)).sriov).toMatchObject({ iommu: false, numVfs: 0 });
      },
    );
  },
);
