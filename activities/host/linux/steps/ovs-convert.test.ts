import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandFailedError, type CommandRunner } from '../command.js';
import { captured, hostPathsIn, quietCtx } from '../fixtures.js';
import type { HostEnv } from '../host-env.js';
import { applyOvsConvert, revertOvsConvert } from './ovs-convert.js';

/** As Proxmox VE's admin guide writes a bonded bridge: vmbr0 on the Linux bond bond0 (802.3ad) over two NICs. */
const BONDED = `auto lo
iface lo inet loopback

iface ens6 inet manual

iface ens7 inet manual

auto bond0
iface bond0 inet manual
\tbond-slaves ens6 ens7
\tbond-miimon 100
\tbond-mode 802.3ad
\tbond-xmit-hash-policy layer3+4

auto vmbr0
iface vmbr0 inet static
\taddress 10.77.0.11/24
\tgateway 10.77.0.1
\tbridge-ports bond0
\tbridge-stp off
\tbridge-fd 0
`;

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * A bonded host of either ifupdown flavour whose commands are recorded: `ip -j` answers as a Linux
 * bridge host until the bridge is brought up on Open vSwitch (ifup vmbr0 / ifreload -a with the OVS
 * file), then as an OVS host; everything else succeeds silently. `confirmed` is the controller's word.
 */
function host(
  flavour: 1 | 2,
  confirmed = true,
  fails: (line: string) => CommandFailedError | undefined = () => undefined,
): { env: HostEnv; calls: string[] } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'refit-ovs-convert-'));
  dirs.push(dir);
  const paths = hostPathsIn(dir);
  if (flavour === 2) mkdirSync(paths.ifupdown2);
  writeFileSync(paths.interfaces, BONDED);
  const calls: string[] = [];
  const onOvs = () => readFileSync(paths.interfaces, 'utf8').includes('ovs_type OVSBridge');
  let ovs = false;
  const run: CommandRunner = async (argv) => {
    const line = argv.join(' ');
    calls.push(line);
    const failure = fails(line);
    if (failure !== undefined) throw failure;
    if (line === 'ifup vmbr0' || line === 'ifreload -a') ovs = onOvs();
    const ok = (stdout: string) => ({ argv, stdout, stderr: '', exitCode: 0 });
    if (argv[0] === 'ip' && argv.includes('-j')) {
      const link = argv.includes('link');
      return ok(
        captured(
          ovs
            ? link
              ? 'ip-j-d-link-ovs-host.json'
              : 'ip-j-addr-ovs-host.json'
            : link
              ? 'ip-j-d-link-linux-bridge-host.json'
              : 'ip-j-addr-linux-bridge-host.json',
        ),
      );
    }
    return ok(argv[0] === 'ovs-vsctl' ? captured('ovs-vsctl-show-ovs-host.stdout') : '');
  };
  const never = () => Promise.reject(new Error('not used by ovs-convert'));
  return {
    env: {
      run,
      paths,
      vfs: new Proxy({}, { get: () => never }) as HostEnv['vfs'],
      grubUpdate: [],
      confirm: async () => confirmed,
    },
    calls,
  };
}

const params = { bridge: 'vmbr0', hostVlan: 1, confirmWithin: 1_000 };
/** The ifupdown commands of a run, in order (the reads in between left out). */
const ifupdown = (calls: string[]) => calls.filter((c) => /^if(up|down|reload)\b/.test(c));

describe('ovs-convert on a host whose bridge is on a Linux bond', () => {
  // Classic ifupdown: `ifup vmbr0` runs the if-pre-up.d hooks for vmbr0 only. bridge-utils'
  // (/lib/bridge-utils/ifupdown.sh) adds a bridge-ports entry only if /sys/class/net/<port> exists and
  // never runs ifup for it; ifenslave's hook acts only on a stanza with bond-slaves/bond-mode (the
  // master) or bond-master (a slave), which vmbr0 is not. So bond0, taken down by the conversion,
  // comes back only if the revert brings it up itself, before the bridge (docs/decisions/0036).
  it('classic ifupdown: the revert brings the restored Linux bond up before the bridge', async () => {
    const { env, calls } = host(1);
    await applyOvsConvert(env, params, quietCtx(), 'r');
    expect(ifupdown(calls)).toEqual(['ifdown --force vmbr0', 'ifdown --force bond0', 'ifup vmbr0']);
    calls.length = 0;
    const back = await revertOvsConvert(env, params, quietCtx());
    expect(back.changed).toBe(true);
    expect(readFileSync(env.paths.interfaces, 'utf8')).toBe(BONDED);
    expect(ifupdown(calls)).toEqual(['ifdown --force vmbr0', 'ifup bond0', 'ifup vmbr0']);
  });

  it('classic ifupdown: an unconfirmed switch puts the Linux bond up again before the bridge', async () => {
    const { env, calls } = host(1, false);
    await expect(applyOvsConvert(env, params, quietCtx(), 'r')).rejects.toThrow(/did not confirm/);
    expect(ifupdown(calls)).toEqual([
      'ifdown --force vmbr0',
      'ifdown --force bond0',
      'ifup vmbr0',
      'ifdown --force vmbr0',
      'ifup bond0',
      'ifup vmbr0',
    ]);
    expect(readFileSync(env.paths.interfaces, 'utf8')).toBe(BONDED);
  });

  it('classic ifupdown: a bond that does not come up still has the bridge brought up, and fails the revert naming it', async () => {
    const { env, calls } = host(1, true, (line) =>
      line === 'ifup bond0'
        ? new CommandFailedError({
            argv: ['ifup', 'bond0'],
            stdout: '',
            stderr: 'Cannot find device "bond0"\nifup: failed to bring up bond0\n',
            exitCode: 1,
          })
        : undefined,
    );
    await applyOvsConvert(env, params, quietCtx(), 'r');
    calls.length = 0;
    await expect(revertOvsConvert(env, params, quietCtx())).rejects.toThrow(
      /ifup bond0 \(the Linux bond under vmbr0\) failed.*failed to bring up bond0/s,
    );
    expect(ifupdown(calls)).toEqual(['ifdown --force vmbr0', 'ifup bond0', 'ifup vmbr0']);
  });

  // ifupdown2 applies the whole file: `ifreload -a` brings up every auto interface, bond0 among them,
  // ahead of the bridge whose port it is (its dependency order), so nothing is added there.
  it('ifupdown2: the conversion and the revert apply the file with ifreload -a', async () => {
    const { env, calls } = host(2);
    await applyOvsConvert(env, params, quietCtx(), 'r');
    expect(ifupdown(calls)).toEqual(['ifreload -a']);
    calls.length = 0;
    await revertOvsConvert(env, params, quietCtx());
    expect(ifupdown(calls)).toEqual(['ifdown --force vmbr0', 'ifreload -a']);
  });

  // As a bonded pve lab host answered (docs/decisions/0036): ifreload -a built the bond, then exited 1.
  it('ifupdown2: ifreload -a exiting 1 fails the conversion and puts the old file back; nothing ignores it', async () => {
    let reloads = 0;
    const { env, calls } = host(2, true, (line) =>
      line === 'ifreload -a' && ++reloads === 1
        ? new CommandFailedError({
            argv: ['ifreload', '-a'],
            stdout: '',
            stderr: 'error: ifname bond0 not present in cache\n',
            exitCode: 1,
          })
        : undefined,
    );
    await expect(applyOvsConvert(env, params, quietCtx(), 'r')).rejects.toThrow(
      /ifup vmbr0 failed; the Linux bridge is back.*ifreload -a exited with 1: error: ifname bond0 not present in cache/s,
    );
    expect(ifupdown(calls)).toEqual(['ifreload -a', 'ifdown --force vmbr0', 'ifreload -a']);
    expect(readFileSync(env.paths.interfaces, 'utf8')).toBe(BONDED);
  });
});
