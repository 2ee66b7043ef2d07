import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { CommandRunner } from './command.js';
import {
  captured,
  fakePveCluster,
  hostPathsIn,
  ipOnLinuxBridge,
  LINUX_BRIDGE_INTERFACES,
  quietCtx,
  tempDirs,
} from './fixtures.js';
import type { HostEnv } from './host-env.js';
import { ifName } from './names.js';
import { parseQmConfig } from './proxmox.js';
import { QEMU_LIST, QM_CONFIG_LOCAL, QM_CONFIG_PASSTHROUGH } from './proxmox.test.js';
import { applyOvsConvert, revertOvsConvert } from './steps/ovs-convert.js';
import {
  fitArrivedVmNics,
  libvirtInterfacesOn,
  libvirtVmNics,
  ovsPortVmNics,
  proxmoxVmNics,
  qmSetNetArgv,
  readVmVlanState,
  tagVmNics,
  untagVmNics,
  VmNicError,
} from './vm-nics.js';

const { tmp, removeAll } = tempDirs('refit-vm-nics-');
afterAll(removeAll);
const vmbr0 = ifName('vmbr0');

// `qm config 9000`: a stopped template whose NIC is on another bridge (left alone).
const QM_CONFIG_TEMPLATE = `cores: 1
memory: 2048
name: tmpl
net0: e1000=EE:D2:28:5F:B6:3E,bridge=vmbr1
template: 1
`;

/**
 * A Proxmox node as `pvesh get /nodes/<node>/qemu` and `qm config` answer it (the formats of
 * proxmox.test.ts), whose `qm set <vmid> --netN <value>` replaces that line of the VM's current
 * configuration, as qemu-server does.
 */
function pveNode() {
  const configs = new Map<string, string>([
    ['100', QM_CONFIG_LOCAL],
    ['101', QM_CONFIG_PASSTHROUGH],
    ['9000', QM_CONFIG_TEMPLATE],
  ]);
  const { run, calls } = fakePveCluster((argv, { ok, fail }) => {
    const [cmd, verb, id, key, value] = argv;
    if (cmd === 'pvesh' && verb === 'get' && id === '/nodes/pve1/qemu') return ok(QEMU_LIST);
    const config = configs.get(id ?? '') ?? fail(`Configuration file does not exist`, 2);
    if (cmd === 'qm' && verb === 'config') return ok(config);
    if (cmd === 'qm' && verb === 'set') {
      const name = (key as string).replace(/^--/, '');
      configs.set(id as string, config.replace(new RegExp(`^${name}: .*$`, 'm'), `${name}: ${value as string}`));
      return ok(`update VM ${id as string}: -${name} ${value as string}\n`);
    }
    throw new Error(`unexpected ${argv.join(' ')}`);
  });
  const net0 = (id: string) => parseQmConfig(configs.get(id) ?? '').get('net0');
  const sets = () => calls.filter((c) => c[1] === 'set');
  return { run, calls, sets, net0, configs };
}

describe('VM NICs on Proxmox VE (qm config, qm set)', () => {
  it('puts every VM NIC on the bridge on the VLAN with MAC, model and options kept, once, and puts the old values back', async () => {
    const pve = pveNode();
    const backend = proxmoxVmNics(pve.run, 'pve1');
    const stateDir = tmp();
    const report = await tagVmNics(backend, stateDir, vmbr0, 30, quietCtx());
    expect(pve.sets()).toEqual([
      ['qm', 'set', '100', '--net0', 'virtio=BC:24:11:9F:01:22,bridge=vmbr0,tag=30'],
      ['qm', 'set', '101', '--net0', 'virtio=BC:24:11:2E:7A:1B,bridge=vmbr0,firewall=1,tag=30'],
    ]);
    expect(pve.net0('9000')).toBe('e1000=EE:D2:28:5F:B6:3E,bridge=vmbr1');
    expect(report.changed).toEqual([
      {
        vm: '100',
        nic: 'net0',
        before: 'virtio=BC:24:11:9F:01:22,bridge=vmbr0',
        after: 'virtio=BC:24:11:9F:01:22,bridge=vmbr0,tag=30',
      },
      {
        vm: '101',
        nic: 'net0',
        before: 'virtio=BC:24:11:2E:7A:1B,bridge=vmbr0,firewall=1',
        after: 'virtio=BC:24:11:2E:7A:1B,bridge=vmbr0,firewall=1,tag=30',
      },
    ]);
    expect(await readVmVlanState(stateDir)).toMatchObject({ bridge: 'vmbr0', tag: 30 });

    // Read first: a second run changes nothing.
    pve.calls.length = 0;
    const again = await tagVmNics(backend, stateDir, vmbr0, 30, quietCtx());
    expect(pve.sets()).toEqual([]);
    expect(again.unchanged.map((u) => u.vm)).toEqual(['100', '101']);

    // Someone changed 101 by hand since: left as it is and said so; 100 gets its value from before.
    pve.configs.set('101', (pve.configs.get('101') as string).replace('tag=30', 'tag=31'));
    pve.calls.length = 0;
    const back = await untagVmNics(backend, stateDir, vmbr0, quietCtx());
    expect(pve.sets()).toEqual([['qm', 'set', '100', '--net0', 'virtio=BC:24:11:9F:01:22,bridge=vmbr0']]);
    expect(pve.net0('100')).toBe('virtio=BC:24:11:9F:01:22,bridge=vmbr0');
    expect(back.changedSince).toEqual(['101/net0']);
    expect(await readVmVlanState(stateDir)).toBeUndefined();
  });

  it('gives VMs that undrain brings back the tag of the bridge here, and their old values after a revert', async () => {
    const pve = pveNode();
    const backend = proxmoxVmNics(pve.run, 'pve1');
    const stateDir = tmp();
    // Nothing recorded: a host refit never converted leaves arriving VMs alone.
    expect(await fitArrivedVmNics(backend, stateDir, ['100'], quietCtx())).toBeUndefined();
    expect(pve.sets()).toEqual([]);

    // ovs-convert tagged what was here (nothing of 100's: it was away); 100 arrives untagged.
    await tagVmNics(backend, stateDir, vmbr0, 30, quietCtx(), ['101']);
    const arrived = await fitArrivedVmNics(backend, stateDir, ['100'], quietCtx());
    expect(arrived?.summary).toBe('VLAN 30 on 1 VM NIC (100/net0)');
    expect(pve.net0('100')).toBe('virtio=BC:24:11:9F:01:22,bridge=vmbr0,tag=30');

    // The conversion is reverted while 100 is away again: 101 is put back, 100's old value waits for it.
    pve.configs.set('100-away', pve.configs.get('100') as string);
    pve.configs.delete('100');
    const qemuWithout100 = pve.run;
    const away: CommandRunner = async (argv, opts) =>
      argv[2] === '/nodes/pve1/qemu'
        ? {
            argv,
            stdout: JSON.stringify((JSON.parse(QEMU_LIST) as { vmid: number }[]).filter((v) => v.vmid !== 100)),
            stderr: '',
            exitCode: 0,
          }
        : qemuWithout100(argv, opts);
    await untagVmNics(proxmoxVmNics(away, 'pve1'), stateDir, vmbr0, quietCtx());
    expect(pve.net0('101')).toBe('virtio=BC:24:11:2E:7A:1B,bridge=vmbr0,firewall=1');
    expect(await readVmVlanState(stateDir)).toMatchObject({ tag: null, changes: [{ vm: '100' }] });
    pve.configs.set('100', pve.configs.get('100-away') as string);
    const home = await fitArrivedVmNics(backend, stateDir, ['100'], quietCtx());
    expect(home?.summary).toBe('1 VM NIC back to their values from before (100/net0)');
    expect(pve.net0('100')).toBe('virtio=BC:24:11:9F:01:22,bridge=vmbr0');
    expect(await readVmVlanState(stateDir)).toBeUndefined();
  });

  it('never lets a hostile value or key reach qm', () => {
    expect(qmSetNetArgv(100, 'net0', 'virtio=BC:24:11:9F:01:22,bridge=vmbr0,tag=30')).toEqual([
      'qm',
      'set',
      '100',
      '--net0',
      'virtio=BC:24:11:9F:01:22,bridge=vmbr0,tag=30',
    ]);
    expect(() => qmSetNetArgv(100, 'net0', 'virtio,bridge=vmbr0 --delete scsi0')).toThrow(VmNicError);
    expect(() => qmSetNetArgv(100, 'hostpci0', 'virtio,bridge=vmbr0')).toThrow(VmNicError);
    expect(() => qmSetNetArgv(100, 'net0', '--delete')).toThrow(VmNicError);
    expect(() => qmSetNetArgv(99, 'net0', 'virtio')).toThrow(/vmid/);
  });

  it('fails naming the NIC where a netN value cannot be read, before writing it', async () => {
    const pve = pveNode();
    pve.configs.set(
      '100',
      QM_CONFIG_LOCAL.replace('net0: virtio=BC:24:11:9F:01:22,bridge=vmbr0', 'net0: bridge=vmbr0'),
    );
    await expect(tagVmNics(proxmoxVmNics(pve.run, 'pve1'), tmp(), vmbr0, 30, quietCtx())).rejects.toThrow(
      /100\/net0: no NIC model/,
    );
    expect(pve.sets()).toEqual([]);
  });
});

describe('VM NICs on libvirt (virsh dumpxml, virsh update-device)', () => {
  /** virsh answering with output captured from libvirt 9.0.0; update-device's file is kept for the test. */
  function libvirt() {
    const calls: string[][] = [];
    const files: string[] = [];
    let xml = captured('virsh-dumpxml-bridge-vmbr0.stdout');
    const run: CommandRunner = async (argv) => {
      calls.push([...argv]);
      const ok = (stdout = '') => ({ argv, stdout, stderr: '', exitCode: 0 });
      if (argv.includes('list')) return ok(captured('virsh-list-all-web1.stdout'));
      if (argv.includes('dumpxml')) return ok(xml);
      if (argv.includes('update-device')) {
        const file = readFileSync(argv[argv.indexOf('--file') + 1] as string, 'utf8');
        files.push(file);
        // libvirt replaces the device with the same MAC.
        const [old] = libvirtInterfacesOn(xml, 'vmbr0');
        xml = xml.replace((old as { xml: string }).xml.trim(), file.trim());
        return ok('Device updated successfully\n');
      }
      throw new Error(`unexpected ${argv.join(' ')}`);
    };
    return { run, calls, files };
  }

  it('reads the bridge interface of a running domain and updates it live and in its definition', async () => {
    const v = libvirt();
    const stateDir = tmp();
    const backend = libvirtVmNics(v.run, 'qemu:///system', stateDir);
    const nics = await backend.nicsOn(vmbr0);
    expect(nics).toMatchObject([{ vm: 'web1', nic: '52:54:00:6b:3c:58', tag: undefined, running: true }]);
    const report = await tagVmNics(backend, stateDir, vmbr0, 30, quietCtx());
    const update = v.calls.find((c) => c.includes('update-device')) as string[];
    expect(update.filter((a) => !a.endsWith('.xml'))).toEqual([
      'virsh',
      '-c',
      'qemu:///system',
      'update-device',
      '--domain',
      'web1',
      '--file',
      '--config',
      '--live',
    ]);
    expect(v.files[0]).toBe(
      [
        "<interface type='bridge'>",
        "      <mac address='52:54:00:6b:3c:58'/>",
        "      <source bridge='vmbr0'/>",
        "      <target dev='testnet0'/>",
        "      <model type='virtio'/>",
        "      <virtualport type='openvswitch'/>",
        '      <vlan>',
        "        <tag id='30'/>",
        '      </vlan>',
        '    </interface>\n',
      ].join('\n'),
    );
    expect(report.changed).toHaveLength(1);
    // The XML file is not left behind; a second run changes nothing.
    expect(readdirSync(path.join(stateDir, 'vm-nics'))).toEqual([]);
    expect((await tagVmNics(backend, stateDir, vmbr0, 30, quietCtx())).changed).toEqual([]);
    await untagVmNics(backend, stateDir, vmbr0, quietCtx());
    expect(v.files[1]).not.toContain('vlan');
    expect(v.files[1]).not.toContain('virtualport');
    expect(v.files[1]).toContain("<source bridge='vmbr0'/>");
  });

  it("ignores the domain's interface on a libvirt network", () => {
    const found = libvirtInterfacesOn(captured('virsh-dumpxml-bridge-vmbr0.stdout'), 'default');
    expect(found).toEqual([]);
    expect(libvirtInterfacesOn(captured('virsh-dumpxml-bridge-vmbr0.stdout'), 'vmbr0').map((i) => i.mac)).toEqual([
      '52:54:00:6b:3c:58',
    ]);
  });
});

describe('VM taps on Open vSwitch (the lab)', () => {
  it('tags the ports of the VMs on the bridge, and leaves a tap that is on a Linux bridge alone on revert', async () => {
    const calls: string[] = [];
    let tag: number | undefined = 1;
    let onOvs = true;
    const run: CommandRunner = async (argv) => {
      calls.push(argv.join(' '));
      const ok = (stdout = '') => ({ argv, stdout, stderr: '', exitCode: 0 });
      if (argv.includes('list-ports')) return ok(onOvs ? 'ens6\ntap100i0\nvlan1\n' : '');
      if (argv.includes('list'))
        return ok(
          JSON.stringify({
            headings: ['name', 'tag', 'vlan_mode', 'interfaces'],
            data: [['tap100i0', tag ?? ['set', []], ['set', []], ['uuid', 'x']]],
          }),
        );
      if (argv.includes('set')) tag = Number(argv.at(-1)?.replace('tag=', ''));
      if (argv.includes('clear')) tag = undefined;
      return ok();
    };
    const backend = ovsPortVmNics(run, async () => [{ vm: 'vm100', port: 'tap100i0' }]);
    const stateDir = tmp();
    await tagVmNics(backend, stateDir, vmbr0, 30, quietCtx());
    expect(calls).toContain('ovs-vsctl set port tap100i0 tag=30');
    expect(tag).toBe(30);
    onOvs = false;
    const back = await untagVmNics(backend, stateDir, vmbr0, quietCtx());
    expect(back.changed).toEqual([]);
    expect(await readVmVlanState(stateDir)).toBeUndefined();
  });
});

describe('ovs-convert with VMs on the bridge', () => {
  const LINUX = LINUX_BRIDGE_INTERFACES;
  /** A classic-ifupdown Proxmox node: ip answers as a Linux bridge host, then as an OVS one after ifup. */
  function host() {
    const dir = tmp();
    const pve = pveNode();
    let ovs = false;
    const run: CommandRunner = async (argv, opts) => {
      const line = argv.join(' ');
      if (line === 'ifup vmbr0') ovs = !ovs;
      if (argv[0] === 'ip' && argv.includes('-j'))
        return {
          argv,
          stdout: ovs
            ? captured(argv.includes('link') ? 'ip-j-d-link-ovs-host.json' : 'ip-j-addr-ovs-host.json')
            : (ipOnLinuxBridge(argv) as string),
          stderr: '',
          exitCode: 0,
        };
      if (argv[0] === 'qm' || argv[0] === 'pvesh') return pve.run(argv, opts);
      return {
        argv,
        stdout: argv[0] === 'ovs-vsctl' ? captured('ovs-vsctl-show-ovs-host.stdout') : '',
        stderr: '',
        exitCode: 0,
      };
    };
    const paths = hostPathsIn(dir);
    writeFileSync(paths.interfaces, LINUX);
    const never = () => Promise.reject(new Error('not used by ovs-convert'));
    const env: HostEnv = {
      run,
      paths,
      vfs: new Proxy({}, { get: () => never }) as HostEnv['vfs'],
      grubUpdate: [],
      confirm: async () => true,
      vmNics: async () => proxmoxVmNics(pve.run, 'pve1'),
    };
    return { env, pve };
  }
  const params = { bridge: 'vmbr0', hostVlan: 1, vmVlan: 30, confirmWithin: 5_000 };

  it('tags the VMs after the switch is confirmed, records before and after, and the revert puts the old values back', async () => {
    const { env, pve } = host();
    const outcome = await applyOvsConvert(env, params, quietCtx(), 'r');
    expect(outcome.summary).toMatch(/; VLAN 30 on 2 VM NICs \(100\/net0, 101\/net0\)$/);
    expect(outcome.before).toMatchObject({
      vmNics: [
        { vm: '100', nic: 'net0', value: 'virtio=BC:24:11:9F:01:22,bridge=vmbr0' },
        { vm: '101', nic: 'net0', value: 'virtio=BC:24:11:2E:7A:1B,bridge=vmbr0,firewall=1' },
      ],
    });
    expect(outcome.after).toMatchObject({ vmNics: { backend: 'proxmox', changed: [{ vm: '100' }, { vm: '101' }] } });
    expect(pve.net0('100')).toBe('virtio=BC:24:11:9F:01:22,bridge=vmbr0,tag=30');

    // Without vmVlan the VMs join the host's VLAN: the same untagged network of the uplink as before.
    const { env: env2, pve: pve2 } = host();
    await applyOvsConvert(env2, { bridge: 'vmbr0', hostVlan: 1, confirmWithin: 5_000 }, quietCtx(), 'r');
    expect(pve2.net0('101')).toBe('virtio=BC:24:11:2E:7A:1B,bridge=vmbr0,firewall=1,tag=1');

    const back = await revertOvsConvert(env, params, quietCtx());
    expect(back.summary).toMatch(/Linux bridge again.*; 2 VM NICs back to their values from before/);
    expect(pve.net0('100')).toBe('virtio=BC:24:11:9F:01:22,bridge=vmbr0');
    expect(pve.net0('101')).toBe('virtio=BC:24:11:2E:7A:1B,bridge=vmbr0,firewall=1');
    expect(readFileSync(env.paths.interfaces, 'utf8')).toBe(LINUX);
  });
});
