import { readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { Plan } from '../../schemas/plan.js';
import { hpingArgv, parseHpingStats } from '../../activities/host/linux/hping.js';
import {
  ovsListPortsJsonArgv,
  ovsShowArgv,
  parseOvsPorts,
  parseOvsShow,
} from '../../activities/host/linux/ovs-vsctl.js';
import { until } from '../../activities/poll.js';
import { labDown } from '../../lab/down.js';
import { hostRunner, switchRunner } from '../../activities/host/lab/exec.js';
import { hostPaths } from '../../activities/host/lab/layout.js';
import { clearFaults, injectLoss } from '../../lab/faults.js';
import { locateVms } from '../../activities/host/lab/migrate.js';
import { guestFiles, guestPid, qmp } from '../../activities/host/lab/qemu.js';
import type { LabState } from '../../activities/host/lab/state.js';
import { reachableFromSwitch } from '../../activities/host/lab/attach.js';
import { labUp } from '../../lab/up.js';
import type { LabWorkers } from '../../lab/workers.js';
import { plan, testConfig, waitForOnline } from '../helpers/controller.js';
import { startTestController, type TestController } from '../helpers/fleet.js';
import { testStack } from '../helpers/stack.js';
import { hostCommands } from '../helpers/results.js';
import { trailEvents } from '../audit-helpers.js';
import { AUDIT_CHAINS } from '../../schemas/audit.js';
import { labSkipReason, qemuSkipReason, startLabAgents, testLabDir } from './lab-env.js';

const skip = labSkipReason() || qemuSkipReason();

/** Each migration's ping-stream figures in a drain/undrain summary: `vm101→e1-h4 (3/152 pings lost (~30 ms), QEMU downtime 41 ms)`. */
const MIGRATION = /(\d+)\/(\d+) pings lost \(~(\d+) ms\), QEMU downtime (\d+) ms/g;

/**
 * Targets h1–h3: two `pve`, one `debian`; h4 (the rollback's host) `pve`; h5 `debian`, a spare that is
 * never a target: each flavour is its own cluster (labHostLabels), so h3's guest is drained to h5.
 */
const FLAVOURS = { h1: 'pve', h2: 'pve', h3: 'debian', h4: 'pve', h5: 'debian' } as const;

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
    /**
     * What sriov-enable left on a host, as the running kernel and NIC show it after a reboot: the IOMMU
     * option on its own bootloader's path only (pve: /etc/kernel/cmdline for proxmox-boot-tool; debian:
     * /etc/default/grub), and every VF with the plan's vfSettings, replayed from the udev rule by PCI address.
     */
    const expectSriovPersisted = async (id: string) => {
      const h = host(id);
      const p = hostPaths(h);
      const read = (file: string) => readFile(file, 'utf8').catch(() => '');
      expect(await read(p.procCmdline), id).toMatch(/(^|\s)intel_iommu=on(\s|$)/);
      const [used, unused] = h.flavour === 'pve' ? [p.kernelCmdline, p.grub] : [p.grub, p.kernelCmdline];
      expect(await read(used), `${id} (${h.flavour}): ${used}`).toContain('intel_iommu=on');
      expect(await read(unused), `${id} (${h.flavour}): ${unused}`).not.toContain('intel_iommu=on');
      expect(await read(p.sriovRules), id).toMatch(/ vf 6 .*spoofchk on trust off/);
      for (const vf of [0, 6]) {
        const dir = path.join(p.sys, 'class/net/ens6/device', `virtfn${vf}`);
        const now = await Promise.all(['spoofchk', 'trust'].map(async (f) => (await read(path.join(dir, f))).trim()));
        expect(now, `${id} VF ${vf}`).toEqual(['on', 'off']);
      }
    };
    const facts = (id: string) =>
      (workers.drivers.get(id) as NonNullable<ReturnType<LabWorkers['drivers']['get']>>).facts();

    const runToEnd = async (p: Plan) => (await controller.runRollout(p)).result;

    /**
     * The guest answers the switch within 20 s; on failure the message says how the guest runs and
     * where the switch sends its frames (a guest back home once did not answer, seen in one full run).
     */
    const expectGuestAnswers = async (id: string, vm: LabState['vms'][number], when: string) => {
      const vmAddress = vm.address.split('/')[0] as string;
      const started = Date.now();
      const answered = await until(() => reachableFromSwitch(lab, vmAddress), {
        what: `${vm.name} (${vmAddress}) to answer from the switch ${when}`,
        timeoutMs: 20_000,
      }).then(
        () => true,
        () => false,
      );
      if (answered) {
        if (Date.now() - started > 1_000) console.log(`${vm.name} answered ${Date.now() - started} ms late, ${when}`);
        return;
      }
      const show = (p: Promise<{ stdout: string }>) =>
        p.then(
          (r) => r.stdout.trim(),
          (e: Error) => e.message,
        );
      const sw = switchRunner(lab);
      const report = [
        `QMP ${await qmp(guestFiles(host(id), vm).qmp, [{ execute: 'query-status' }]).then(JSON.stringify, (e: Error) => e.message)}`,
        `tap: ${await show(hostRunner(lab, host(id))(['ip', '-o', 'link', 'show', vm.port]))}`,
        `host fdb: ${await show(hostRunner(lab, host(id))(['ovs-appctl', 'fdb/show', 'vmbr0']))}`,
        `switch fdb: ${(await show(sw(['bridge', 'fdb', 'show'])))
          .split('\n')
          .filter((l) => l.includes(vm.mac ?? '?'))
          .join('; ')}`,
        `switch neigh: ${await show(sw(['ip', 'neigh', 'show', vmAddress]))}`,
        `console: ${(await readFile(guestFiles(host(id), vm).console, 'utf8').catch(() => '')).slice(-600)}`,
        `steps: ${(await hostCommands(() => stack.controllerConnection())(id)).map((c) => `${c.kind}/${c.mode}/${c.state}: ${c.outcome?.summary ?? ''}`).join(' | ')}`,
      ];
      expect.fail(`${vm.name} did not answer within 20 s ${when}: ${report.join('; ')}`);
    };

    beforeAll(async () => {
      // A mixed lab: two Proxmox-like hosts (ifupdown2, proxmox-boot-tool) and a Debian one among the
      // targets, a Proxmox-like host for the rollback, a Debian spare; real QEMU guests, one per host
      // (booted in parallel), so drains and undrains are QMP live migrations.
      lab = await labUp({
        labDir,
        hosts: 5,
        vmsPerHost: 1,
        prefix,
        hostPrefix: `e${randomBytes(2).toString('hex')}-`,
        vmKind: 'qemu',
        flavours: FLAVOURS,
      });
      // The agents run the package built from this tree, as refit-host.service runs it on a host.
      workers = await startLabAgents(lab, stack);
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
        const convert = examplePlan(targets).steps.find((s) => s.kind === 'ovs-convert');
        const vmVlan = convert?.kind === 'ovs-convert' ? (convert.params.vmVlan ?? convert.params.hostVlan) : undefined;
        expect(vmVlan).toBeGreaterThan(0);
        const agentPids = new Map(targets.map((id) => [id, workers.services.get(id)?.mainPid]));
        const result = await runToEnd(examplePlan(targets));
        expect(result.state, JSON.stringify({ message: result.message, hosts: result.hosts })).toBe('completed');
        const where = await locateVms(lab);
        for (const id of targets) {
          const f = await facts(id);
          expect(f.bridge.type, id).toBe('ovs');
          expect(f.sriov, id).toMatchObject({ iommu: true, numVfs: 7 });
          await expectSriovPersisted(id);
          expect(f.bootId, id).not.toBe(bootIds.get(id));
          // The reboot step stopped the agent and started it again from refit-host.service's ExecStart.
          expect(workers.services.get(id)?.mainPid, id).toBeDefined();
          expect(workers.services.get(id)?.mainPid, id).not.toBe(agentPids.get(id));
          expect(alive(agentPids.get(id)), `${id}: the agent before the reboot is gone`).toBe(false);
          expect(f.cordoned, id).toBe(false);
          const show = parseOvsShow((await hostRunner(lab, host(id))(ovsShowArgv())).stdout);
          const ports = parseOvsPorts((await hostRunner(lab, host(id))(ovsListPortsJsonArgv())).stdout);
          expect(show.bridges.find((b) => b.name === 'vmbr0')?.ports.map((p) => p.name)).toEqual(
            expect.arrayContaining(['ens6', 'vlan1']),
          );
          expect(host(id).flavour, id).toBe(FLAVOURS[`h${targets.indexOf(id) + 1}` as keyof typeof FLAVOURS]);
          for (const vm of lab.vms.filter((v) => v.home === id)) {
            expect(where.get(vm.name), vm.name).toBe(id);
            // Back home on Open vSwitch: its tap is a port of vmbr0 there, a running guest behind it.
            expect(vm.kind, vm.name).toBe('qemu');
            expect(
              show.bridges.find((b) => b.name === 'vmbr0')?.ports.map((p) => p.name),
              vm.name,
            ).toContain(vm.port);
            // On the plan's VM VLAN (vmVlan, by default the host VLAN), as ovs-convert and undrain tag it.
            expect(ports.find((p) => p.name === vm.port)?.tag, vm.name).toBe(vmVlan);
            expect(await guestPid(host(id), vm), vm.name).toBeGreaterThan(0);
            await expectGuestAnswers(id, vm, 'back home after the rollout');
          }
          const probe = await hostRunner(lab, host(id))(hpingArgv({ address: '10.77.0.1', port: 80, count: 20 }));
          expect(parseHpingStats(probe.stderr).lossPct, id).toBe(0);
        }
        for (const id of hostIds().slice(3)) expect((await facts(id)).bridge.type, id).toBe('linux');

        // Each drain and undrain migrated the host's guest live under a ping stream from the switch:
        // its loss and QEMU's downtime are in the step's status and in the host's audit trail.
        const commandsOf = hostCommands(() => stack.controllerConnection());
        const trail = await trailEvents(await stack.controllerConnection());
        for (const id of targets) {
          const statuses = (await commandsOf(id)).filter((c) => c.state === 'succeeded' && c.mode === 'apply');
          for (const kind of ['drain', 'undrain'] as const) {
            const summary = statuses.find((c) => c.kind === kind)?.outcome?.summary ?? '';
            const measured = [...summary.matchAll(MIGRATION)];
            expect(measured.length, `${id} ${kind}: ${summary}`).toBeGreaterThan(0);
            for (const [, lost, sent] of measured)
              // The guest kept answering: a live migration loses a fraction of a second, not the stream.
              expect(Number(lost) / Number(sent), `${id} ${kind}: ${summary}`).toBeLessThan(0.5);
            console.log(`${id} ${kind}: ${summary}`);
            const audited = trail.filter(
              (e) =>
                e.record.subject === AUDIT_CHAINS.host(id) &&
                e.event.type === 'step.succeeded' &&
                e.event.step === kind,
            );
            expect(audited.map((e) => (e.event.data as { summary?: string }).summary)).toContain(summary);
          }
        }
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
          await expectSriovPersisted(id);
          expect(await reachableFromSwitch(lab, host(id).address.split('/')[0] as string), id).toBe(true);
          // Its guest was paused while the host was down and runs again, its tap back on the OVS bridge.
          const show = parseOvsShow((await hostRunner(lab, host(id))(ovsShowArgv())).stdout);
          for (const vm of lab.vms.filter((v) => v.home === id)) {
            expect(
              show.bridges.find((b) => b.name === 'vmbr0')?.ports.map((p) => p.name),
              vm.name,
            ).toContain(vm.port);
            await expectGuestAnswers(id, vm, 'after one more lab reboot');
          }
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
        // The loss starts just before verify runs: the reboot happens under loss-free conditions. It
        // ends once verify has failed, as a flaky link does: the rollback then migrates the host's QEMU
        // guest home (128 MB over the lab network) through a port that passes traffic again.
        const commandsOf = hostCommands(() => stack.controllerConnection());
        const watcher = until(async () => (await facts(id).catch(() => undefined))?.sriov.iommu === true, {
          what: `${id} to boot with the IOMMU on`,
          timeoutMs: 150_000,
        })
          .then(() => injectLoss(lab, host(id)))
          .then(() =>
            until(async () => (await commandsOf(id)).some((c) => c.kind === 'verify' && c.state === 'failed'), {
              what: `${id}'s verify to fail`,
              timeoutMs: 150_000,
            }),
          )
          .finally(() => clearFaults(lab, host(id)));
        const [result] = await Promise.all([
          runToEnd(examplePlan([id], { onHostFailure: 'rollback', failureBudget: { maxFailedHosts: 0 } })),
          watcher,
        ]);
        expect(verifyAt).toBeGreaterThan(0);
        expect(result.state).toBe('failed');
        expect(result.hosts[0], JSON.stringify(result.hosts[0])).toMatchObject({ hostId: id, state: 'rolled-back' });
        expect(result.hosts[0]?.error).toMatch(/loss/);
        const f = await facts(id);
        expect(f.bridge.type).toBe('linux');
        expect(f.cordoned).toBe(false);
        expect(await reachableFromSwitch(lab, host(id).address.split('/')[0] as string)).toBe(true);
        // A Proxmox-like host: rolled back with ifreload -a; its guest migrated home and answers.
        expect(host(id).flavour).toBe('pve');
        const where = await locateVms(lab);
        for (const vm of lab.vms.filter((v) => v.home === id)) {
          expect(where.get(vm.name), vm.name).toBe(id);
          // It answers (before decision 0035 it did not, within 20 s, in two of three full runs).
          await expectGuestAnswers(id, vm, 'after the rollback');
        }
        await workers.reboot(id);
        expect((await facts(id)).sriov).toMatchObject({ iommu: false, numVfs: 0 });
      },
    );
  },
);
