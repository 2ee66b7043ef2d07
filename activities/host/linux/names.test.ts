import { describe, expect, it, vi } from 'vitest';
import { InvalidStepParamsError } from '../driver.js';
import type { CommandRunner } from './command.js';
import { ipLinkMasterArgv, ipLinksArgv, ipVfArgv } from './ip.js';
import { ifName, type IfName } from './names.js';
import { planOvsConversion } from './ovs-plan.js';
import { ovsAddPortArgv, ovsDelPortArgv } from './ovs-vsctl.js';
import { renderSriovRules, sriovPaths } from './sriov.js';

const HOSTILE = ['eth0; rm -rf /', '-x', '../x', 'a b', '$(reboot)', 'eth0\nreboot', '', 'x'.repeat(16), '/etc'];

describe('interface names', () => {
  it.each(HOSTILE)('rejects %j before any command is built', (name) => {
    expect(() => ifName(name)).toThrow(InvalidStepParamsError);
    const asIf = name as IfName;
    for (const build of [
      () => ipLinksArgv(asIf),
      () => ipLinkMasterArgv(asIf, 'vmbr0' as IfName),
      () => ipVfArgv(asIf, 0, { vlan: 0 }),
      () => ovsAddPortArgv('vmbr0' as IfName, asIf, 1),
      () => ovsDelPortArgv(asIf, 'ens6' as IfName),
      () => sriovPaths('/sys', asIf),
      () => renderSriovRules({ nic: name, pci: '0000:03:00.0', numVfs: 1, vfs: {} }),
      () =>
        planOvsConversion('auto vmbr0\niface vmbr0 inet manual\n\tbridge-ports ens6\n', { bridge: name, hostVlan: 1 }),
      () =>
        planOvsConversion('auto vmbr0\niface vmbr0 inet manual\n\tbridge-ports ens6\n', {
          bridge: 'vmbr0',
          uplink: name,
          hostVlan: 1,
        }),
    ]) {
      expect(build).toThrow();
    }
  });

  it('never lets a hostile name reach the runner', async () => {
    const run = vi.fn<CommandRunner>();
    const step = async (name: string) => run(ovsAddPortArgv(ifName('vmbr0'), ifName(name), 1));
    for (const name of HOSTILE) await expect(step(name)).rejects.toThrow(InvalidStepParamsError);
    expect(run).not.toHaveBeenCalled();
    await step('veth101i0');
    expect(run).toHaveBeenCalledWith([
      'ovs-vsctl',
      '--timeout=10',
      '--may-exist',
      'add-port',
      'vmbr0',
      'veth101i0',
      'tag=1',
    ]);
  });

  it('accepts real names', () => {
    for (const name of ['eth0', 'ens6', 'vmbr0', 'vlan1', 'veth101i0', 'p2p1', 'bond0.100'])
      expect(ifName(name)).toBe(name);
  });
});
