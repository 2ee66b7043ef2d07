import { randomBytes } from 'node:crypto';
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
import type { LabWorkers } from '../../lab/workers.js';
import { AUDIT_CHAINS } from '../../schemas/audit.js';
import type { StepKind, StepOutcome } from '../../schemas/steps.js';
import { trailEvents } from '../audit-helpers.js';
import { plan, testConfig, waitForOnline } from '../helpers/controller.js';
import { startTestController, type TestController } from '../helpers/fleet.js';
import { hostCommands } from '../helpers/results.js';
import { testStack } from '../helpers/stack.js';
import { directSteps, labSkipReason, startLabAgents, testLabDir } from './lab-env.js';

const skip = labSkipReason();
const { labDir, prefix } = testLabDir('b');
const { command, ctx, log } = directSteps('lab-bond');
const BOND = ifName('bond0');

type Sides = { host: { bond: OvsBondShow; lacp: LacpShow }; sw: { bond: OvsBondShow; lacp: LacpShow } };

/** bond/show and lacp/show of a bonded lab host's bond0 and of the switch's partner bond. */
async function bondSides(lab: LabState, h: LabState['hosts'][number]): Promise<Sides> {
  const on = hostRunner(lab, h);
  const sw = switchOvsRunner(lab);
  const partner = ifName(`bond-h${h.index}`);
  return {
    host: {
      bond: parseBondShow((await on(ovsBondShowArgv(BOND))).stdout),
      lacp: parseLacpShow((await on(ovsLacpShowArgv(BOND))).stdout),
    },
    sw: {
      bond: parseBondShow((await sw(ovsBondShowArgv(partner))).stdout),
      lacp: parseLacpShow((await sw(ovsLacpShowArgv(partner))).stdout),
    },
  };
}

const enabled = (b: OvsBondShow) =>
  b.members
    .filter((m) => m.enabled)
    .map((m) => m.name)
    .sort();

/** Poll until both sides have every member enabled and LACP negotiated; the last observation. */
async function bondSettled(lab: LabState, h: LabState['hosts'][number], within = 20_000): Promise<Sides> {
  const until = Date.now() + within;
  for (;;) {
    const s = await bondSides(lab, h);
    const ok = [s.host, s.sw].every(
      (side) =>
        side.bond.members.every((m) => m.enabled) &&
        side.lacp.negotiated &&
        side.lacp.members.every((m) => m.status.startsWith('current')),
    );
    if (ok || Date.now() > until) return s;
    await sleep(250);
  }
}

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

  const sides = (id: string) => bondSides(lab, host(id));
  const settled = (id: string, within = 20_000) => bondSettled(lab, host(id), within);

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
 * examples/lab-bond-vxlan.yaml as a real rollout on two bonded lab hosts: Temporal, the controller and
 * a host agent per host running the host package built from this tree (as lab-e2e runs
 * lab-ovs-sriov.yaml), the plan as shipped with only its host ids made this run's own. h1 (the canary)
 * then h2: drain, ovs-convert on an OVSBond (confirmed by the controller), ovs-bond with fast LACPDUs,
 * verify, undrain, then each host's end of VNI 100. Afterwards both bonds have every member enabled and
 * LACP negotiated on both sides, don't-fragment pings from h2's Linux end to h1's VM come back at
 * 1422 bytes and not at 1423, and every step of every host is in its audit trail with before and after.
 */
describe.skipIf(skip !== '')(
  `examples/lab-bond-vxlan.yaml as a rollout (namespaces ${campaign.prefix}*)${skip ? ` — ${skip}` : ''}`,
  () => {
    const stack = testStack();
    const config = testConfig(stack);
    // Host ids of this run only: agents of other test files may share the stack's NATS.
    const hostPrefix = `c${randomBytes(2).toString('hex')}-`;
    const ids = { h1: `${hostPrefix}h1`, h2: `${hostPrefix}h2` };
    let lab: LabState;
    let workers: LabWorkers | undefined;
    let controller: TestController | undefined;
    const host = (id: string) => lab.hosts.find((h) => h.id === id) as LabState['hosts'][number];

    /** The example as shipped, its host ids (targets and vxlan-tunnel's `hosts`) this run's. */
    const examplePlan = () => {
      const text = readFileSync(new URL('../../examples/lab-bond-vxlan.yaml', import.meta.url), 'utf8');
      return plan(text.replace(/\b(h[12])\b(?=[\]:,])/g, (_, h: 'h1' | 'h2') => ids[h]));
    };

    beforeAll(async () => {
      lab = await labUp({
        labDir: campaign.labDir,
        hosts: 2,
        vmsPerHost: 1,
        prefix: campaign.prefix,
        hostPrefix,
        bonds: ['h1', 'h2'],
        vmKind: 'netns',
      });
      // h1's VM in the overlay (the plan puts the VMs' NICs on VLAN 100, the tunnel's).
      await vmRunner(labVm(lab, 'vm101'))(['ip', 'addr', 'add', '192.168.100.1/24', 'dev', 'eth0']);
      workers = await startLabAgents(lab, stack);
      controller = await startTestController(config);
      await waitForOnline(config, [ids.h1, ids.h2]);
    }, 180_000);
    afterAll(async () => {
      await workers?.stop();
      await controller?.stop();
      await labDown({ labDir: campaign.labDir, prefix: campaign.prefix });
      rmSync(path.dirname(campaign.labDir), { recursive: true, force: true });
    }, 120_000);

    it('h1 then h2: both bonds negotiated, the tunnel carries 1422 bytes with DF and not 1423, every step audited with before and after', async () => {
      const p = examplePlan();
      expect(p.targets).toEqual({ hosts: [ids.h1, ids.h2] });
      const kinds = p.steps.map((s) => s.kind);
      expect(kinds).toEqual(['drain', 'ovs-convert', 'ovs-bond', 'verify', 'undrain', 'vxlan-tunnel']);
      const { id: rolloutId, result } = await (controller as TestController).runRollout(p);
      expect(result.state, JSON.stringify({ message: result.message, hosts: result.hosts })).toBe('completed');

      // What each host says of its steps (the results bucket), in the plan's order, all succeeded.
      const commandsOf = hostCommands(() => stack.controllerConnection());
      const outcomes: Record<string, Record<string, StepOutcome | undefined>> = {};
      for (const id of [ids.h1, ids.h2]) {
        const applied = (await commandsOf(id)).filter((c) => c.mode === 'apply');
        expect(
          applied.map((c) => `${c.kind}:${c.state}`),
          id,
        ).toEqual(expect.arrayContaining(kinds.map((k) => `${k}:succeeded`)));
        outcomes[id] = Object.fromEntries(applied.map((c) => [c.kind, c.outcome]));
        expect(outcomes[id]?.['ovs-convert']?.summary, id).toMatch(/as OVSBond over ens6 ens7/);
        expect(outcomes[id]?.['ovs-bond'], id).toMatchObject({
          after: { bond: { lacpStatus: 'negotiated', members: { ens6: 'enabled', ens7: 'enabled' } } },
        });
        expect(outcomes[id]?.['vxlan-tunnel'], id).toMatchObject({
          changed: true,
          after: { tunnel: { vni: 100, dstPort: 4789 } },
        });
      }
      // h2's own check, inside its vxlan-tunnel step: DF pings to h1's VM across the bonds and the tunnel.
      expect(outcomes[ids.h2]?.['vxlan-tunnel']).toMatchObject({
        after: { check: { payload: 1422, fits: { transmitted: 5, received: 5 }, tooBig: { received: 0 } } },
      });

      // After the rollout: both sides of each bond, every member enabled, LACP negotiated, fast LACPDUs.
      for (const id of [ids.h1, ids.h2]) {
        const s = await bondSettled(lab, host(id));
        const n = host(id).index;
        expect(enabled(s.host.bond), id).toEqual(['ens6', 'ens7']);
        expect(enabled(s.sw.bond), id).toEqual([`rfs-h${n}`, `rfs-h${n}b`]);
        expect(s.host.bond.mode, id).toBe('balance-tcp');
        expect(s.host.lacp, id).toMatchObject({ negotiated: true, lacpTime: 'fast' });
        expect(s.sw.lacp.negotiated, id).toBe(true);
        expect(
          s.host.lacp.members.map((m) => m.status),
          id,
        ).toEqual(['current attached', 'current attached']);
      }

      // The tunnel after the rollout, measured here: from h2's Linux end to h1's VM, the largest payload
      // the underlay leaves room for (1500 − 50 − 28) with don't-fragment comes back, one byte more does not.
      const dfPing = async (size: number) =>
        parsePingCounts(
          (
            await hostRunner(lab, host(ids.h2))(
              ['ping', '-n', '-M', 'do', '-s', String(size), '-c', '3', '-i', '0.2', '-W', '1', '192.168.100.1'],
              { okExitCodes: [1] },
            )
          ).stdout,
        );
      expect(await dfPing(1422)).toMatchObject({ transmitted: 3, received: 3 });
      expect((await dfPing(1423)).received).toBe(0);

      // The audit trail: each host's chain holds every step as the host ran it, with before and after.
      const trail = await trailEvents(await stack.controllerConnection());
      for (const id of [ids.h1, ids.h2]) {
        const done = trail
          .filter(
            (e) =>
              e.record.subject === AUDIT_CHAINS.host(id) &&
              e.event.rolloutId === rolloutId &&
              e.event.type === 'step.succeeded',
          )
          .map((e) => e.event);
        expect(
          done.map((e) => e.step),
          id,
        ).toEqual(kinds);
        for (const e of done) {
          const data = e.data as { before?: unknown; after?: unknown; summary?: string };
          expect(data.before, `${id} ${String(e.step)}: before`).toBeDefined();
          expect(data.after, `${id} ${String(e.step)}: after`).toBeDefined();
          expect(data.summary, `${id} ${String(e.step)}`).toBe(outcomes[id]?.[String(e.step)]?.summary);
        }
        const convert = done.find((e) => e.step === 'ovs-convert')?.data as {
          before: { bridge: { type: string } };
          after: { bridge: { type: string } };
        };
        expect([convert.before.bridge.type, convert.after.bridge.type], id).toEqual(['linux', 'ovs']);
      }
    }, 240_000);
  },
);
