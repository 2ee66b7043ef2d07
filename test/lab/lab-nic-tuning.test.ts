import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareStep } from '../../activities/host/driver.js';
import { createLabDriver, type LabDriver } from '../../activities/host/lab/driver.js';
import { hostRunner } from '../../activities/host/lab/exec.js';
import { hostPaths } from '../../activities/host/lab/layout.js';
import type { LabState } from '../../activities/host/lab/state.js';
import { reachableFromSwitch } from '../../activities/host/lab/attach.js';
import { parseEthtoolChannels, parseEthtoolFeatures } from '../../activities/host/linux/ethtool.js';
import { parseLinkSettings } from '../../activities/host/linux/link-settings.js';
import { labDown } from '../../lab/down.js';
import { labUp } from '../../lab/up.js';
import type { StepKind } from '../../schemas/steps.js';
import { directSteps, labSkipReason, testLabDir } from './lab-env.js';

const skip = labSkipReason();
const { labDir, prefix } = testLabDir('t');
const { command, ctx, notes, log } = directSteps('lab-tune');
const commands = () =>
  notes.flatMap((n) => (n.type === 'step.command' ? [n.argv.slice(6).join(' ')] : [])).filter((c) => c !== '');

/**
 * nic-tuning and net-health on the real uplink of lab hosts (a veth to the switch): h1 is a `pve` host
 * (ifupdown2 and its ethtool addon), h2 a `debian` host (classic ifupdown, post-up lines). A lab
 * reboot resets the uplink to a fresh veth's settings, so only what was persisted comes back.
 */
describe.skipIf(skip !== '')(
  `nic-tuning and net-health on lab uplinks (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`,
  () => {
    let lab: LabState;
    const drivers = new Map<string, LabDriver>();
    const stateRoot = mkdtempSync(path.join(os.tmpdir(), 'refit-lab-tune-'));
    const host = (id: string) => lab.hosts.find((h) => h.id === id) as LabState['hosts'][number];
    const driver = (id: string) => drivers.get(id) as LabDriver;
    const run = (id: string, kind: StepKind, params: Record<string, unknown>, mode: 'apply' | 'revert' = 'apply') => {
      notes.length = 0;
      return driver(id).runStep(prepareStep(command(id, kind, params, mode)), ctx());
    };
    const sh = (id: string, argv: string[]) => hostRunner(lab, host(id))(argv);
    /** The uplink as ethtool and ip show it now. */
    const uplink = async (id: string) => {
      const dev = host(id).uplink;
      const offloads = parseEthtoolFeatures((await sh(id, ['ethtool', '--json', '-k', dev])).stdout);
      const channels = parseEthtoolChannels((await sh(id, ['ethtool', '-l', dev])).stdout);
      const link = parseLinkSettings((await sh(id, ['ip', '-j', '-d', 'link', 'show', 'dev', dev])).stdout);
      return {
        gro: offloads.gro?.on,
        tso: offloads.tso?.on,
        rx: channels.current.rx,
        maxRx: channels.max.rx,
        mtu: link.mtu,
        txqueuelen: link.txqueuelen,
      };
    };
    const interfaces = (id: string) => readFile(hostPaths(host(id)).interfaces, 'utf8');
    const reachable = (id: string) => reachableFromSwitch(lab, host(id).address.split('/')[0] as string);
    let tuning: Record<string, unknown>;

    beforeAll(async () => {
      lab = await labUp({ labDir, hosts: 2, vmsPerHost: 0, prefix, flavours: { h1: 'pve' } });
      for (const h of lab.hosts)
        drivers.set(
          h.id,
          await createLabDriver({ hostId: h.id, labDir, stateDir: path.join(stateRoot, h.id), log, confirm: 'probe' }),
        );
      // A veth has as many rx/tx channels as the machine has CPUs; use them all (at least 1 is always there).
      const { maxRx } = await uplink('h1');
      tuning = {
        interfaces: [
          { name: 'ens6', offloads: { gro: true, tso: false }, channels: { rx: maxRx }, txqueuelen: 5000, mtu: 9000 },
        ],
      };
    });

    afterAll(async () => {
      await labDown({ labDir, prefix });
      rmSync(path.dirname(labDir), { recursive: true, force: true });
      rmSync(stateRoot, { recursive: true, force: true });
    });

    it('pve: sets offloads, channels, txqueuelen and MTU at once and persists them as ifupdown2 attributes', async () => {
      const before = await uplink('h1');
      expect(before).toMatchObject({ gro: false, tso: true, rx: 1, mtu: 1500, txqueuelen: 1000 });
      const out = await run('h1', 'nic-tuning', tuning);
      expect(out).toMatchObject({
        changed: true,
        before: { interfaces: { ens6: { offloads: { gro: false, tso: true }, mtu: 1500, txqueuelen: 1000 } } },
        after: { ifupdown: 'ifupdown2', interfaces: { ens6: { offloads: { gro: true, tso: false }, mtu: 9000 } } },
      });
      expect(commands()).toEqual(expect.arrayContaining(['ethtool -K ens6 tso off gro on']));
      expect(await uplink('h1')).toMatchObject({
        gro: true,
        tso: false,
        rx: before.maxRx,
        mtu: 9000,
        txqueuelen: 5000,
      });
      const file = await interfaces('h1');
      expect(file).toContain(
        `iface ens6 inet manual\n\tmtu 9000\n\ttso-offload off\n\tgro-offload on\n\tpost-up ethtool -L ens6 rx ${before.maxRx}\n\tpost-up ip link set dev ens6 txqueuelen 5000\n`,
      );
      expect(await reachable('h1')).toBe(true);
    });

    it('pve: a second apply changes nothing', async () => {
      const file = await interfaces('h1');
      const again = await run('h1', 'nic-tuning', tuning);
      expect(again).toMatchObject({ changed: false, summary: 'ens6 already tuned and persisted' });
      expect(commands().filter((c) => /^ethtool -[KGL]|^ip link set/.test(c))).toEqual([]);
      expect(await interfaces('h1')).toBe(file);
    });

    it('pve: after a reboot (the uplink reset to a fresh veth) ifupdown2 brings the persisted settings back', async () => {
      await sh('h1', ['ethtool', '-K', 'ens6', 'gso', 'off']); // not persisted: the reboot resets it
      await driver('h1').reboot();
      expect(await uplink('h1')).toMatchObject({ gro: true, tso: false, mtu: 9000, txqueuelen: 5000 });
      const gso = parseEthtoolFeatures((await sh('h1', ['ethtool', '--json', '-k', 'ens6'])).stdout).gso;
      expect(gso?.on).toBe(true);
      expect(await reachable('h1')).toBe(true);
    });

    it('refuses, before changing anything, what a veth does not support: a fixed offload and ring sizes, each named', async () => {
      const file = await interfaces('h1');
      const err: unknown = await run('h1', 'nic-tuning', {
        interfaces: [{ name: 'ens6', offloads: { lro: true, gro: false }, rings: { rx: 512 } }],
      }).catch((e: unknown) => e);
      expect(err).toMatchObject({
        name: 'UnsupportedHardwareError',
        message:
          'nic-tuning: not supported, nothing changed: ens6 offload lro on (fixed off by its driver); ens6 rings (ethtool -g: Operation not supported)',
      });
      expect(await uplink('h1')).toMatchObject({ gro: true });
      expect(await interfaces('h1')).toBe(file);
    });

    it('net-health passes on a quiet host and names the interface, counter and delta when frames are dropped', async () => {
      const quiet = await run('h1', 'net-health', { window: 1_000, interfaces: ['ens6', 'vmbr0'] });
      expect(quiet.summary).toMatch(
        /^net-health over 1 s on ens6, vmbr0: no drops, errors or overruns; tcpRetransmits \+0$/,
      );
      // ens6 now has MTU 9000, its peer on the switch 1500: the veth drops every frame above 1500 that
      // the host sends whole (vmbr0 raised to 9000 as well, else the host fragments to its 1500).
      await sh('h1', ['ip', 'link', 'set', 'dev', 'vmbr0', 'mtu', '9000']);
      const sw = lab.switch.address.split('/')[0] as string;
      const [health] = await Promise.allSettled([
        run('h1', 'net-health', { window: 3_000, interfaces: ['ens6'], max: { txDropped: 0 } }),
        sh('h1', ['hping3', '-1', '-c', '10', '-i', 'u100000', '-d', '3000', sw]).catch(() => undefined),
      ]);
      await sh('h1', ['ip', 'link', 'set', 'dev', 'vmbr0', 'mtu', '1500']);
      expect(health.status).toBe('rejected');
      expect((health as PromiseRejectedResult).reason).toMatchObject({
        name: 'StepFailedError',
        message: expect.stringMatching(/^net-health over 3 s: ens6 txDropped \+\d+ \(at most 0\)$/),
      });
    });

    it('pve: revert puts the settings and the stanza back as they were before the rollout', async () => {
      const out = await run('h1', 'nic-tuning', tuning, 'revert');
      expect(out).toMatchObject({ changed: true, after: { interfaces: { ens6: { mtu: 1500, txqueuelen: 1000 } } } });
      expect(await uplink('h1')).toMatchObject({ gro: false, tso: true, rx: 1, mtu: 1500, txqueuelen: 1000 });
      expect(await interfaces('h1')).toContain('iface ens6 inet manual\n\nauto vmbr0');
    });

    it('debian: persists as mtu and post-up lines that classic ifupdown runs at boot, and reverts', async () => {
      const out = await run('h2', 'nic-tuning', tuning);
      expect(out).toMatchObject({ changed: true, after: { ifupdown: 'ifupdown' } });
      expect(await interfaces('h2')).toContain(
        'auto ens6\niface ens6 inet manual\n\tmtu 9000\n\tpost-up ethtool -K ens6 tso off gro on\n',
      );
      await driver('h2').reboot();
      const maxRx = (await uplink('h2')).maxRx;
      expect(await uplink('h2')).toMatchObject({ gro: true, tso: false, rx: maxRx, mtu: 9000, txqueuelen: 5000 });
      expect(await reachable('h2')).toBe(true);
      await run('h2', 'nic-tuning', tuning, 'revert');
      expect(await uplink('h2')).toMatchObject({ gro: false, tso: true, rx: 1, mtu: 1500, txqueuelen: 1000 });
      expect(await interfaces('h2')).not.toMatch(/post-up|auto ens6/);
    });
  },
);
