import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReceivedCommand } from '../../../schemas/command.js';
import type { StepKind } from '../../../schemas/steps.js';
import {
  HostDownError,
  InvalidStepParamsError,
  StepCancelledError,
  StepFailedError,
  UnsupportedHardwareError,
  prepareStep,
  toStepError,
  type StepContext,
} from '../driver.js';
import { SimDriver, type SimDriverOptions } from './driver.js';

let dir: string;
let seq = 0;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'refit-sim-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const open = (extra: Partial<SimDriverOptions> = {}) =>
  SimDriver.open({ hostId: 'sim-001', stateDir: dir, speed: 50, rebootPauseMs: 50, ...extra });

function step(
  kind: StepKind,
  params: Record<string, unknown> = {},
  mode: 'apply' | 'revert' = 'apply',
  commandId = `wf/run/${++seq}`,
) {
  return prepareStep(
    ReceivedCommand.parse({
      commandId,
      hostId: 'sim-001',
      kind,
      mode,
      params,
      rolloutId: 'r1',
      workflowId: 'wf',
      issuedAt: new Date().toISOString(),
    }),
  );
}

function context(overrides: Partial<StepContext> = {}): StepContext & { ticks: number[] } {
  const ticks: number[] = [];
  return {
    signal: new AbortController().signal,
    progress: (pct) => ticks.push(pct),
    log: pino({ level: 'silent' }),
    recovering: false,
    ticks,
    ...overrides,
  };
}

const sriov = { nic: 'ens6', vfs: 7 };

describe('the sim driver', () => {
  it('drains: VMs leave, the host is cordoned, and a second drain changes nothing', async () => {
    const sim = await open();
    const ctx = context();
    const first = await sim.runStep(step('drain', { destinations: { 'sim-001-vm1': 'sim-002' } }), ctx);
    expect(first.changed).toBe(true);
    expect(first.summary).toMatch(/^sim: migrated 3 VMs away \(sim-001-vm1→sim-002/);
    expect(ctx.ticks.length).toBeGreaterThanOrEqual(3);
    const facts = await sim.facts();
    expect(facts.vms).toEqual([]);
    expect(facts.cordoned).toBe(true);
    const again = await sim.runStep(step('drain'), context());
    expect(again.changed).toBe(false);
    expect(sim.snapshot().effects).toEqual({ drain: 1 });
  });

  it('undrains: the VMs come back and the host is uncordoned', async () => {
    const sim = await open();
    await sim.runStep(step('drain'), context());
    const back = await sim.runStep(step('undrain'), context());
    expect(back.changed).toBe(true);
    const facts = await sim.facts();
    expect(facts.vms.map((v) => v.name)).toEqual(['sim-001-vm1', 'sim-001-vm2', 'sim-001-vm3']);
    expect(facts.cordoned).toBe(false);
  });

  it('converts the Linux bridge to Open vSwitch, and its revert converts it back', async () => {
    const sim = await open();
    expect((await sim.runStep(step('ovs-convert'), context())).changed).toBe(true);
    expect((await sim.facts()).bridge.type).toBe('ovs');
    expect((await sim.runStep(step('ovs-convert'), context())).changed).toBe(false);
    expect((await sim.runStep(step('ovs-convert', {}, 'revert'), context())).changed).toBe(true);
    expect((await sim.facts()).bridge.type).toBe('linux');
    expect(sim.snapshot().effects).toEqual({ 'ovs-convert': 1, 'revert:ovs-convert': 1 });
  });

  it('makes the uplink an OVS bond only on an OVS bridge, says it is simulated, and reverts it', async () => {
    const sim = await open();
    await expect(sim.runStep(step('ovs-bond', { mode: 'balance-tcp' }), context())).rejects.toThrow(
      /not an Open vSwitch bridge here \(ovs-convert first\)/,
    );
    await sim.runStep(step('ovs-convert'), context());
    const bonded = await sim.runStep(step('ovs-bond', { mode: 'balance-tcp' }), context());
    expect(bonded).toMatchObject({
      changed: true,
      summary: 'sim: bond0 is an OVSBond on vmbr0 (bond_mode=balance-tcp lacp=active), simulated',
      after: { simulated: true, bridge: { ovsBond: { name: 'bond0', mode: 'balance-tcp', lacp: 'active' } } },
    });
    expect((await sim.runStep(step('ovs-bond', { mode: 'balance-tcp' }), context())).changed).toBe(false);
    expect((await sim.runStep(step('ovs-bond', {}, 'revert'), context())).changed).toBe(true);
    expect(sim.snapshot().bridge).toEqual({ name: 'vmbr0', type: 'ovs', uplink: 'ens6', hostVlan: 1 });
  });

  it('enables SR-IOV only after a reboot, which brings a new boot id and the VFs', async () => {
    const sim = await open();
    const bootBefore = (await sim.facts()).bootId;
    const enabled = await sim.runStep(step('sriov-enable', sriov), context());
    expect(enabled).toMatchObject({ changed: true, rebootRequired: true });
    expect((await sim.facts()).sriov).toMatchObject({ numVfs: 0, iommu: false });

    const rebootStep = step('reboot');
    const reboot = await sim.runStep(rebootStep, context());
    expect(reboot).toMatchObject({
      changed: true,
      bootId: bootBefore,
      after: { rebootPending: { bootIdBefore: bootBefore } },
    });
    const rebooting = sim.afterReported(rebootStep);
    await expect(sim.facts()).rejects.toBeInstanceOf(HostDownError);
    await rebooting;

    const after = await sim.facts();
    expect(after.bootId).not.toBe(bootBefore);
    expect(after.sriov).toMatchObject({ numVfs: 7, iommu: true });
    const again = await sim.runStep(step('sriov-enable', sriov), context());
    expect(again).toMatchObject({ changed: false, rebootRequired: false });
    expect(sim.snapshot().effects).toEqual({ 'sriov-enable': 1, reboot: 1 });
  });

  it('refuses more VFs than the NIC has, as unsupported hardware', async () => {
    const sim = await open({ shape: { totalVfs: 4 } });
    const err: unknown = await sim.runStep(step('sriov-enable', sriov), context()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedHardwareError);
    expect(toStepError(err)).toMatchObject({ type: 'UnsupportedHardwareError' });
  });

  it('reports simulated traffic and sends no packets', async () => {
    const sim = await open();
    const out = await sim.runStep(step('verify', { targets: [{ address: '10.0.0.1' }], count: 10 }), context());
    expect(out.summary).toMatch(/^sim: simulated traffic check of 1 targets, no packets sent/);
    expect(out.traffic).toEqual([
      expect.objectContaining({ target: '10.0.0.1', transmitted: 10, received: 10, lossPct: 0 }),
    ]);
  });

  it('says nic-tuning and net-health are not modelled, and refuses an interface the host does not have', async () => {
    const sim = await open();
    const tuned = await sim.runStep(step('nic-tuning', { interfaces: [{ name: 'ens6', mtu: 9000 }] }), context());
    expect(tuned.summary).toBe('sim: tuned ens6 (settings not modelled)');
    const health = await sim.runStep(step('net-health', { window: 1_000 }), context());
    expect(health.summary).toBe('sim: counters of every interface not modelled: nothing measured');
    const err: unknown = await sim
      .runStep(step('nic-tuning', { interfaces: [{ name: 'eno9', mtu: 9000 }] }), context())
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'StepFailedError', message: 'sim: no interface eno9 on this host' });
  });

  it('keeps its state across a restart of the worker, boot id included', async () => {
    const sim = await open();
    await sim.runStep(step('ovs-convert'), context());
    const bootId = (await sim.facts()).bootId;
    const reopened = await open();
    expect(await reopened.facts()).toMatchObject({ bootId, bridge: { type: 'ovs' } });
  });

  it('runs a step of no duration without ticks: the bench times its 0 ms steps, not the sim timers', async () => {
    const sim = await open({ stepMs: { verify: 0 } });
    const ctx = context();
    const outcome = await sim.runStep(step('verify', { targets: [{ address: '10.0.0.1' }] }), ctx);
    expect(outcome.changed).toBe(true);
    expect(ctx.ticks).toEqual([100]);
    expect(sim.snapshot().effects).toEqual({ verify: 1 });
  });

  it('does a reboot that was reported but not done when the worker comes back', async () => {
    const sim = await open();
    const bootId = (await sim.facts()).bootId;
    await sim.runStep(step('reboot'), context());
    const reopened = await open();
    await reopened.whenUp();
    expect((await reopened.facts()).bootId).not.toBe(bootId);
    expect(reopened.snapshot().effects.reboot).toBe(1);
  });

  it('reboots once when its reboot step is resumed after the worker came back and did the reboot it owed', async () => {
    const sim = await open();
    const bootId = (await sim.facts()).bootId;
    const reboot = step('reboot');
    // The worker is killed after the step, before its end is journalled: the next worker resumes it.
    await sim.runStep(reboot, context());
    const reopened = await open();
    const resumed = await reopened.runStep(reboot, context({ recovering: true }));
    await reopened.afterReported(reboot);
    await reopened.whenUp();
    expect(reopened.snapshot().effects.reboot).toBe(1);
    // The boot the reboot left, as first reported: the controller waits for another boot id than this.
    expect(resumed.bootId).toBe(bootId);
    expect((await reopened.facts()).bootId).not.toBe(bootId);
  });

  it('stops at a safe point when cancelled, before changing anything', async () => {
    const sim = await open({ speed: 1, stepMs: { drain: 2_000 } });
    const abort = new AbortController();
    const ctx = context({ signal: abort.signal });
    const running = sim.runStep(step('drain'), ctx);
    setTimeout(() => abort.abort(new StepCancelledError('operator said stop')), 100);
    await expect(running).rejects.toThrow(StepCancelledError);
    expect((await sim.facts()).vms).toHaveLength(3);
    expect(sim.snapshot().effects).toEqual({});
  });

  it('fails an injected "always" step every time', async () => {
    const sim = await open({ fail: { 'ovs-convert': 'always' } });
    for (let i = 0; i < 2; i++) {
      const err: unknown = await sim.runStep(step('ovs-convert'), context()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StepFailedError);
      expect(toStepError(err)).toMatchObject({ type: 'StepFailedError' });
    }
    expect((await sim.facts()).bridge.type).toBe('linux');
  });

  it('fails an injected "once" step the first time only, even across a restart', async () => {
    const sim = await open({ fail: { drain: 'once' } });
    const err: unknown = await sim.runStep(step('drain'), context()).catch((e: unknown) => e);
    expect(toStepError(err)).toMatchObject({
      type: 'StepFailedError',
      message: 'sim: injected failure of drain (once)',
    });
    const reopened = await open({ fail: { drain: 'once' } });
    expect((await reopened.runStep(step('drain'), context())).changed).toBe(true);
  });

  it('says a recovered step changed the host when this very command did it before the restart', async () => {
    const sim = await open();
    const s = step('ovs-convert');
    await sim.runStep(s, context());
    const recovered = await sim.runStep(s, context({ recovering: true }));
    expect(recovered.changed).toBe(true);
    const other = await sim.runStep(step('ovs-convert'), context({ recovering: true }));
    expect(other.changed).toBe(false);
    expect(sim.snapshot().effects['ovs-convert']).toBe(1);
  });
});

describe('step parameters', () => {
  it('rejects a hostile interface name before anything runs', () => {
    expect(() => step('ovs-convert', { uplink: 'eth0; rm -rf /' })).toThrow(InvalidStepParamsError);
    expect(() => step('ovs-convert', { uplink: 'eth0; rm -rf /' })).toThrow(/uplink: must be a Linux interface name/);
  });

  it('applies the defaults of the kind', () => {
    const s = step('ovs-convert');
    expect(s.kind === 'ovs-convert' && s.params).toMatchObject({ bridge: 'vmbr0', hostVlan: 1, confirmWithin: 60_000 });
  });
});
