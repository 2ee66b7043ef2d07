import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { attachVmPort } from '../activities/host/lab/attach.js';
import { bootHost } from '../activities/host/lab/boot.js';
import { labDown, labNamespaces } from './down.js';
import { hostRunner, labUpdateGrubScript, rootRunner, switchOvsRunner } from '../activities/host/lab/exec.js';
import { writeHostFiles, writePveConfigs } from './host-files.js';
import {
  MAX_HOSTS,
  MAX_VMS_PER_HOST,
  planLab,
  SWITCH_OVS_BRIDGE,
  switchOvsDir,
  uplinkNics,
  type LabShape,
} from '../activities/host/lab/layout.js';
import { writeLabScripts } from './scripts.js';
import { labStateFile, saveLab, type LabHost, type LabState, type LabVm } from '../activities/host/lab/state.js';
import { startGuest, waitForGuest } from '../activities/host/lab/qemu.js';
import { guestImage, labPrerequisitesMissing, qemuMissing } from './tools.js';
import { RefitError } from '../schemas/errors.js';

export class LabSetupError extends RefitError {}

/**
 * Build the lab: a switch namespace holding 10.77.0.1, and per host a namespace with its uplink to
 * the switch, its files, its Open vSwitch, the Linux bridge vmbr0 brought up by `ifup -a`, and its VMs.
 * The state file is written first, so `labDown` finds everything even if this fails half-way (it then cleans up itself).
 */
export async function labUp(shape: LabShape, log?: Logger): Promise<LabState> {
  const missing = labPrerequisitesMissing();
  if (missing.length > 0) throw new LabSetupError(`the lab cannot run here; missing: ${missing.join(', ')}`);
  if (shape.hosts < 1 || shape.hosts > MAX_HOSTS) throw new LabSetupError(`--hosts must be 1-${MAX_HOSTS}`);
  if (shape.vmsPerHost < 0 || shape.vmsPerHost > MAX_VMS_PER_HOST)
    throw new LabSetupError(`--vms must be 0-${MAX_VMS_PER_HOST}`);
  if (existsSync(labStateFile(shape.labDir)))
    throw new LabSetupError(`a lab is already up in ${shape.labDir} (\`refit lab down\` first)`);
  if (shape.vmKind === 'qemu' && shape.vmsPerHost > 0) {
    const missing = qemuMissing();
    if (missing.length > 0)
      throw new LabSetupError(
        `the lab's QEMU VMs cannot run here; missing: ${missing.join(', ')} (scripts/setup-guest.sh)`,
      );
  }
  for (const id of shape.bonds ?? [])
    if (!/^h\d+$/.test(id) || Number(id.slice(1)) > shape.hosts)
      throw new LabSetupError(`--bond: no host ${id} in a lab of ${shape.hosts} (h1-h${shape.hosts})`);
  const lab = planLab({ ...shape, ...(shape.vmKind === 'qemu' ? { guest: shape.guest ?? guestImage() } : {}) });
  const leftovers = await labNamespaces(lab.prefix);
  if (leftovers.length > 0)
    throw new LabSetupError(
      `namespaces of an earlier lab are still there (${leftovers.join(', ')}): \`refit lab down\` first`,
    );
  await mkdir(lab.labDir, { recursive: true, mode: 0o700 });
  await saveLab(lab);
  try {
    await writeLabScripts(lab);
    await makeSwitch(lab);
    if (lab.hosts.some((h) => h.bond !== undefined)) await makeSwitchOvs(lab);
    for (const host of lab.hosts) {
      await makeHost(lab, host);
      log?.info({ host: host.id, ns: host.ns, address: host.address }, 'lab host up');
    }
    await writePveConfigs(lab);
    for (const vm of lab.vms.filter((v) => v.kind !== 'qemu')) await makeVm(lab, vm);
    // The guests boot in parallel (~8 s each under TCG): started first, then waited for.
    const guests = lab.vms.filter((v) => v.kind === 'qemu');
    for (const vm of guests) await startGuest(lab, homeOf(lab, vm), vm);
    await Promise.all(guests.map((vm) => waitForGuest(homeOf(lab, vm), vm)));
    if (guests.length > 0) log?.info({ vms: guests.map((v) => v.name) }, 'lab QEMU guests up');
    return lab;
  } catch (err) {
    await labDown({ labDir: lab.labDir }).catch((cleanup: unknown) =>
      log?.error({ err: cleanup }, 'cleanup after a failed lab up failed'),
    );
    throw err;
  }
}

async function makeSwitch(lab: LabState): Promise<void> {
  const { ns, bridge, address } = lab.switch;
  const ip = (...args: string[]) => rootRunner(['ip', '-n', ns, ...args]);
  await rootRunner(['ip', 'netns', 'add', ns]);
  await ip('link', 'set', 'dev', 'lo', 'up');
  await ip('link', 'add', 'name', bridge, 'type', 'bridge');
  await ip('addr', 'add', address, 'dev', bridge);
  await ip('link', 'set', 'dev', bridge, 'up');
}

async function makeHost(lab: LabState, host: LabHost): Promise<void> {
  await rootRunner(['ip', 'netns', 'add', host.ns]);
  // Open vSwitch here is a userspace datapath, so its ports (the uplink, a bond's members) stay kernel
  // interfaces beside it, and by default the kernel answers ARP for any of its addresses on any of
  // them, with that interface's MAC. A peer that learnt the uplink's MAC for the host's address sent
  // its frames where Open vSwitch does not take them (a VXLAN into an OVS host crossed only once the
  // host asked for the peer's MAC itself). A real OVS port never hands its frames to the host's
  // stack; arp_ignore=1 answers only on the interface that holds the address, the bridge, as there.
  await rootRunner(['ip', 'netns', 'exec', host.ns, 'sysctl', '-q', '-w', 'net.ipv4.conf.all.arp_ignore=1']);
  await writeHostFiles(lab, host);
  // Created straight inside the two namespaces: the root namespace never holds a lab interface.
  for (const nic of uplinkNics(host)) {
    await rootRunner([
      'ip',
      'link',
      'add',
      nic.name,
      'netns',
      host.ns,
      'type',
      'veth',
      'peer',
      'name',
      nic.switchPort,
      'netns',
      lab.switch.ns,
    ]);
    if (host.bond === undefined)
      await rootRunner([
        'ip',
        '-n',
        lab.switch.ns,
        'link',
        'set',
        'dev',
        nic.switchPort,
        'master',
        lab.switch.bridge,
        'up',
      ]);
    else await rootRunner(['ip', '-n', lab.switch.ns, 'link', 'set', 'dev', nic.switchPort, 'up']);
    // The cable delivers frames of wire size, as a real NIC receives them: the switch's port segments
    // and checksums what it sends to the host (veths pass 64 KB GSO frames with partial checksums,
    // which an OVS userspace datapath on the host reading the uplink drops: a QEMU migration stream to
    // a host on OVS stalled without this, while ICMP and SYN probes got through).
    await rootRunner(['ip', 'netns', 'exec', lab.switch.ns, 'ethtool', '-K', nic.switchPort, 'tx', 'off']);
  }
  if (host.bond !== undefined) {
    // The switch's partner: one OVS bond over the host's two cables, LACP active (fast LACPDUs asked).
    await switchOvsRunner(lab)([
      'ovs-vsctl',
      'add-bond',
      SWITCH_OVS_BRIDGE,
      `bond-h${host.index}`,
      ...host.bond.members.map((m) => m.switchPort),
      'bond_mode=balance-tcp',
      'lacp=active',
      'other_config:lacp-time=fast',
    ]);
  }
  // As the installer does: generate grub.cfg (and on a pve host the systemd-boot entry) once, then boot.
  await hostRunner(lab, host)([labUpdateGrubScript(lab), host.root]);
  if (host.flavour === 'pve') await hostRunner(lab, host)(['proxmox-boot-tool', 'refresh']);
  await bootHost(lab, host);
}

const OVS_SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';

/**
 * The switch's own Open vSwitch, for bonded hosts: ovsdb-server and ovs-vswitchd (userspace datapath,
 * as on the hosts) in the switch namespace, files under <lab>/switch, a bridge holding one LACP bond
 * per bonded host and a veth to the switch's Linux bridge, where the switch address is.
 */
async function makeSwitchOvs(lab: LabState): Promise<void> {
  const dir = switchOvsDir(lab.labDir);
  const { ns, bridge } = lab.switch;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await rootRunner(['ovsdb-tool', 'create', path.join(dir, 'conf.db'), OVS_SCHEMA]);
  const ovs = switchOvsRunner(lab);
  await ovs([
    'ovsdb-server',
    path.join(dir, 'conf.db'),
    `--remote=punix:${path.join(dir, 'db.sock')}`,
    `--pidfile=${path.join(dir, 'ovsdb-server.pid')}`,
    '--detach',
    '--no-chdir',
    `--log-file=${path.join(dir, 'ovsdb-server.log')}`,
  ]);
  await ovs(['ovs-vsctl', '--no-wait', 'init']);
  await ovs([
    'ovs-vswitchd',
    `unix:${path.join(dir, 'db.sock')}`,
    '--disable-system',
    `--pidfile=${path.join(dir, 'ovs-vswitchd.pid')}`,
    '--detach',
    '--no-chdir',
    `--log-file=${path.join(dir, 'ovs-vswitchd.log')}`,
  ]);
  await ovs([
    'ovs-vsctl',
    'add-br',
    SWITCH_OVS_BRIDGE,
    '--',
    'set',
    'bridge',
    SWITCH_OVS_BRIDGE,
    'datapath_type=netdev',
  ]);
  await rootRunner(['ip', '-n', ns, 'link', 'add', 'rfsw-ovs', 'type', 'veth', 'peer', 'name', 'rfsw-lnx']);
  await rootRunner(['ip', '-n', ns, 'link', 'set', 'dev', 'rfsw-lnx', 'master', bridge, 'up']);
  await rootRunner(['ip', '-n', ns, 'link', 'set', 'dev', 'rfsw-ovs', 'up']);
  // Open vSwitch's userspace datapath drops frames with partial checksums: the bridge's side finishes them.
  await rootRunner(['ip', 'netns', 'exec', ns, 'ethtool', '-K', 'rfsw-lnx', 'tx', 'off']);
  await ovs(['ovs-vsctl', 'add-port', SWITCH_OVS_BRIDGE, 'rfsw-ovs']);
  // The bond members are kernel interfaces too: only the bridge answers ARP for the switch address.
  await rootRunner(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.conf.all.arp_ignore=1']);
}

const homeOf = (lab: LabState, vm: LabVm) => lab.hosts.find((h) => h.id === vm.home) as LabHost;

async function makeVm(lab: LabState, vm: LabVm): Promise<void> {
  const host = homeOf(lab, vm);
  const ip = (...args: string[]) => rootRunner(['ip', '-n', vm.ns, ...args]);
  await rootRunner(['ip', 'netns', 'add', vm.ns]);
  await rootRunner([
    'ip',
    'link',
    'add',
    'eth0',
    'netns',
    vm.ns,
    'type',
    'veth',
    'peer',
    'name',
    vm.port,
    'netns',
    host.ns,
  ]);
  await ip('link', 'set', 'dev', 'lo', 'up');
  await ip('addr', 'add', vm.address, 'dev', 'eth0');
  await ip('link', 'set', 'dev', 'eth0', 'up');
  await attachVmPort(lab, host, vm.port);
}
