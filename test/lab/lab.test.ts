import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hpingArgv, parseHpingStats } from '../../activities/host/linux/hping.js';
import { rebootHost } from '../../activities/host/lab/boot.js';
import { labDown, labNamespaces } from '../../lab/down.js';
import { hostRunner, switchRunner } from '../../activities/host/lab/exec.js';
import { hostPaths } from '../../activities/host/lab/layout.js';
import { locateVms, migrateVm } from '../../activities/host/lab/migrate.js';
import { ovsPids } from '../../activities/host/lab/ovs-daemons.js';
import { labStateFile, type LabState, type LabVm } from '../../activities/host/lab/state.js';
import { labStatus } from '../../lab/status.js';
import { reachableFromSwitch } from '../../activities/host/lab/attach.js';
import { labUp } from '../../lab/up.js';
import { guestPid, startGuest, stopGuest, waitForGuest } from '../../activities/host/lab/qemu.js';
import { prepareStep } from '../../activities/host/driver.js';
import { createLabDriver } from '../../activities/host/lab/driver.js';
import { pino } from 'pino';
import { directSteps, labSkipReason, qemuSkipReason, testLabDir } from './lab-env.js';

const skip = labSkipReason() || qemuSkipReason();
const { labDir, prefix } = testLabDir('l');

describe.skipIf(skip !== '')(`the lab (namespaces ${prefix}*)${skip ? ` — ${skip}` : ''}`, () => {
  let lab: LabState;

  beforeAll(async () => {
    // One real QEMU guest per host (both boot at once, ~10 s under TCG).
    lab = await labUp({ labDir, hosts: 2, vmsPerHost: 1, prefix, vmKind: 'qemu' });
  });

  afterAll(async () => {
    await labDown({ labDir, prefix });
    rmSync(path.dirname(labDir), { recursive: true, force: true });
  });

  const h = (n: number) => lab.hosts[n - 1] as (typeof lab.hosts)[number];
  const ip = (cidr: string) => cidr.split('/')[0] as string;

  it('builds hosts with a Linux bridge, their own Open vSwitch, files and boot id', async () => {
    const status = await labStatus(lab, { probe: true });
    expect(status.hosts.map((s) => [s.id, s.bridge, s.up, s.reachable, s.vms])).toEqual([
      ['h1', 'linux', true, true, ['vm101']],
      ['h2', 'linux', true, true, ['vm201']],
    ]);
    for (const s of status.hosts) {
      expect(s.ovs.ovsdbServer).toBeGreaterThan(0);
      expect(s.ovs.vswitchd).toBeGreaterThan(0);
      expect(s.sriov).toEqual({ totalVfs: 7, numVfs: 0, iommu: false });
    }
    expect(await readFile(hostPaths(h(1)).interfaces, 'utf8')).toContain(
      'iface vmbr0 inet static\n\taddress 10.77.0.11/16\n\tgateway 10.77.0.1\n\tbridge-ports ens6\n',
    );
    // Inside the host, /etc/network/interfaces is the host's own.
    const seen = await hostRunner(lab, h(2))(['cat', '/etc/network/interfaces']);
    expect(seen.stdout).toContain('address 10.77.0.12/16');
  });

  it('gets hping3 replies from the switch on host 1, and from a VM', async () => {
    const fromHost = await hostRunner(lab, h(1))(hpingArgv({ address: '10.77.0.1', count: 10 }));
    expect(parseHpingStats(fromHost.stderr)).toMatchObject({ transmitted: 10, received: 10, lossPct: 0 });
    const toVm = await switchRunner(lab)(hpingArgv({ address: '10.77.1.1', port: 80, count: 10 }));
    expect(parseHpingStats(toVm.stderr).received).toBe(10);
  });

  it('live-migrates a QEMU guest over the lab network while it answers a ping stream, and back home', async () => {
    const vm = lab.vms[0] as (typeof lab.vms)[number];
    expect(vm).toMatchObject({ name: 'vm101', kind: 'qemu', port: 'tap101i0' });
    const sourcePid = await guestPid(h(1), vm);
    expect(sourcePid).toBeGreaterThan(0);
    const away = await migrateVm(lab, 'vm101', 'h2');
    expect(away).toMatchObject({ moved: true, from: 'h1', to: 'h2' });
    console.log(`vm101 h1→h2: ${JSON.stringify(away)}`);
    // The stream ran 300 ms before and after the migration at one echo per 10 ms; QEMU's downtime is a
    // fraction of a second, so most of it is answered, and what was lost is counted.
    expect(away.loss?.sent).toBeGreaterThan(50);
    expect(away.loss?.lost).toBe((away.loss?.sent ?? 0) - (away.loss?.received ?? 0));
    expect((away.loss?.received ?? 0) / (away.loss?.sent ?? 1)).toBeGreaterThan(0.5);
    expect(away.downtimeMs).toBeGreaterThan(0);
    // The guest runs on h2 now: a QEMU there, none on h1, its tap on h2's bridge, same MAC, same address.
    expect(await guestPid(h(1), vm)).toBeUndefined();
    expect(await guestPid(h(2), vm)).toBeGreaterThan(0);
    expect((await locateVms(lab)).get('vm101')).toBe('h2');
    expect(await reachableFromSwitch(lab, '10.77.1.1')).toBe(true);
    expect((await switchRunner(lab)(['ip', 'neigh', 'show', '10.77.1.1'])).stdout).toContain(vm.mac);
    expect(await migrateVm(lab, 'vm101', 'h2')).toMatchObject({ moved: false });
    const back = await migrateVm(lab, 'vm101', 'h1');
    console.log(`vm101 h2→h1: ${JSON.stringify(back)}`);
    expect(back).toMatchObject({ moved: true, from: 'h2', to: 'h1' });
    expect((back.loss?.received ?? 0) / (back.loss?.sent ?? 1)).toBeGreaterThan(0.5);
    expect(await guestPid(h(2), vm)).toBeUndefined();
    expect(await reachableFromSwitch(lab, '10.77.1.1')).toBe(true);
  });

  it('reboots a host: new boot id, runtime state rebuilt from the persisted files, its guest kept, reachable again', async () => {
    const before = (await readFile(hostPaths(h(1)).bootId, 'utf8')).trim();
    const guest = await guestPid(h(1), lab.vms[0] as (typeof lab.vms)[number]);
    const oldPids = await ovsPids(h(1));
    const booted = await rebootHost(lab, h(1));
    expect(booted.bootId).not.toBe(before);
    expect(booted.cmdline).toMatch(/ quiet$/);
    const newPids = await ovsPids(h(1));
    expect(newPids['ovs-vswitchd']).not.toBe(oldPids['ovs-vswitchd']);
    expect(await reachableFromSwitch(lab, ip(h(1).address))).toBe(true);
    // Paused while the host was down, resumed at boot: the same QEMU, its tap on the bridge again.
    expect(await guestPid(h(1), lab.vms[0] as (typeof lab.vms)[number])).toBe(guest);
    expect(await reachableFromSwitch(lab, '10.77.1.1')).toBe(true);
  });

  it('a guest migrated back onto its host after ovs-convert answers there, again with a new QEMU and tap, and after moving away and back: its tap an OVS port with an ofport, its MAC learned on it', async () => {
    // Reported once as not answering (decision 0026), measured answering since (decision 0028), then
    // intermittent in full runs (#11). Found (decision 0035): a guest's new tap on an OVS host that
    // still had the Port row of its old one (the guest had left, or was powered off) was never opened
    // by ovs-vswitchd, and a migration returned before the destination ran the guest.
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'refit-lab-l-state-'));
    try {
      const driver = await createLabDriver({
        hostId: 'h1',
        labDir,
        stateDir,
        log: pino({ level: 'silent' }),
        confirm: 'probe',
      });
      const { command, ctx } = directSteps('lab-qemu-ovs');
      const vm = lab.vms[0] as LabVm;
      const run = hostRunner(lab, h(1));
      const answersOnItsTap = async (when: string) => {
        const ofport = Number((await run(['ovs-vsctl', 'get', 'Interface', 'tap101i0', 'ofport'])).stdout.trim());
        expect(ofport, when).toBeGreaterThan(0);
        expect(await reachableFromSwitch(lab, '10.77.1.1'), when).toBe(true);
        // `ovs-appctl fdb/show vmbr0`: " port  VLAN  MAC  Age" rows; the guest's MAC on its tap's port.
        const fdb = (await run(['ovs-appctl', 'fdb/show', 'vmbr0'])).stdout;
        const row = fdb.split('\n').find((l) => l.includes(vm.mac as string));
        expect(row?.trim().split(/\s+/)[0], `${when}: ${fdb}`).toBe(String(ofport));
      };
      expect((await migrateVm(lab, 'vm101', 'h2')).moved).toBe(true);
      const converted = await driver.runStep(
        prepareStep(command('h1', 'ovs-convert', { bridge: 'vmbr0', hostVlan: 1, confirmWithin: 20_000 })),
        ctx(),
      );
      expect(converted.after).toMatchObject({ bridge: { type: 'ovs' } });
      const back = await migrateVm(lab, 'vm101', 'h1');
      console.log(`vm101 h2→h1 (OVS): ${JSON.stringify(back)}`);
      expect((back.loss?.received ?? 0) / (back.loss?.sent ?? 1)).toBeGreaterThan(0.5);
      await answersOnItsTap('migrated back');
      // Powered off (its tap goes, the Port row stays) and on again: the new tap meets the old row, as a
      // guest that left this host and came back does.
      await stopGuest(h(1), vm);
      await startGuest(lab, h(1), vm);
      await waitForGuest(h(1), vm);
      await answersOnItsTap('a new QEMU');
      // Away from the OVS host and back once more: this migration stalled for 30-130 s when h2's Linux
      // bridge had changed its MAC with the taps in it (decision 0041); the test's 120 s bound catches it.
      expect((await migrateVm(lab, 'vm101', 'h2')).moved).toBe(true);
      expect((await migrateVm(lab, 'vm101', 'h1')).moved).toBe(true);
      await answersOnItsTap('migrated away and back again');
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('lab down finds everything by name even without its state file', async () => {
    // A host agent from the lab's unpacked package whose `refit lab agents` died (SIGKILL) without stopping it.
    const agentFile = path.join(labDir, 'package/usr/lib/refit-host/refit-host.mjs');
    mkdirSync(path.dirname(agentFile), { recursive: true });
    writeFileSync(agentFile, 'setInterval(() => undefined, 60_000);\n');
    const orphan = spawn(process.execPath, [agentFile, 'run'], { detached: true, stdio: 'ignore' });
    orphan.unref();
    rmSync(labStateFile(labDir));
    const guests = [await guestPid(h(1), lab.vms[0] as LabVm), await guestPid(h(2), lab.vms[1] as LabVm)];
    const report = await labDown({ labDir, prefix });
    expect(report.processes).toContain(orphan.pid);
    for (const pid of guests) expect(report.processes).toContain(pid);
    // QEMU guests have no namespace of their own; their taps went with the hosts' namespaces.
    expect(report.namespaces.sort()).toEqual([`${prefix}h1`, `${prefix}h2`, `${prefix}sw`]);
    expect(await labNamespaces(prefix)).toEqual([]);
    expect(existsSync(`/etc/netns/${prefix}h1`)).toBe(false);
    for (const pid of report.processes)
      expect(
        existsSync(`/proc/${pid}/cmdline`) && (await readFile(`/proc/${pid}/cmdline`, 'utf8')).includes(labDir),
      ).toBe(false);
  });
});
