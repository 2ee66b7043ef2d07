import { mkdtempSync, rmSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareStep, toStepError, type StepContext } from '../../activities/host/driver.js';
import {
  parseOvsPorts,
  parseOvsShow,
  ovsListPortsJsonArgv,
  ovsShowArgv,
} from '../../activities/host/linux/ovs-vsctl.js';
import type { StepCommand } from '../../schemas/command.js';
import type { StepKind } from '../../schemas/steps.js';
import { labDown } from '../../lab/down.js';
import { createLabDriver, type LabDriver } from '../../activities/host/lab/driver.js';
import { hostRunner } from '../../activities/host/lab/exec.js';
import { clearFaults, injectLoss, injectPortSecurity } from '../../lab/faults.js';
import { hostPaths } from '../../activities/host/lab/layout.js';
import { locateVms } from '../../activities/host/lab/migrate.js';
import type { LabState } from '../../activities/host/lab/state.js';
import { reachableFromSwitch } from '../../activities/host/lab/attach.js';
import { labUp } from '../../lab/up.js';
import { directSteps, labSkipReason, testLabDir } from './lab-env.js';

const skip = labSkipReason();
const { labDir, prefix } = testLabDir('d');
const { command, ctx, notes, log } = directSteps('lab-test');

describe.skipIf(skip !== '')(`the lab driver on lab hosts (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`, () => {
  let lab: LabState;
  const drivers = new Map<string, LabDriver>();
  const stateRoot = mkdtempSync(path.join(os.tmpdir(), 'refit-lab-driver-'));
  const driver = (id: string) => drivers.get(id) as LabDriver;
  const run = (id: string, kind: StepKind, params: Record<string, unknown> = {}, mode: 'apply' | 'revert' = 'apply') =>
    driver(id).runStep(prepareStep(command(id, kind, params, mode)), ctx());
  const host = (id: string) => lab.hosts.find((h) => h.id === id) as LabState['hosts'][number];
  const address = (id: string) => host(id).address.split('/')[0] as string;

  beforeAll(async () => {
    // Namespace VMs, not QEMU guests: every step and failure path, kept fast (QEMU: lab.test, lab-e2e).
    lab = await labUp({ labDir, hosts: 3, vmsPerHost: 1, prefix, noSriov: ['h3'], vmKind: 'netns' });
    for (const h of lab.hosts) {
      drivers.set(
        h.id,
        await createLabDriver({
          hostId: h.id,
          labDir,
          stateDir: path.join(stateRoot, h.id),
          log,
          confirm: 'probe',
        }),
      );
    }
  });

  afterAll(async () => {
    await labDown({ labDir, prefix });
    rmSync(path.dirname(labDir), { recursive: true, force: true });
    rmSync(stateRoot, { recursive: true, force: true });
  });

  it('drains a host: its VMs go live to the destinations the controller chose, and it is cordoned', async () => {
    const outcome = await run('h1', 'drain', { destinations: { vm101: 'h2' } });
    expect(outcome).toMatchObject({
      changed: true,
      before: { vms: ['vm101'], cordoned: false },
      after: { vms: [], cordoned: true },
    });
    expect((await locateVms(lab)).get('vm101')).toBe('h2');
    expect(await reachableFromSwitch(lab, '10.77.1.1')).toBe(true);
    expect(await driver('h1').facts()).toMatchObject({ cordoned: true, vms: [] });
    expect((await run('h1', 'drain', { destinations: { vm101: 'h2' } })).changed).toBe(false);
  });

  it('moves vmbr0 to Open vSwitch as Proxmox writes it, keeps the host reachable, and changes nothing the second time', async () => {
    notes.length = 0;
    const outcome = await run('h1', 'ovs-convert', { bridge: 'vmbr0', hostVlan: 1, confirmWithin: 20_000 });
    expect(notes.map((n) => n.type)).toContain('ovs.confirmed');
    expect(
      notes
        .filter((n) => n.type === 'step.command')
        .map((n) => (n.type === 'step.command' ? n.argv.slice(6).join(' ') : '')),
    ).toContain('ifup vmbr0');
    expect(outcome).toMatchObject({
      changed: true,
      before: { bridge: { type: 'linux' } },
      after: { bridge: { type: 'ovs', addresses: ['10.77.0.11/16'] } },
    });
    const file = await readFile(hostPaths(host('h1')).interfaces, 'utf8');
    expect(file).toContain(
      'allow-vmbr0 ens6\niface ens6 inet manual\n\tovs_bridge vmbr0\n\tovs_type OVSPort\n\tovs_options tag=1 vlan_mode=native-untagged\n',
    );
    expect(file).toContain(
      'auto vmbr0\nallow-ovs vmbr0\niface vmbr0 inet manual\n\tovs_type OVSBridge\n\tovs_ports ens6 vlan1\n',
    );
    const run1 = hostRunner(lab, host('h1'));
    const show = parseOvsShow((await run1(ovsShowArgv())).stdout);
    expect(show.bridges[0]?.ports.map((p) => p.name).sort()).toEqual(['ens6', 'vlan1', 'vmbr0']);
    expect(parseOvsPorts((await run1(ovsListPortsJsonArgv())).stdout).find((p) => p.name === 'ens6')).toEqual({
      name: 'ens6',
      tag: 1,
      vlanMode: 'native-untagged',
    });
    expect(await reachableFromSwitch(lab, address('h1'))).toBe(true);
    expect((await run('h1', 'ovs-convert', { bridge: 'vmbr0', hostVlan: 1 })).changed).toBe(false);
  });

  // VF settings for every VF and one VF's own, persisted by the NIC's PCI address.
  const sriovParams = {
    nic: 'ens6',
    vfs: 7,
    iommu: 'intel',
    vfVlan: 0,
    vfSettings: { all: { spoofchk: false, trust: true }, 3: { mac: '52:54:00:00:03:03', vlan: 30 } },
  };
  const vfFile = (vf: number, file: string) =>
    readFile(path.join(hostPaths(host('h1')).sys, 'class/net/ens6/device', `virtfn${vf}`, file), 'utf8').then((t) =>
      t.trim(),
    );

  it('enables SR-IOV in the boot configuration and asks for a reboot', async () => {
    const outcome = await run('h1', 'sriov-enable', sriovParams);
    expect(outcome).toMatchObject({
      changed: true,
      rebootRequired: true,
      after: { cmdlineDefault: 'quiet intel_iommu=on iommu=pt', numVfs: 0 },
    });
    expect(await readFile(hostPaths(host('h1')).grub, 'utf8')).toContain(
      'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"',
    );
    expect(await readFile(hostPaths(host('h1')).sriovRules, 'utf8')).toContain(
      'KERNELS=="0000:00:06.0", RUN+="/usr/sbin/ip link set dev $name vf 3 vlan 30 mac 52:54:00:00:03:03 spoofchk off trust on"',
    );
    expect((await run('h1', 'sriov-enable', sriovParams)).changed).toBe(false);
  });

  it('reboots: a new boot id, and the persisted bridge, kernel options and VFs come back', async () => {
    const before = (await driver('h1').facts()).bootId;
    const step = prepareStep(command('h1', 'reboot', {}));
    const outcome = await driver('h1').runStep(step, ctx());
    expect(outcome.bootId).toBe(before);
    await driver('h1').afterReported(step);
    const facts = await driver('h1').facts();
    expect(facts.bootId).not.toBe(before);
    expect(facts.bridge.type).toBe('ovs');
    expect(facts.sriov).toMatchObject({ iommu: true, numVfs: 7, totalVfs: 7 });
    expect([await vfFile(3, 'mac'), await vfFile(3, 'vlan'), await vfFile(3, 'trust')]).toEqual([
      '52:54:00:00:03:03',
      '30',
      'on',
    ]);
    expect([await vfFile(6, 'vlan'), await vfFile(6, 'spoofchk'), await vfFile(6, 'trust')]).toEqual([
      '0',
      'off',
      'on',
    ]);
    expect(await reachableFromSwitch(lab, address('h1'))).toBe(true);
    expect((await driver('h1').runStep(step, ctx())).changed).toBe(false);
  });

  it('verifies with hping3 against the switch, with the baseline measured before the change', async () => {
    const outcome = await run('h1', 'verify', {
      targets: [{ address: '10.77.0.1', port: 80 }],
      count: 30,
      maxLossPct: 1,
      // As examples/lab-ovs-sriov.yaml: the lab's OVS is the userspace datapath on a shared machine, and
      // a clean-clone run saw 34 ms on average through it against 0.5 ms through the kernel's bridge.
      rttToleranceMs: 100,
    });
    expect(outcome.traffic?.[0]).toMatchObject({ target: '10.77.0.1:80', transmitted: 30, received: 30, lossPct: 0 });
    expect(outcome.after).toMatchObject({
      baselines: { 'host>10.77.0.1:80': { lossPct: 0 } },
      sriov: { numVfs: 7, persisted: 7 },
    });
  });

  it('undrains: the VMs come back and are reachable on the OVS bridge', async () => {
    const outcome = await run('h1', 'undrain');
    expect(outcome).toMatchObject({ changed: true, after: { vms: ['vm101'], cordoned: false } });
    expect((await locateVms(lab)).get('vm101')).toBe('h1');
    expect(await reachableFromSwitch(lab, '10.77.1.1')).toBe(true);
  });

  it('reverts: the Linux bridge and grub come back from the backups, and after a reboot no VFs', async () => {
    const ovs = await run('h1', 'ovs-convert', { bridge: 'vmbr0' }, 'revert');
    expect(ovs).toMatchObject({ changed: true, after: { bridge: { type: 'linux' } } });
    expect(await readFile(hostPaths(host('h1')).interfaces, 'utf8')).toContain('\tbridge-ports ens6\n');
    const sriov = await run('h1', 'sriov-enable', { nic: 'ens6', vfs: 7 }, 'revert');
    expect(sriov).toMatchObject({ changed: true, rebootRequired: true });
    await driver('h1').reboot();
    expect((await driver('h1').facts()).sriov).toMatchObject({ iommu: false, numVfs: 0 });
    expect(await reachableFromSwitch(lab, '10.77.1.1')).toBe(true);
  });

  it('fails sriov-enable on a NIC without SR-IOV with a clear error', async () => {
    const err = await run('h3', 'sriov-enable', { nic: 'ens6', vfs: 7 }).catch((e: unknown) => e);
    expect(toStepError(err)).toEqual({
      type: 'UnsupportedHardwareError',
      message: 'ens6 has no SR-IOV capability (sriov_totalvfs is missing)',
    });
  });

  it("converts on the controller's word, and without it restores the Linux bridge by itself", async () => {
    const h3 = await createLabDriver({
      hostId: 'h3',
      labDir,
      stateDir: path.join(stateRoot, 'h3-controller'),
      log,
      confirm: 'controller',
    });
    notes.length = 0;
    const started = Date.now();
    const err = await h3
      .runStep(prepareStep(command('h3', 'ovs-convert', { confirmWithin: 3_000 })), ctx())
      .catch((e: unknown) => e);
    expect(toStepError(err)).toMatchObject({
      type: 'StepFailedError',
      message: expect.stringMatching(/did not confirm within 3s; the host restored its Linux bridge/),
    });
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(notes.map((n) => n.type)).toContain('ovs.auto-reverted');
    expect((await h3.facts()).bridge.type).toBe('linux');

    // The controller answers once the step's progress says it awaits confirmation, as dispatch does.
    let answer = () => {};
    const confirmed = new Promise<void>((resolve) => (answer = resolve));
    const heard: StepContext = {
      ...ctx(),
      confirmed,
      progress: (_pct, _message, flags) => {
        if (flags?.awaitingConfirmation === true) answer();
      },
    };
    notes.length = 0;
    const outcome = await h3.runStep(prepareStep(command('h3', 'ovs-convert', { confirmWithin: 20_000 })), heard);
    expect(outcome).toMatchObject({ changed: true, after: { bridge: { type: 'ovs' } } });
    expect(notes.map((n) => n.type)).toContain('ovs.confirmed');
    expect(await reachableFromSwitch(lab, address('h3'))).toBe(true);
    const back = await h3.runStep(prepareStep(command('h3', 'ovs-convert', {}, 'revert')), ctx());
    expect(back).toMatchObject({ changed: true, after: { bridge: { type: 'linux' } } });
  });

  describe('when the host worker dies while ovs-convert waits for its confirmation', () => {
    const stateDir = path.join(stateRoot, 'h3-restart');
    const params = { confirmWithin: 12_000 };
    const pendingRecords = () => readdir(stateDir).then((files) => files.filter((f) => f.startsWith('ovs-convert')));

    /** The first worker switches the bridge, then dies: no code of it runs again (no revert, no timer). */
    async function dieAfterTheSwitch(step: StepCommand): Promise<number> {
      let switched = () => {};
      const atConfirmation = new Promise<void>((resolve) => (switched = resolve));
      const dying = await createLabDriver({
        hostId: 'h3',
        labDir,
        stateDir,
        log,
        confirm: () => {
          switched();
          return new Promise<boolean>(() => undefined);
        },
      });
      const started = Date.now();
      void dying.runStep(step, ctx());
      await atConfirmation;
      expect((await dying.facts()).bridge.type).toBe('ovs');
      return started;
    }
    /** A restarted worker: a new driver on the same state dir, resuming the same command. */
    const restarted = () => createLabDriver({ hostId: 'h3', labDir, stateDir, log, confirm: 'controller' });
    const resuming = (over: Partial<StepContext> = {}): StepContext => ({ ...ctx(), recovering: true, ...over });

    it('restores the Linux bridge when no confirmation comes by the deadline set before the restart', async () => {
      const step = prepareStep(command('h3', 'ovs-convert', params));
      const started = await dieAfterTheSwitch(step);
      notes.length = 0;
      const err = await (await restarted()).runStep(step, resuming()).catch((e: unknown) => e);
      expect(toStepError(err)).toMatchObject({
        type: 'StepFailedError',
        message: expect.stringMatching(/did not confirm by .*; the host restored its Linux bridge/),
      });
      // It waited for the first start's deadline, not for a fresh one.
      expect(Date.now() - started).toBeGreaterThanOrEqual(params.confirmWithin - 500);
      expect(Date.now() - started).toBeLessThan(params.confirmWithin + 15_000);
      expect(notes.map((n) => n.type)).toContain('ovs.auto-reverted');
      expect((await (await restarted()).facts()).bridge.type).toBe('linux');
      expect(await readFile(hostPaths(host('h3')).interfaces, 'utf8')).toContain('\tbridge-ports ens6\n');
      expect(await reachableFromSwitch(lab, address('h3'))).toBe(true);
      expect(await pendingRecords()).toEqual([]);
    });

    it('restores the Linux bridge at once when the deadline passed while the worker was down', async () => {
      const step = prepareStep(command('h3', 'ovs-convert', { confirmWithin: 2_000 }));
      await dieAfterTheSwitch(step);
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      const resumed = Date.now();
      const err = await (await restarted()).runStep(step, resuming()).catch((e: unknown) => e);
      expect(toStepError(err)).toMatchObject({
        type: 'StepFailedError',
        message: expect.stringMatching(/did not confirm by .*; the host restored its Linux bridge/),
      });
      expect(Date.now() - resumed).toBeLessThan(10_000);
      expect((await (await restarted()).facts()).bridge.type).toBe('linux');
      expect(await reachableFromSwitch(lab, address('h3'))).toBe(true);
      expect(await pendingRecords()).toEqual([]);
    });

    it('takes an unreadable record as no confirmation and restores the Linux bridge, saying so', async () => {
      const step = prepareStep(command('h3', 'ovs-convert', params));
      await dieAfterTheSwitch(step);
      const [record] = await pendingRecords();
      expect(record).toBeDefined();
      await writeFile(path.join(stateDir, record as string), '{"bridge": "vmbr0", "dead');
      const err = await (await restarted()).runStep(step, resuming()).catch((e: unknown) => e);
      expect(toStepError(err)).toMatchObject({
        type: 'StepFailedError',
        message: expect.stringMatching(/confirmation record .* is unreadable.*; the host restored its Linux bridge/),
      });
      expect((await (await restarted()).facts()).bridge.type).toBe('linux');
      expect(await reachableFromSwitch(lab, address('h3'))).toBe(true);
      expect(await pendingRecords()).toEqual([]);
    });

    it('keeps Open vSwitch when the controller confirms the resumed step, and forgets the deadline', async () => {
      const step = prepareStep(command('h3', 'ovs-convert', params));
      await dieAfterTheSwitch(step);
      let answer = () => {};
      const confirmed = new Promise<void>((resolve) => (answer = resolve));
      const heard = resuming({
        confirmed,
        progress: (_pct, _message, flags) => {
          if (flags?.awaitingConfirmation === true) answer();
        },
      });
      notes.length = 0;
      const h3 = await restarted();
      const outcome = await h3.runStep(step, heard);
      expect(outcome).toMatchObject({ changed: true, after: { bridge: { type: 'ovs' } } });
      expect(notes.map((n) => n.type)).toContain('ovs.confirmed');
      expect(await pendingRecords()).toEqual([]);
      expect(await reachableFromSwitch(lab, address('h3'))).toBe(true);
      // Confirmed once: a later run is the usual "already on Open vSwitch", with no confirmation asked.
      const again = await (await restarted()).runStep(prepareStep(command('h3', 'ovs-convert', params)), ctx());
      expect(again).toMatchObject({ changed: false, after: { bridge: { type: 'ovs' } } });
      const back = await h3.runStep(prepareStep(command('h3', 'ovs-convert', {}, 'revert')), ctx());
      expect(back).toMatchObject({ changed: true, after: { bridge: { type: 'linux' } } });
    });
  });

  it('reverts a conversion that cuts the host off, by itself, before the deadline', async () => {
    await injectPortSecurity(lab, host('h2'));
    try {
      const started = Date.now();
      notes.length = 0;
      const err = await run('h2', 'ovs-convert', { confirmWithin: 4_000 }).catch((e: unknown) => e);
      expect(notes.map((n) => n.type)).toContain('ovs.auto-reverted');
      expect(toStepError(err)).toMatchObject({
        type: 'StepFailedError',
        message: expect.stringMatching(/did not confirm within 4s; the host restored its Linux bridge/),
      });
      expect(Date.now() - started).toBeLessThan(20_000);
      expect((await driver('h2').facts()).bridge.type).toBe('linux');
      expect(await readFile(hostPaths(host('h2')).interfaces, 'utf8')).toContain('\tbridge-ports ens6\n');
      expect(await reachableFromSwitch(lab, address('h2'))).toBe(true);
    } finally {
      await clearFaults(lab, host('h2'));
    }
  });

  it('fails verify under lab-injected packet loss', async () => {
    await injectLoss(lab, host('h2'));
    try {
      const err = await run('h2', 'verify', { targets: [{ address: '10.77.0.1' }], count: 40, maxLossPct: 5 }).catch(
        (e: unknown) => e,
      );
      expect(toStepError(err)).toMatchObject({
        type: 'StepFailedError',
        message: expect.stringMatching(/10\.77\.0\.1: \d+% loss, above 5%/),
      });
    } finally {
      await clearFaults(lab, host('h2'));
    }
  });
});
