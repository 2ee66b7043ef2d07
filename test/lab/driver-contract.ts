import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { prepareStep, toStepError, type HostDriver, type StepContext } from '../../activities/host/driver.js';
import type { ReceivedCommand } from '../../schemas/command.js';
import type { StepKind } from '../../schemas/steps.js';

/** What the shared cases need to know about one driver's host. */
export interface ContractHost {
  driver: HostDriver;
  hostId: string;
  /** The SR-IOV NIC; the one the facts report wins. */
  nic: string;
  totalVfs: number;
  /** Resolves when a reboot started by afterReported is over. */
  whenUp(): Promise<void>;
}

const log = pino({ level: 'silent' });
const ctx = (): StepContext => ({
  signal: new AbortController().signal,
  progress: () => undefined,
  log,
  recovering: false,
});
let seq = 0;

/**
 * One behavioural suite for every driver (sim, lab): the same steps, the same observable facts.
 * `open` gives a host in its initial state: a Linux bridge, no VFs, one VM or more, not cordoned.
 */
export function driverContract(name: string, open: () => Promise<ContractHost>, opts: { skip?: string } = {}): void {
  describe.skipIf(opts.skip !== undefined && opts.skip !== '')(
    `the ${name} driver keeps the host-driver contract`,
    () => {
      let h: ContractHost;
      const command = (
        kind: StepKind,
        params: Record<string, unknown> = {},
        mode: 'apply' | 'revert' = 'apply',
      ): ReceivedCommand => ({
        commandId: `contract/${name}/${kind}/${mode}/${++seq}`,
        hostId: h.hostId,
        kind,
        mode,
        params,
        rolloutId: `contract-${name}`,
        workflowId: `contract-${name}`,
        issuedAt: new Date().toISOString(),
      });
      const run = (kind: StepKind, params: Record<string, unknown> = {}, mode: 'apply' | 'revert' = 'apply') =>
        h.driver.runStep(prepareStep(command(kind, params, mode)), ctx());

      it('starts with a boot id, a Linux bridge, no VFs and VMs', async () => {
        h = await open();
        const facts = await h.driver.facts();
        h.nic = facts.sriov.nic ?? h.nic;
        expect(facts.bootId).not.toBe('');
        expect(facts.bridge.type).toBe('linux');
        expect(facts.sriov).toMatchObject({ supported: true, numVfs: 0, iommu: false, totalVfs: h.totalVfs });
        expect(facts.vms.length).toBeGreaterThan(0);
        expect(facts.cordoned).toBe(false);
      });

      it('drains once and then changes nothing; facts show the host empty and cordoned', async () => {
        expect((await run('drain')).changed).toBe(true);
        expect((await run('drain')).changed).toBe(false);
        expect(await h.driver.facts()).toMatchObject({ cordoned: true, vms: [] });
      });

      it('converts to Open vSwitch once, then changes nothing', async () => {
        expect((await run('ovs-convert', { confirmWithin: 30_000 })).changed).toBe(true);
        expect((await run('ovs-convert', { confirmWithin: 30_000 })).changed).toBe(false);
        expect((await h.driver.facts()).bridge.type).toBe('ovs');
      });

      it('refuses more VFs than the NIC has, as unsupported hardware', async () => {
        const err = await run('sriov-enable', { nic: h.nic, vfs: h.totalVfs + 1 }).catch((e: unknown) => e);
        expect(toStepError(err)).toMatchObject({ type: 'UnsupportedHardwareError' });
      });

      it('enables SR-IOV for the next boot; the reboot brings a new boot id and the VFs', async () => {
        const sriov = await run('sriov-enable', { nic: h.nic, vfs: h.totalVfs });
        expect(sriov).toMatchObject({ changed: true, rebootRequired: true });
        const before = (await h.driver.facts()).bootId;
        const step = prepareStep(command('reboot'));
        const outcome = await h.driver.runStep(step, ctx());
        expect(outcome.bootId).toBe(before);
        await h.driver.afterReported?.(step, outcome);
        await h.whenUp();
        const facts = await h.driver.facts();
        expect(facts.bootId).not.toBe(before);
        expect(facts.sriov).toMatchObject({ iommu: true, numVfs: h.totalVfs });
        expect(facts.bridge.type).toBe('ovs');
      });

      it('undrains, and reverts the bridge to Linux', async () => {
        expect((await run('undrain')).changed).toBe(true);
        expect((await h.driver.facts()).cordoned).toBe(false);
        expect((await run('ovs-convert', {}, 'revert')).changed).toBe(true);
        expect((await h.driver.facts()).bridge.type).toBe('linux');
      });
    },
  );
}
