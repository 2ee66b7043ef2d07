import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import { attachVmPort } from '../activities/host/lab/attach.js';
import { bootHost } from '../activities/host/lab/boot.js';
import { labDown, labNamespaces } from './down.js';
import { hostRunner, labUpdateGrubScript, rootRunner } from '../activities/host/lab/exec.js';
import { writeHostFiles } from './host-files.js';
import { MAX_HOSTS, MAX_VMS_PER_HOST, planLab, type LabShape } from '../activities/host/lab/layout.js';
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
    for (const host of lab.hosts) {
      await makeHost(lab, host);
      log?.info({ host: host.id, ns: host.ns, address: host.address }, 'lab host up');
    }
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
  await writeHostFiles(lab, host);
  // Created straight inside the two namespaces: the root namespace never holds a lab interface.
  await rootRunner([
    'ip',
    'link',
    'add',
    host.uplink,
    'netns',
    host.ns,
    'type',
    'veth',
    'peer',
    'name',
    host.switchPort,
    'netns',
    lab.switch.ns,
  ]);
  await rootRunner([
    'ip',
    '-n',
    lab.switch.ns,
    'link',
    'set',
    'dev',
    host.switchPort,
    'master',
    lab.switch.bridge,
    'up',
  ]);
  // The cable delivers frames of wire size, as a real NIC receives them: the switch's port segments
  // and checksums what it sends to the host (veths pass 64 KB GSO frames with partial checksums,
  // which an OVS userspace datapath on the host reading the uplink drops: a QEMU migration stream to
  // a host on OVS stalled without this, while ICMP and SYN probes got through).
  await rootRunner(['ip', 'netns', 'exec', lab.switch.ns, 'ethtool', '-K', host.switchPort, 'tx', 'off']);
  // As the installer does: generate grub.cfg (and on a pve host the systemd-boot entry) once, then boot.
  await hostRunner(lab, host)([labUpdateGrubScript(lab), host.root]);
  if (host.flavour === 'pve') await hostRunner(lab, host)(['proxmox-boot-tool', 'refresh']);
  await bootHost(lab, host);
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
