import { describe, expect, it } from 'vitest';
import { prepareStep } from '../../activities/host/driver.js';
import { attachVmPort, hostLinks, reachableFromSwitch } from '../../activities/host/lab/attach.js';
import { rebootHost } from '../../activities/host/lab/boot.js';
import { hostRunner } from '../../activities/host/lab/exec.js';
import { directSteps, labSkipReason, testLabDir, useLabDrivers } from './lab-env.js';

const skip = labSkipReason();
const { labDir, prefix } = testLabDir('m');
const { command, ctx, log } = directSteps('lab-bridge-mac');

/** The lowest MAC a random one (a veth's, a QEMU tap's: locally administered, unicast) can be. */
const LOW_MAC = '02:00:00:00:00:01';

/**
 * A lab host's Linux vmbr0 keeps one MAC, its uplink's, whatever ports join and leave it, as a real
 * host's bridge does (udev sets its MAC when it is created). Left alone, a Linux bridge takes the
 * lowest MAC among its ports: a guest's tap joining or leaving changed the host's MAC under its
 * peers' ARP entries, and a live migration to it stalled on SYN retries for 30-130 s (decision 0041).
 */
describe.skipIf(skip !== '')(
  `a lab host's Linux bridge keeps its MAC (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`,
  () => {
    const { lab, host, driver } = useLabDrivers(
      { labDir, hosts: 2, vmsPerHost: 0, prefix, flavours: { h1: 'pve' }, vmKind: 'netns' },
      log,
    );
    const macs = async (id: string) => {
      const links = await hostLinks(lab(), host(id));
      const mac = (name: string) => links.find((l) => l.name === name)?.mac;
      return { bridge: mac('vmbr0'), uplink: mac(host(id).uplink) };
    };
    /** vmbr0 has its uplink's MAC, and has it still while a port with a lower MAC is in it and after it left. */
    const keepsItsMac = async (id: string, when: string) => {
      const run = hostRunner(lab(), host(id));
      const { bridge, uplink } = await macs(id);
      expect(uplink, `${id} ${when}`).toBeDefined();
      expect(bridge, `${id} ${when}`).toBe(uplink);
      await run(['ip', 'link', 'add', 'rfmac0', 'address', LOW_MAC, 'type', 'veth', 'peer', 'name', 'rfmac1']);
      try {
        await attachVmPort(lab(), host(id), 'rfmac0');
        expect((await macs(id)).bridge, `${id} ${when}, a port with ${LOW_MAC} in it`).toBe(uplink);
      } finally {
        await run(['ip', 'link', 'del', 'rfmac0']);
      }
      expect((await macs(id)).bridge, `${id} ${when}, the port gone`).toBe(uplink);
    };

    it('after lab up, on the pve host (ifupdown2) and the debian host (ifupdown)', async () => {
      await keepsItsMac('h1', 'after lab up');
      await keepsItsMac('h2', 'after lab up');
    });

    it('after ovs-convert and its revert rebuilt the Linux bridge', async () => {
      for (const id of ['h1', 'h2']) {
        const step = (mode: 'apply' | 'revert') =>
          driver(id).runStep(
            prepareStep(command(id, 'ovs-convert', { bridge: 'vmbr0', hostVlan: 1, confirmWithin: 20_000 }, mode)),
            ctx(),
          );
        expect((await step('apply')).after).toMatchObject({ bridge: { type: 'ovs' } });
        expect((await step('revert')).after).toMatchObject({ bridge: { type: 'linux' } });
        await keepsItsMac(id, 'after ovs-convert and revert');
        expect(await reachableFromSwitch(lab(), host(id).address.split('/')[0] as string)).toBe(true);
      }
    });

    it('after a reboot', async () => {
      await rebootHost(lab(), host('h2'));
      await keepsItsMac('h2', 'after a reboot');
    });
  },
);
