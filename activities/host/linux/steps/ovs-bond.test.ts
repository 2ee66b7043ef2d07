import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { StepFailedError, type StepContext } from '../../driver.js';
import { CommandFailedError, type CommandRunner } from '../command.js';
import { captured, hostPathsIn } from '../fixtures.js';
import type { HostEnv } from '../host-env.js';
import { applyOvsBond, revertOvsBond } from './ovs-bond.js';

/** An OVS bridge whose uplink is an OVSPort on a Linux active-backup bond (what ovs-convert used to make). */
const MIXED = `auto lo
iface lo inet loopback

iface eno1 inet manual
\tbond-master bond0

iface eno2 inet manual
\tbond-master bond0

allow-vmbr0 bond0
iface bond0 inet manual
\tovs_bridge vmbr0
\tovs_type OVSPort
\tovs_options tag=1 vlan_mode=native-untagged
\tbond-mode active-backup

auto vmbr0
allow-ovs vmbr0
iface vmbr0 inet manual
\tovs_type OVSBridge
\tovs_ports bond0 vlan1
`;

const ctx = (): StepContext => ({
  signal: new AbortController().signal,
  progress: () => undefined,
  log: pino({ level: 'silent' }),
  recovering: false,
});
const params = { bridge: 'vmbr0', bond: 'bond0', mode: 'balance-tcp', lacpTime: 'fast', settleWithin: 1_500 } as const;

/**
 * A classic-ifupdown host whose programs answer with output captured from the real ones: no bond in
 * Open vSwitch until `ifup bond0` ran, then bond/show and lacp/show as `afterIfup` says.
 */
function host(afterIfup: { bond: string; lacp: string }): { env: HostEnv; calls: string[] } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'refit-ovs-bond-'));
  const calls: string[] = [];
  let up = false;
  const run: CommandRunner = async (argv) => {
    const line = argv.join(' ');
    calls.push(line);
    const ok = (stdout: string) => ({ argv, stdout, stderr: '', exitCode: 0 });
    if (line === 'ifup bond0') up = true;
    if (line.startsWith('ip -j -d link show')) return ok(captured('ip-j-d-link-ovs-host.json'));
    if (argv[2] === 'bond/show' || argv[2] === 'lacp/show') {
      if (!up)
        throw new CommandFailedError({
          argv,
          stdout: '',
          stderr: 'no such bond\novs-appctl: server returned an error',
          exitCode: 2,
        });
      return ok(argv[2] === 'bond/show' ? afterIfup.bond : afterIfup.lacp);
    }
    if (line === 'ifdown --force bond0') up = false;
    return ok('');
  };
  const paths = hostPathsIn(dir);
  writeFileSync(paths.interfaces, MIXED);
  const never = () => Promise.reject(new Error('not used by ovs-bond'));
  const vfs = new Proxy({}, { get: () => never }) as HostEnv['vfs'];
  return { env: { run, paths, vfs, grubUpdate: [], confirm: never }, calls };
}

const negotiated = {
  bond: captured('ovs-appctl-bond-show-balance-tcp-lacp.stdout'),
  lacp: captured('ovs-appctl-lacp-show-negotiated.stdout'),
};

/** The bond taken down and brought up from the new file, then again from the old one. */
const SWITCHED_AND_BACK = ['ifdown --force bond0', 'ifup bond0', 'ifdown --force bond0', 'ifup bond0'];

describe('ovs-bond on a classic ifupdown host', () => {
  it('writes the OVSBond, takes the Linux bond down and the OVS bond up, and proves it from bond/show and lacp/show', async () => {
    const { env, calls } = host(negotiated);
    const outcome = await applyOvsBond(env, params, ctx());
    expect(calls.filter((c) => c.startsWith('if'))).toEqual(['ifdown --force bond0', 'ifup bond0']);
    const file = readFileSync(env.paths.interfaces, 'utf8');
    expect(file).toContain(
      'allow-vmbr0 bond0\niface bond0 inet manual\n\tovs_bonds eno1 eno2\n\tovs_type OVSBond\n\tovs_bridge vmbr0\n\tovs_options bond_mode=balance-tcp lacp=active other_config:lacp-time=fast tag=1 vlan_mode=native-untagged\n',
    );
    expect(outcome).toMatchObject({
      changed: true,
      before: { bond: { type: 'none' } },
      after: {
        ifupdown: 'ifupdown',
        bond: {
          type: 'ovs',
          mode: 'balance-tcp',
          lacpStatus: 'negotiated',
          members: { eno1: 'enabled', eno2: 'enabled' },
          lacp: { status: 'active negotiated', members: { eno1: 'current attached', eno2: 'current attached' } },
        },
      },
    });
    expect(readFileSync(path.join(env.paths.backupDir, 'interfaces.refit-before-ovs-bond'), 'utf8')).toBe(MIXED);

    calls.length = 0;
    const again = await applyOvsBond(env, params, ctx());
    expect(again.changed).toBe(false);
    expect(calls.filter((c) => c.startsWith('if'))).toEqual([]);

    const back = await revertOvsBond(env, params, ctx());
    expect(back.changed).toBe(true);
    expect(readFileSync(env.paths.interfaces, 'utf8')).toBe(MIXED);
  });

  it('puts the old file back and fails naming the member when the bond does not settle', async () => {
    const { env, calls } = host({
      bond: captured('ovs-appctl-bond-show-member-down.stdout'),
      lacp: captured('ovs-appctl-lacp-show-member-down.stdout'),
    });
    const failed = applyOvsBond(env, params, ctx());
    await expect(failed).rejects.toThrow(StepFailedError);
    await expect(failed).rejects.toThrow(
      /bond0 did not come up as asked within 2s: member eno1 not enabled; LACP members eno1 \(expired attached\) not current and attached; the old \/etc\/network\/interfaces is back/,
    );
    expect(readFileSync(env.paths.interfaces, 'utf8')).toBe(MIXED);
    expect(calls.filter((c) => c.startsWith('if'))).toEqual(SWITCHED_AND_BACK);
  });

  // What a bonded ifupdown2 lab host answered (decision 0036): the new file left in place with a raw error before.
  it('puts the old file back and fails naming the command when bringing the bond up fails', async () => {
    const { env, calls } = host(negotiated);
    const run = env.run;
    let ups = 0;
    env.run = async (argv, opts) => {
      if (argv.join(' ') === 'ifup bond0' && ++ups === 1) {
        calls.push('ifup bond0');
        throw new CommandFailedError({
          argv,
          stdout: '',
          stderr: 'error: ifname bond0 not present in cache\n',
          exitCode: 1,
        });
      }
      return run(argv, opts);
    };
    const failed = applyOvsBond(env, params, ctx());
    await expect(failed).rejects.toThrow(StepFailedError);
    await expect(failed).rejects.toThrow(
      /ovs-bond: bringing bond0 up failed \(ifup bond0 exited with 1: error: ifname bond0 not present in cache\); the old \/etc\/network\/interfaces is back/,
    );
    expect(readFileSync(env.paths.interfaces, 'utf8')).toBe(MIXED);
    expect(calls.filter((c) => c.startsWith('if'))).toEqual(SWITCHED_AND_BACK);
  });

  it('refuses a revert without the backup, leaving the bond as it is', async () => {
    const { env, calls } = host(negotiated);
    await expect(revertOvsBond(env, params, ctx())).rejects.toThrow(
      /no backup of \/etc\/network\/interfaces from before ovs-bond/,
    );
    expect(calls.filter((c) => c.startsWith('if'))).toEqual([]);
  });
});
