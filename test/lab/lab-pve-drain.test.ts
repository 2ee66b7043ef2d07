import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { chooseDestinations } from '../../activities/controller/inventory.js';
import { prepareStep } from '../../activities/host/driver.js';
import { createLabDriver } from '../../activities/host/lab/driver.js';
import { hostRunner } from '../../activities/host/lab/exec.js';
import { locateVms } from '../../activities/host/lab/migrate.js';
import { reachableFromSwitch } from '../../activities/host/lab/attach.js';
import { inMaintenance, labMeminfo, standinLog } from '../../lab/pve-standin.js';
import type { ReceivedPresence } from '../../schemas/host.js';
import type { StepKind } from '../../schemas/steps.js';
import { directSteps, labSkipReason, testLabDir, useLabDrivers } from './lab-env.js';

const skip = labSkipReason();
const { labDir, prefix } = testLabDir('q');
const { command, ctx, log } = directSteps('lab-pve-drain');

/**
 * Two `pve` lab hosts, one namespace VM each (the point is Proxmox's commands, not QEMU): their agents
 * find the lab's qm and pvesh on the host's PATH and drain through them, as on a Proxmox VE node.
 */
describe.skipIf(skip !== '')(
  `drain on pve lab hosts through qm, pvesh and ha-manager (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`,
  () => {
    const { lab, host, driver, stateDir } = useLabDrivers(
      { labDir, hosts: 2, vmsPerHost: 1, prefix, flavour: 'pve', vmKind: 'netns' },
      log,
    );
    const run = (id: string, kind: StepKind, params: Record<string, unknown>) =>
      driver(id).runStep(prepareStep(command(id, kind, params)), ctx());
    const onHost = async (id: string, ...argv: string[]) => (await hostRunner(lab(), host(id))(argv)).stdout;
    const log1 = async () => readFile(standinLog(host('h1')), 'utf8');
    const where = async (vm: string) => (await locateVms(lab())).get(vm);
    const answers = (vm: string) =>
      reachableFromSwitch(
        lab(),
        lab()
          .vms.find((v) => v.name === vm)
          ?.address.split('/')[0] as string,
      );

    it('reports the VMs and memory from pvesh; drain moves them with qm migrate and turns maintenance on, undrain off and back', async () => {
      expect(await driver('h1').vmBackend()).toBe('proxmox');
      const facts = await driver('h1').facts();
      expect(facts.vms).toEqual([{ name: 'vm101', state: 'running', sriov: false, memoryBytes: 128 * 2 ** 20 }]);
      expect(facts.memory?.totalBytes).toBe(4 * 2 ** 30);
      const drained = await run('h1', 'drain', { destinations: { vm101: 'h2' } });
      expect(drained.summary).toMatch(
        /^migrated 1 VMs away \(vm101→h2\); node h1 in maintenance mode; host cordoned; measured by the lab: vm101→h2 \(\d+\/\d+ pings lost \(~\d+ ms\)\)$/,
      );
      expect(await log1()).toMatch(/ qm migrate 101 h2 --online\n(.*\n)*.*migration finished successfully/);
      expect(await where('vm101')).toBe('h2');
      expect(await answers('vm101')).toBe(true);
      expect(inMaintenance(labDir, 'h1')).toBe(true);
      expect((await driver('h1').facts()).cordoned).toBe(true);
      expect(await onHost('h2', 'qm', 'config', '101')).toMatch(/^name: vm101$/m);

      const back = await run('h1', 'undrain', {});
      expect(back.summary).toMatch(
        /^migrated 1 VMs back \(vm101\); node h1 out of maintenance; host uncordoned; measured by the lab: vm101→h1 \(\d+\/\d+ pings lost/,
      );
      expect(await log1()).toMatch(/ ha-manager crm-command node-maintenance disable h1\n/);
      expect(await where('vm101')).toBe('h1');
      expect(await answers('vm101')).toBe(true);
      expect(inMaintenance(labDir, 'h1')).toBe(false);
    });

    it('a VM with a passed-through device: refuse names it, skip leaves the host undrained, shutdown moves it offline', async () => {
      await onHost('h1', 'qm', 'set', '101', '--hostpci0', '0000:00:06.1,pcie=1');
      // A fresh agent's facts (a running one keeps a VM's configuration for a minute).
      const fresh = await createLabDriver({ hostId: 'h1', labDir, stateDir: stateDir('h1'), log });
      expect((await fresh.facts()).vms).toEqual([
        expect.objectContaining({ name: 'vm101', sriov: true, passthrough: ['hostpci0'] }),
      ]);
      await expect(run('h1', 'drain', { destinations: { vm101: 'h2' } })).rejects.toThrow(
        /cannot be live-migrated: vm101 \(hostpci0\) \(nonMigratable: refuse\)/,
      );
      expect(await where('vm101')).toBe('h1');

      const skipped = await run('h1', 'drain', { destinations: {}, nonMigratable: 'skip' });
      expect(skipped.summary).toMatch(/host NOT drained: left vm101 \(hostpci0\) running here/);
      expect(inMaintenance(labDir, 'h1')).toBe(false);
      await expect(run('h1', 'reboot', {})).rejects.toThrow(
        /reboot refused: this host is not drained: the drain left vm101 running here/,
      );
      await run('h1', 'undrain', {});

      const shut = await run('h1', 'drain', { destinations: { vm101: 'h2' }, nonMigratable: 'shutdown' });
      expect(shut.summary).toMatch(/shut down, moved offline and started there: vm101; node h1 in maintenance mode/);
      expect(await log1()).toMatch(
        / qm shutdown 101 --timeout 180\n[\s\S]* qm migrate 101 h2 --force 1\n[\s\S]* pvesh create \/nodes\/h2\/qemu\/101\/status\/start\n/,
      );
      expect(await where('vm101')).toBe('h2');
      expect(await answers('vm101')).toBe(true);
      await run('h1', 'undrain', {});
      expect(await where('vm101')).toBe('h1');
      expect(await answers('vm101')).toBe(true);
      await onHost('h1', 'qm', 'set', '101', '--delete', 'hostpci0');
    });

    it('a destination without memory room: the drain is refused naming the VM, its size and the host', async () => {
      const meminfo = labMeminfo(host('h2'));
      const saved = await readFile(meminfo, 'utf8');
      // h2 runs its own VM (128 MiB) besides the node's own use (256 MiB): 64 MiB are left.
      await writeFile(meminfo, `MemTotal: ${448 * 1024} kB\nMemAvailable: 0 kB\n`);
      try {
        const now = new Date().toISOString();
        const presence = async (id: string): Promise<ReceivedPresence> => ({
          hostId: id,
          driver: 'lab',
          simulated: false,
          agentVersion: 'test',
          labels: { cluster: 'lab' },
          facts: await driver(id).facts(),
          reportedAt: now,
          receivedAt: now,
          intervalMs: 5_000,
        });
        const inventory = [await presence('h1'), await presence('h2')];
        expect(inventory[1]?.facts.memory).toEqual({ totalBytes: 448 * 2 ** 20, freeBytes: 64 * 2 ** 20 });
        expect(() => chooseDestinations(inventory, 'h1', [])).toThrow(
          'no host has room for VM vm101 (0.1 GiB) (most headroom: h2 with 0.1 GiB free)',
        );
      } finally {
        await writeFile(meminfo, saved);
      }
    });
  },
);
