import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareStep } from '../../activities/host/driver.js';
import { reachableFromSwitch } from '../../activities/host/lab/attach.js';
import { createLabDriver, type LabDriver } from '../../activities/host/lab/driver.js';
import { hostRunner, vmRunner } from '../../activities/host/lab/exec.js';
import { locateVms } from '../../activities/host/lab/migrate.js';
import type { LabState } from '../../activities/host/lab/state.js';
import { ovsListPortsJsonArgv, parseOvsPorts } from '../../activities/host/linux/ovs-vsctl.js';
import { labDown } from '../../lab/down.js';
import { labUp } from '../../lab/up.js';
import type { StepKind } from '../../schemas/steps.js';
import { directSteps, labSkipReason, testLabDir } from './lab-env.js';

const skip = labSkipReason();
const { labDir, prefix } = testLabDir('v');
const { command, ctx, log } = directSteps('lab-vmvlan');

/**
 * VM VLANs with ovs-convert on lab hosts (namespace VMs, `vmKind: 'netns'`): vm101 (h1) and vm201 (h2)
 * get second addresses on 10.30.0.0/24. On Linux bridges they reach each other untagged. After
 * ovs-convert with `vmVlan: 30` on h1, vm101's tap is an access port of VLAN 30 and h1's uplink a
 * trunk (host VLAN 1 untagged): vm101's frames leave h1 tagged, so vm201 on h2's Linux bridge (which
 * passes the tag to it) no longer gets them, nor does the switch reach vm101 untagged. Once h2 is
 * converted the same way, the two talk on VLAN 30 through the lab switch (a Linux bridge, which
 * forwards tagged frames as they are; this kernel has no 8021q for a VLAN device on the switch).
 * Drained and brought back by undrain vm101 gets VLAN 30 again; the revert takes the tag away with the
 * OVS bridge.
 */
describe.skipIf(skip !== '')(
  `VM VLANs with ovs-convert on lab hosts (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`,
  () => {
    let lab: LabState;
    const drivers = new Map<string, LabDriver>();
    const stateRoot = mkdtempSync(path.join(os.tmpdir(), 'refit-lab-vmvlan-'));
    const host = (id: string) => lab.hosts.find((h) => h.id === id) as LabState['hosts'][number];
    const run = (
      id: string,
      kind: StepKind,
      params: Record<string, unknown> = {},
      mode: 'apply' | 'revert' = 'apply',
    ) => (drivers.get(id) as LabDriver).runStep(prepareStep(command(id, kind, params, mode)), ctx());
    const vm = (name: string) => lab.vms.find((v) => v.name === name) as LabState['vms'][number];
    /** The OVS tag of vm101's port on h1; undefined when untagged or not an OVS port. */
    const tag = async () =>
      parseOvsPorts((await hostRunner(lab, host('h1'))(ovsListPortsJsonArgv())).stdout).find(
        (p) => p.name === vm('vm101').port,
      )?.tag;
    /** Pings from vm201's VLAN 30 address to vm101's (hping3 would send from the first address of eth0). */
    const pingVlan30 = async () => {
      const res = await vmRunner(vm('vm201'))(
        ['ping', '-n', '-q', '-c', '3', '-i', '0.2', '-W', '1', '-I', '10.30.0.201', '10.30.0.101'],
        { okExitCodes: [1], timeoutMs: 15_000 },
      );
      return res.exitCode === 0;
    };
    /** Reachable within a few tries (ARP and MAC learning after a change take a moment); one try for "not reachable". */
    const onVlan30 = async (tries = 1) => {
      for (let i = 0; i < tries; i++) {
        if (await pingVlan30()) return true;
        await sleep(500);
      }
      return false;
    };
    const untagged = () => reachableFromSwitch(lab, vm('vm101').address.split('/')[0] as string);
    const params = { bridge: 'vmbr0', hostVlan: 1, vmVlan: 30, confirmWithin: 20_000 };

    beforeAll(async () => {
      lab = await labUp({ labDir, hosts: 2, vmsPerHost: 1, prefix, vmKind: 'netns' });
      for (const h of lab.hosts)
        drivers.set(
          h.id,
          await createLabDriver({ hostId: h.id, labDir, stateDir: path.join(stateRoot, h.id), log, confirm: 'probe' }),
        );
      await vmRunner(vm('vm101'))(['ip', 'addr', 'add', '10.30.0.101/24', 'dev', 'eth0']);
      await vmRunner(vm('vm201'))(['ip', 'addr', 'add', '10.30.0.201/24', 'dev', 'eth0']);
    });

    afterAll(async () => {
      await labDown({ labDir, prefix });
      rmSync(path.dirname(labDir), { recursive: true, force: true });
      rmSync(stateRoot, { recursive: true, force: true });
    });

    it('on Linux bridges the VMs reach each other untagged, and the switch reaches vm101', async () => {
      expect(await onVlan30(6)).toBe(true);
      expect(await untagged()).toBe(true);
    });

    it('ovs-convert puts vm101 on VLAN 30: its tap tagged, its frames tagged on the uplink, recorded before and after', async () => {
      const outcome = await run('h1', 'ovs-convert', params);
      expect(outcome.summary).toMatch(/VLAN 30 on 1 VM NIC \(vm101\/veth\d+i0\)/);
      expect(outcome.after).toMatchObject({
        bridge: { type: 'ovs' },
        vmNics: { backend: 'ovs', changed: [{ vm: 'vm101', before: '1', after: '30' }] },
      });
      expect(outcome.before).toMatchObject({ vmNics: [{ vm: 'vm101', value: '1' }] });
      expect(await tag()).toBe(30);
      expect(await reachableFromSwitch(lab, host('h1').address.split('/')[0] as string)).toBe(true);
      expect(await untagged()).toBe(false);
      expect(await onVlan30()).toBe(false);
      // Read first: nothing to change the second time.
      expect((await run('h1', 'ovs-convert', params)).changed).toBe(false);
    });

    it('with h2 converted the same way, the VMs talk on VLAN 30 through the switch', async () => {
      await run('h2', 'ovs-convert', params);
      expect(await onVlan30(6)).toBe(true);
    });

    it('undrain brings vm101 back onto VLAN 30', async () => {
      await run('h1', 'drain', { destinations: { vm101: 'h2' } });
      expect((await locateVms(lab)).get('vm101')).toBe('h2');
      const back = await run('h1', 'undrain');
      expect((await locateVms(lab)).get('vm101')).toBe('h1');
      expect(back.summary).toMatch(/VLAN 30 on 1 VM NIC/);
      expect(await tag()).toBe(30);
      expect(await onVlan30(6)).toBe(true);
    });

    it('the revert takes the tag away with the OVS bridge: vm101 answers untagged again, not on VLAN 30', async () => {
      const outcome = await run('h1', 'ovs-convert', params, 'revert');
      expect(outcome.after).toMatchObject({ bridge: { type: 'linux' } });
      expect(await tag()).toBeUndefined();
      expect(await untagged()).toBe(true);
      expect(await onVlan30()).toBe(false);
    });
  },
);
