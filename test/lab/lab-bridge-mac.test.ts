import { describe, expect, it } from 'vitest';
import { prepareStep } from '../../activities/host/driver.js';
import { attachVmPort, hostLinks, reachableFromSwitch } from '../../activities/host/lab/attach.js';
import { rebootHost } from '../../activities/host/lab/boot.js';
import { hostRunner } from '../../activities/host/lab/exec.js';
import { ipAddrsArgv, parseIpAddrs } from '../../activities/host/linux/ip.js';
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

    it("a host on Open vSwitch answers ARP for its address with the MAC of the port that holds it, never its uplink's", async () => {
      // The lab's Open vSwitch is a userspace datapath: the uplink stays a kernel interface beside it,
      // and by default the kernel answers ARP for any of its addresses on any interface. A peer that
      // took the uplink's MAC sent its frames where Open vSwitch does not take them (a VXLAN from h2 to
      // an OVS host crossed only once that host asked for h2's MAC itself). A real OVS port never hands
      // its frames to the host's stack.
      const step = (mode: 'apply' | 'revert') =>
        driver('h2').runStep(
          prepareStep(command('h2', 'ovs-convert', { bridge: 'vmbr0', hostVlan: 1, confirmWithin: 20_000 }, mode)),
          ctx(),
        );
      expect((await step('apply')).after).toMatchObject({ bridge: { type: 'ovs' } });
      const address = host('h2').address.split('/')[0] as string;
      // The interface that holds the host's address: the OVS internal port on the host VLAN.
      const holder = parseIpAddrs((await hostRunner(lab(), host('h2'))(ipAddrsArgv())).stdout).find(
        (a) => a.cidr.split('/')[0] === address,
      )?.name;
      expect(holder).toBe('vlan1');
      const holderMac = (await hostLinks(lab(), host('h2'))).find((l) => l.name === holder)?.mac;
      expect(holderMac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      const h1 = hostRunner(lab(), host('h1'));
      for (let round = 1; round <= 5; round++) {
        await h1(['ip', 'neigh', 'flush', 'dev', 'vmbr0']);
        await h1(['ping', '-n', '-q', '-c', '1', '-W', '2', address]);
        const learnt = /lladdr (\S+)/.exec(
          (await h1(['ip', 'neigh', 'show', 'to', address, 'dev', 'vmbr0'])).stdout,
        )?.[1];
        expect(learnt, `h1's ARP entry for h2 (${address}), round ${round}`).toBe(holderMac);
      }
      expect((await step('revert')).after).toMatchObject({ bridge: { type: 'linux' } });
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
