import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareStep } from '../../activities/host/driver.js';
import { createLabDriver, type LabDriver } from '../../activities/host/lab/driver.js';
import { hostRunner, rootRunner, switchOvsRunner, switchRunner, vmRunner } from '../../activities/host/lab/exec.js';
import { hostPaths } from '../../activities/host/lab/layout.js';
import { labVm, type LabState } from '../../activities/host/lab/state.js';
import { parseIpLinks, ipLinksArgv } from '../../activities/host/linux/ip.js';
import { ifName } from '../../activities/host/linux/names.js';
import {
  ovsBondShowArgv,
  ovsLacpShowArgv,
  parseBondShow,
  parseLacpShow,
  type LacpShow,
  type OvsBondShow,
} from '../../activities/host/linux/ovs-appctl.js';
import { parsePingCounts } from '../../activities/host/linux/vxlan.js';
import { injectLoss } from '../../lab/faults.js';
import { labDown } from '../../lab/down.js';
import { labUp } from '../../lab/up.js';
import { parsePlan, planProblemText } from '../../schemas/plan.js';
import { vxlanEndFor, type StepKind, type StepOutcome } from '../../schemas/steps.js';
import { directSteps, labSkipReason, testLabDir } from './lab-env.js';

const skip = labSkipReason();
const { labDir, prefix } = testLabDir('b');
const { command, ctx, log } = directSteps('lab-bond');
const BOND = ifName('bond0');

type Sides = { host: { bond: OvsBondShow; lacp: LacpShow }; sw: { bond: OvsBondShow; lacp: LacpShow } };

/**
 * Bonded uplinks in the lab: each host's two NICs are veths to the switch, whose side is one OVS bond
 * with LACP (balance-tcp). The host's file declares the Linux bond Proxmox VE's guide writes (802.3ad,
 * layer3+4), which the lab's kernel cannot make (no bonding module): ovs-convert builds the bridge on an
 * OVSBond over the same NICs, ovs-bond sets fast LACPDUs and proves the bond from bond/show and
 * lacp/show; both sides then show both members enabled and LACP negotiated, and a ping stream from the
 * switch keeps flowing while either member's cable is pulled. A classic-ifupdown host.
 */
describe.skipIf(skip !== '')(`bonded uplinks with LACP (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`, () => {
  let lab: LabState;
  const drivers = new Map<string, LabDriver>();
  const stateRoot = mkdtempSync(path.join(os.tmpdir(), 'refit-lab-bond-'));
  const host = (id: string) => lab.hosts.find((h) => h.id === id) as LabState['hosts'][number];
  const run = (id: string, kind: StepKind, params: Record<string, unknown>, mode: 'apply' | 'revert' = 'apply') =>
    (drivers.get(id) as LabDriver).runStep(prepareStep(command(id, kind, params, mode)), ctx());
  const file = (id: string) => readFile(hostPaths(host(id)).interfaces, 'utf8');
  const address = (id: string) => host(id).address.split('/')[0] as string;

  /** bond/show and lacp/show of the host's bond0 and of the switch's partner bond. */
  const sides = async (id: string): Promise<Sides> => {
    const h = hostRunner(lab, host(id));
    const sw = switchOvsRunner(lab);
    const partner = ifName(`bond-h${host(id).index}`);
    return {
      host: {
        bond: parseBondShow((await h(ovsBondShowArgv(BOND))).stdout),
        lacp: parseLacpShow((await h(ovsLacpShowArgv(BOND))).stdout),
      },
      sw: {
        bond: parseBondShow((await sw(ovsBondShowArgv(partner))).stdout),
        lacp: parseLacpShow((await sw(ovsLacpShowArgv(partner))).stdout),
      },
    };
  };
  const enabled = (b: OvsBondShow) =>
    b.members
      .filter((m) => m.enabled)
      .map((m) => m.name)
      .sort();
  /** Poll until both sides have every member enabled and LACP negotiated; the last observation. */
  const settled = async (id: string, within = 20_000): Promise<Sides> => {
    const until = Date.now() + within;
    for (;;) {
      const s = await sides(id);
      const ok = [s.host, s.sw].every(
        (side) =>
          side.bond.members.every((m) => m.enabled) &&
          side.lacp.negotiated &&
          side.lacp.members.every((m) => m.status.startsWith('current')),
      );
      if (ok || Date.now() > until) return s;
      await sleep(250);
    }
  };

  /**
   * A 10 ms ping stream from the switch to the host for 3 s; 1 s in, one end of `nic`'s cable is
   * pulled (ip link set down). What the stream lost, and bond/show of both sides while it is out.
   */
  const pull = async (id: string, nic: string) => {
    const stream = switchRunner(lab)(['ping', '-n', '-q', '-i', '0.01', '-c', '300', '-W', '1', address(id)], {
      okExitCodes: [1],
      timeoutMs: 20_000,
    });
    await sleep(1000);
    await rootRunner(['ip', '-n', host(id).ns, 'link', 'set', 'dev', nic, 'down']);
    await sleep(500);
    const during = await sides(id);
    const counts = parsePingCounts((await stream).stdout);
    return { counts, lost: counts.transmitted - counts.received, during };
  };

  beforeAll(async () => {
    lab = await labUp({
      labDir,
      hosts: 1,
      vmsPerHost: 0,
      prefix,
      bonds: ['h1'],
      vmKind: 'netns',
    });
    for (const h of lab.hosts)
      drivers.set(
        h.id,
        await createLabDriver({ hostId: h.id, labDir, stateDir: path.join(stateRoot, h.id), log, confirm: 'probe' }),
      );
  }, 120_000);

  afterAll(async () => {
    await labDown({ labDir, prefix });
    rmSync(path.dirname(labDir), { recursive: true, force: true });
    rmSync(stateRoot, { recursive: true, force: true });
  });

  it('a bonded host boots with the Linux bond in its file, which the lab cannot run; its faults are refused', async () => {
    const original = await file('h1');
    expect(original).toContain(
      'auto bond0\niface bond0 inet manual\n\tbond-slaves ens6 ens7\n\tbond-miimon 100\n\tbond-mode 802.3ad\n',
    );
    expect(original).toContain('\tbridge-ports bond0\n');
    const links = parseIpLinks((await hostRunner(lab, host('h1'))(ipLinksArgv())).stdout);
    expect(links.map((l) => l.name)).toEqual(expect.arrayContaining(['ens6', 'ens7']));
    expect(links.some((l) => l.name === 'bond0')).toBe(false);
    await expect(injectLoss(lab, host('h1'))).rejects.toThrow(/h1 has a bonded uplink/);
  });

  // Classic ifupdown only: ifupdown2's `ifreload -a` takes down the Linux bond it remembers from boot,
  // which the lab's kernel never made, and exits 1 ("ifname bond0 not present in cache") although it
  // builds the OVS bond (docs/lab.md).
  for (const [id, flavour] of [['h1', 'ifupdown']] as [string, 'ifupdown' | 'ifupdown2'][]) {
    it(`${id} (${flavour}): ovs-convert puts vmbr0 on an OVSBond, ovs-bond proves it; LACP negotiated on both sides`, async () => {
      const converted = await run(id, 'ovs-convert', { bridge: 'vmbr0', hostVlan: 1, confirmWithin: 20_000 });
      expect(converted).toMatchObject({ changed: true, after: { ifupdown: flavour } });
      expect(converted.summary).toMatch(/Linux bond bond0 \(802\.3ad\) as OVSBond over ens6 ens7/);
      const text = await file(id);
      expect(text).toContain(
        `${flavour === 'ifupdown2' ? 'auto bond0' : 'allow-vmbr0 bond0'}\niface bond0 inet manual\n\tovs_bonds ens6 ens7\n\tovs_type OVSBond\n`,
      );
      expect(text).not.toContain('bond-slaves');
      const bonded = await run(id, 'ovs-bond', {
        bridge: 'vmbr0',
        bond: 'bond0',
        lacpTime: 'fast',
        settleWithin: 20_000,
      });
      expect(bonded).toMatchObject({
        changed: true,
        after: {
          bond: {
            type: 'ovs',
            mode: 'balance-tcp',
            lacpStatus: 'negotiated',
            members: { ens6: 'enabled', ens7: 'enabled' },
            lacp: { members: { ens6: 'current attached', ens7: 'current attached' } },
          },
        },
      });
      expect(await file(id)).toContain(
        '\tovs_options bond_mode=balance-tcp lacp=active other_config:lacp-time=fast tag=1',
      );
      const s = await settled(id);
      expect(enabled(s.host.bond)).toEqual(['ens6', 'ens7']);
      expect(enabled(s.sw.bond)).toEqual([`rfs-h${host(id).index}`, `rfs-h${host(id).index}b`]);
      expect(s.host.lacp).toMatchObject({ negotiated: true, lacpTime: 'fast' });
      expect(s.sw.lacp.negotiated).toBe(true);
      // Each side's partner is the other: the host's members see the switch's system id, and back.
      expect(new Set(s.host.lacp.members.map((m) => m.partnerSysId)).size).toBe(1);
      expect(s.host.lacp.members[0]?.partnerSysId).not.toBe(s.sw.lacp.members[0]?.partnerSysId);
      expect((await run(id, 'ovs-bond', { bridge: 'vmbr0', bond: 'bond0', lacpTime: 'fast' })).changed).toBe(false);
    }, 90_000);

    it(`${id} (${flavour}): pulling either member keeps a ping stream flowing; putting it back re-enables it`, async () => {
      for (const [nic, peer] of [
        ['ens6', `rfs-h${host(id).index}`],
        ['ens7', `rfs-h${host(id).index}b`],
      ] as const) {
        const { counts, lost, during } = await pull(id, nic);
        console.log(`${id} (${flavour}) ${nic} pulled: ${lost}/${counts.transmitted} pings lost`);
        expect(counts.transmitted).toBe(300);
        expect(lost).toBeLessThanOrEqual(15);
        expect(enabled(during.host.bond)).toEqual(nic === 'ens6' ? ['ens7'] : ['ens6']);
        expect(enabled(during.sw.bond)).not.toContain(peer);
        await rootRunner(['ip', '-n', host(id).ns, 'link', 'set', 'dev', nic, 'up']);
        const back = await settled(id);
        expect(enabled(back.host.bond)).toEqual(['ens6', 'ens7']);
        expect(enabled(back.sw.bond)).toHaveLength(2);
        expect(back.host.lacp.members.every((m) => m.status === 'current attached')).toBe(true);
      }
    }, 90_000);
  }
});

const campaign = testLabDir('c');

/**
 * examples/lab-bond-vxlan.yaml on two bonded lab hosts: its steps, as the plan file gives them, in its
 * order (h1, the canary, then h2), each through the lab driver (not Temporal and the agents): drain,
 * ovs-convert on an OVSBond, ovs-bond, verify, undrain, then each host's own end of the VXLAN (its entry
 * under hosts, as the controller sends it); h2's Linux end proves the tunnel with don't-fragment pings
 * to h1's VM.
 */
describe.skipIf(skip !== '')(
  `examples/lab-bond-vxlan.yaml step by step (namespaces ${campaign.prefix}*)${skip ? ` — ${skip}` : ''}`,
  () => {
    let lab: LabState;
    const stateRoot = mkdtempSync(path.join(os.tmpdir(), 'refit-lab-bondc-'));
    beforeAll(async () => {
      lab = await labUp({
        labDir: campaign.labDir,
        hosts: 2,
        vmsPerHost: 1,
        prefix: campaign.prefix,
        bonds: ['h1', 'h2'],
        vmKind: 'netns',
      });
      // h1's VM in the overlay (the plan puts the VMs' NICs on VLAN 100, the tunnel's).
      await vmRunner(labVm(lab, 'vm101'))(['ip', 'addr', 'add', '192.168.100.1/24', 'dev', 'eth0']);
    }, 120_000);
    afterAll(async () => {
      await labDown({ labDir: campaign.labDir, prefix: campaign.prefix });
      rmSync(path.dirname(campaign.labDir), { recursive: true, force: true });
      rmSync(stateRoot, { recursive: true, force: true });
    });

    it('ovs-convert, ovs-bond and vxlan-tunnel on h1 then h2; the Linux end on h2 reaches the VM of h1 across the bonds and the tunnel', async () => {
      const parsed = parsePlan(readFileSync(new URL('../../examples/lab-bond-vxlan.yaml', import.meta.url), 'utf8'));
      if (!parsed.ok) throw new Error(parsed.problems.map(planProblemText).join('\n'));
      expect(parsed.plan.steps.map((s) => s.kind)).toEqual([
        'drain',
        'ovs-convert',
        'ovs-bond',
        'verify',
        'undrain',
        'vxlan-tunnel',
      ]);
      const outcomes: Record<string, Record<string, StepOutcome>> = {};
      for (const h of lab.hosts) {
        const driver = await createLabDriver({
          hostId: h.id,
          labDir: campaign.labDir,
          stateDir: path.join(stateRoot, h.id),
          log,
          confirm: 'probe',
        });
        outcomes[h.id] = {};
        for (const step of parsed.plan.steps) {
          const params = step.kind === 'vxlan-tunnel' ? vxlanEndFor(step.params, h.id) : step.params;
          (outcomes[h.id] as Record<string, StepOutcome>)[step.kind] = await driver.runStep(
            prepareStep(command(h.id, step.kind, params)),
            ctx(),
          );
        }
      }
      for (const id of ['h1', 'h2']) {
        expect(outcomes[id]?.['ovs-convert']?.summary).toMatch(/as OVSBond over ens6 ens7/);
        expect(outcomes[id]?.['ovs-bond']).toMatchObject({
          after: { bond: { lacpStatus: 'negotiated', members: { ens6: 'enabled', ens7: 'enabled' } } },
        });
        expect(outcomes[id]?.['vxlan-tunnel']).toMatchObject({
          changed: true,
          after: { tunnel: { vni: 100, dstPort: 4789 } },
        });
      }
      expect(outcomes.h2?.['vxlan-tunnel']).toMatchObject({
        after: { check: { payload: 1422, fits: { transmitted: 5, received: 5 }, tooBig: { received: 0 } } },
      });
    }, 150_000);
  },
);
