import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { InvalidStepParamsError, prepareStep, type StepContext } from '../driver.js';
import type { ReceivedCommand } from '../../../schemas/command.js';
import type { CommandRunner } from './command.js';
import { createLinuxDriver } from './driver.js';
import { captured, ipOnLinuxBridge } from './fixtures.js';
import { applyOvsConvert } from './steps/ovs-convert.js';

const ctx = (): StepContext => ({
  signal: new AbortController().signal,
  progress: () => undefined,
  log: pino({ level: 'silent' }),
  recovering: false,
});
const command = (
  kind: ReceivedCommand['kind'],
  params: Record<string, unknown>,
  mode: 'apply' | 'revert' = 'apply',
): ReceivedCommand => ({
  commandId: `t/${kind}/${mode}`,
  hostId: 'hv1',
  kind,
  mode,
  params,
  rolloutId: 'r',
  workflowId: 'w',
  issuedAt: new Date().toISOString(),
});

/** Answers virsh with real captured output and records every command. */
function recorder(): { run: CommandRunner; calls: string[][] } {
  const calls: string[][] = [];
  const run: CommandRunner = async (argv) => {
    calls.push([...argv]);
    const stdout = argv.includes('list') ? captured('virsh-list-all.stdout') : '';
    return { argv, stdout, stderr: '', exitCode: 0 };
  };
  return { run, calls };
}

describe('the linux driver, command layer', () => {
  it('drains with virsh migrate --live to the destinations the controller chose, and brings the VMs back', async () => {
    const { run, calls } = recorder();
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'refit-linux-driver-'));
    const driver = createLinuxDriver({
      hostId: 'hv1',
      stateDir,
      run,
      libvirtUri: 'test:///default',
    });
    const drained = await driver.runStep(prepareStep(command('drain', { destinations: { test: 'hv2' } })), ctx());
    expect(drained).toMatchObject({ changed: true, after: { cordoned: true, away: { test: 'hv2' } } });
    expect(calls).toContainEqual([
      'virsh',
      '-c',
      'test:///default',
      'migrate',
      '--live',
      '--persistent',
      '--undefinesource',
      '--verbose',
      '--domain',
      'test',
      '--desturi',
      'qemu+ssh://hv2/system',
    ]);
    const back = await driver.runStep(prepareStep(command('undrain', {})), ctx());
    expect(back).toMatchObject({ changed: true, after: { cordoned: false } });
    expect(calls.at(-1)).toEqual([
      'virsh',
      '-c',
      'qemu+ssh://hv2/system',
      'migrate',
      '--live',
      '--persistent',
      '--undefinesource',
      '--verbose',
      '--domain',
      'test',
      '--desturi',
      'qemu+ssh://hv1/system',
    ]);
  });

  it('refuses to drain a VM the controller gave no destination', async () => {
    const { run } = recorder();
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'refit-linux-driver-'));
    const driver = createLinuxDriver({
      hostId: 'hv1',
      stateDir,
      run,
      libvirtUri: 'test:///default',
    });
    await expect(driver.runStep(prepareStep(command('drain', {})), ctx())).rejects.toThrow(/no destination for test/);
  });

  it('a domain with a <hostdev>: refused by default, left running under skip (and a reboot refuses), shutdown only on Proxmox', async () => {
    const calls: string[][] = [];
    const run: CommandRunner = async (argv) => {
      calls.push([...argv]);
      const stdout =
        ipOnLinuxBridge(argv) ??
        (argv.includes('list')
          ? captured('virsh-list-all.stdout')
          : argv.includes('dumpxml')
            ? captured('virsh-dumpxml-hostdev.stdout')
            : '');
      return { argv, stdout, stderr: '', exitCode: 0 };
    };
    const open = () =>
      createLinuxDriver({
        hostId: 'hv1',
        stateDir: mkdtempSync(path.join(os.tmpdir(), 'refit-linux-driver-')),
        run,
        libvirtUri: 'test:///default',
        vmBackend: 'libvirt',
      });
    const driver = open();
    expect((await driver.facts()).vms).toEqual([
      { name: 'test', state: 'running', sriov: true, memoryBytes: 16 * 2 ** 30, passthrough: ['hostdev0', 'hostdev1'] },
    ]);
    const drain = (nonMigratable?: string) =>
      prepareStep(command('drain', { destinations: {}, ...(nonMigratable ? { nonMigratable } : {}) }));
    await expect(driver.runStep(drain(), ctx())).rejects.toThrow(
      'drain: VMs with passed-through devices cannot be live-migrated: test (hostdev0, hostdev1) (nonMigratable: refuse)',
    );
    await expect(open().runStep(drain('shutdown'), ctx())).rejects.toThrow(/shutdown is done on Proxmox nodes only/);
    const skipped = await driver.runStep(drain('skip'), ctx());
    expect(skipped.summary).toBe(
      'migrated 0 VMs away; host NOT drained: left test (hostdev0, hostdev1) running here (nonMigratable: skip); host cordoned',
    );
    expect(calls.filter((c) => c.includes('migrate'))).toEqual([]);
    await expect(driver.runStep(prepareStep(command('reboot', {})), ctx())).rejects.toThrow(
      'reboot refused: this host is not drained: the drain left test running here (nonMigratable: skip)',
    );
  });

  it('never lets a hostile interface name reach a command', async () => {
    expect(() => prepareStep(command('ovs-convert', { bridge: 'eth0; rm -rf /' }))).toThrow(InvalidStepParamsError);
    expect(() => prepareStep(command('sriov-enable', { nic: '-x', vfs: 1 }))).toThrow(InvalidStepParamsError);
    const { run, calls } = recorder();
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'refit-linux-driver-'));
    const driver = createLinuxDriver({ hostId: 'hv1', stateDir, run });
    const env = (driver as unknown as { env: Parameters<typeof applyOvsConvert>[0] }).env;
    for (const bridge of ['eth0; rm -rf /', '-x', '../x']) {
      const params = { bridge, hostVlan: 1, confirmWithin: 1000 };
      await expect(applyOvsConvert(env, params, ctx(), 'r')).rejects.toThrow(InvalidStepParamsError);
    }
    expect(calls).toEqual([]);
  });
});
