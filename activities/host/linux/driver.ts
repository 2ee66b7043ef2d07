import { mkdir, access, constants } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { HostFacts, HostTools } from '../../../schemas/host.js';
import type { StepCall, StepOutcome } from '../../../schemas/steps.js';
import type { StepPreview } from '../../../schemas/preview.js';
import type { StepCommand } from '../../../schemas/command.js';
import { StepFailedError, type HostDriver, type StepContext } from '../driver.js';
import { createExecaRunner, inStep, type CommandRunner } from './command.js';
import { controllerConfirmation } from './confirm.js';
import { iommuActive } from './boot-config.js';
import { readText, withAudit, type Confirmation, type HostEnv } from './host-env.js';
import os from 'node:os';
import {
  drainLibvirtHost,
  isCordoned,
  libvirtNotDrained,
  runningDomainFacts,
  undrainLibvirtHost,
  type LibvirtHost,
} from './libvirt-drain.js';
import { linuxCapacity } from './meminfo.js';
import {
  drainProxmoxNode,
  isCordoned as isProxmoxCordoned,
  notDrained,
  proxmoxFacts,
  undrainProxmoxNode,
  type ConfigCache,
  type ProxmoxHost,
} from './proxmox-drain.js';
import { PveNode } from './proxmox.js';
import { ifName } from './names.js';
import { observeBridge } from './observe.js';
import { LEGACY_SRIOV_RULES_FILE, SRIOV_RULES_FILE } from './sriov.js';
import { runNetworkStep } from './steps/network.js';
import { previewLinuxSteps } from './steps/preview.js';
import { rebootOwed } from './steps/reboot.js';
import { toolFacts } from './tools.js';
import { sysfsVfControl } from './vf-sysfs.js';
import { libvirtVmNics, proxmoxVmNics } from './vm-nics.js';

export interface LinuxDriverOptions {
  hostId: string;
  /** Traffic baselines, the pending reboot, drained VMs, cordon. */
  stateDir: string;
  /** How ovs-convert learns the controller still reaches the host; default: the controller's word (StepContext.confirmed). */
  confirm?: Confirmation;
  /** The bridge and SR-IOV NIC reported in the facts. */
  bridge?: string;
  nic?: string;
  libvirtUri?: string;
  /** A peer's libvirt URI; default `qemu+ssh://<hostId>/system`. */
  libvirtUriOf?: (hostId: string) => string;
  vmSlots?: number;
  /**
   * Who runs the VMs: `proxmox` (qm, pvesh, ha-manager), `libvirt` (virsh), or `auto` (the default:
   * proxmox where both `qm` and `pvesh` are on PATH, libvirt otherwise).
   */
  vmBackend?: 'auto' | 'libvirt' | 'proxmox';
  /** This node's Proxmox name; default the short hostname (what Proxmox names a node). */
  pveNode?: string;
  /** Proxmox node names of refit host ids that differ from them (default: a host's node is its id). */
  pveNodes?: Record<string, string>;
  /** How long a drain waits for migrations the HA stack or a proxied API call finish on their own; default 30 min. */
  settleTimeoutMs?: number;
  log?: Logger;
  /** For tests of the command layer: a runner that records instead of running. */
  run?: CommandRunner;
}

/** The host worker's env on a real hypervisor: commands as root, the real /etc, /proc and /sys. */
export function realHostEnv(opts: LinuxDriverOptions, run: CommandRunner): HostEnv {
  return {
    run,
    paths: {
      interfaces: '/etc/network/interfaces',
      backupDir: '/var/backups/refit',
      grub: '/etc/default/grub',
      sriovRules: path.join('/etc/udev/rules.d', SRIOV_RULES_FILE),
      legacySriovRules: path.join('/etc/udev/rules.d', LEGACY_SRIOV_RULES_FILE),
      procCmdline: '/proc/cmdline',
      bootId: '/proc/sys/kernel/random/boot_id',
      stateDir: opts.stateDir,
    },
    vfs: sysfsVfControl(run),
    grubUpdate: ['update-grub'],
    confirm: opts.confirm ?? controllerConfirmation,
  };
}

/** A real Debian/Proxmox hypervisor with libvirt: the same step modules as the lab driver, on this machine. */
/** Whether every one of `programs` is an executable file in a directory of PATH. */
export async function onPath(programs: readonly string[], pathVar = process.env.PATH ?? ''): Promise<boolean> {
  const dirs = pathVar.split(path.delimiter).filter((d) => d !== '');
  const found = async (p: string) => {
    for (const d of dirs)
      if (
        await access(path.join(d, p), constants.X_OK).then(
          () => true,
          () => false,
        )
      )
        return true;
    return false;
  };
  for (const p of programs) if (!(await found(p))) return false;
  return true;
}

export class LinuxDriver implements HostDriver {
  readonly kind = 'linux' as const;
  private readonly env: HostEnv;
  private readonly libvirt: LibvirtHost;
  private readonly pve: ProxmoxHost;
  private readonly pveConfigs: ConfigCache = new Map();
  private backend: Promise<'libvirt' | 'proxmox'> | undefined;
  private readonly tools: () => Promise<HostTools>;

  constructor(private readonly opts: LinuxDriverOptions) {
    const run = opts.run ?? createExecaRunner([], { where: opts.hostId });
    this.env = {
      ...realHostEnv(opts, run),
      vmNics: async () =>
        (await this.vmBackend()) === 'proxmox'
          ? proxmoxVmNics(this.pve.run, this.pve.node)
          : libvirtVmNics(this.libvirt.run, this.libvirt.uri, this.libvirt.stateDir),
    };
    this.tools = toolFacts(run);
    this.libvirt = {
      run,
      hostId: opts.hostId,
      uri: opts.libvirtUri ?? 'qemu:///system',
      uriOf: opts.libvirtUriOf ?? ((h) => `qemu+ssh://${h}/system`),
      stateDir: opts.stateDir,
    };
    const nodes = opts.pveNodes ?? {};
    this.pve = {
      run,
      node: PveNode.parse(opts.pveNode ?? os.hostname().split('.')[0]),
      nodeOf: (hostId) => nodes[hostId] ?? hostId,
      stateDir: opts.stateDir,
      ...(opts.settleTimeoutMs !== undefined ? { settleTimeoutMs: opts.settleTimeoutMs } : {}),
    };
  }

  /** The VM backend, decided once: the option, else proxmox where `qm` and `pvesh` are on PATH. */
  vmBackend(): Promise<'libvirt' | 'proxmox'> {
    const chosen = this.opts.vmBackend ?? 'auto';
    this.backend ??=
      chosen !== 'auto'
        ? Promise.resolve(chosen)
        : onPath(['qm', 'pvesh']).then((pve) => (pve ? 'proxmox' : 'libvirt'));
    return this.backend;
  }

  /** VMs, memory and CPUs: from Proxmox (pvesh, qm config) or from virsh and /proc/meminfo. */
  private async vmFacts(): Promise<Pick<HostFacts, 'vms' | 'cordoned' | 'capacity' | 'memory' | 'cpus'>> {
    const slots = this.opts.vmSlots ?? 16;
    if ((await this.vmBackend()) === 'proxmox') {
      const pve = await proxmoxFacts(this.pve, this.pveConfigs);
      return {
        ...pve,
        cordoned: isProxmoxCordoned(this.pve),
        capacity: { vmSlots: slots, vmsRunning: pve.vms.length },
      };
    }
    const vms = await runningDomainFacts(this.libvirt).catch(() => []);
    return {
      vms,
      cordoned: isCordoned(this.libvirt),
      capacity: { vmSlots: slots, vmsRunning: vms.length },
      ...(await linuxCapacity()),
    };
  }

  async bootId(): Promise<string> {
    return ((await readText(this.env.paths.bootId)) ?? 'unknown').trim();
  }

  async facts(): Promise<HostFacts> {
    const bridge = await observeBridge(this.env, ifName(this.opts.bridge ?? 'vmbr0'));
    const nic = this.opts.nic === undefined ? undefined : ifName(this.opts.nic);
    const totalVfs = nic === undefined ? 0 : ((await this.env.vfs.totalVfs(nic)) ?? 0);
    return {
      bootId: ((await readText(this.env.paths.bootId)) ?? 'unknown').trim(),
      bridge: { name: bridge.name, type: bridge.type, ports: bridge.ports },
      sriov: {
        ...(nic !== undefined ? { nic } : {}),
        supported: totalVfs > 0,
        totalVfs,
        numVfs: nic === undefined ? 0 : await this.env.vfs.numVfs(nic),
        iommu: await iommuActive(this.env.paths.sysIommu),
      },
      ...(await this.vmFacts()),
      tools: await this.tools(),
    };
  }

  /** Reads /etc/network/interfaces, /etc/default/grub and the udev rules; writes nothing. */
  async preview(steps: readonly StepCall[]): Promise<StepPreview[]> {
    return previewLinuxSteps(this.env, steps, await this.facts().catch(() => undefined));
  }

  /** A program the step runs that is not installed fails it naming the program, this host, the step and the package. */
  runStep(step: StepCommand, ctx: StepContext): Promise<StepOutcome> {
    return inStep(step.kind, () => this.runStepHere(step, ctx));
  }

  private async runStepHere(step: StepCommand, ctx: StepContext): Promise<StepOutcome> {
    await mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
    const apply = step.mode === 'apply';
    if ((await this.vmBackend()) === 'proxmox') {
      if (step.kind === 'drain')
        return apply
          ? drainProxmoxNode(this.pve, step.params.destinations, step.params.nonMigratable ?? 'refuse', ctx)
          : undrainProxmoxNode(this.pve, ctx);
      if (step.kind === 'undrain' && apply) return undrainProxmoxNode(this.pve, ctx);
    }
    if (step.kind === 'reboot' && apply) {
      const why = await ((await this.vmBackend()) === 'proxmox'
        ? notDrained(this.pve)
        : libvirtNotDrained(this.libvirt));
      if (why !== undefined) throw new StepFailedError(`reboot refused: ${why}`);
    }
    switch (step.kind) {
      case 'drain':
        return apply
          ? drainLibvirtHost(this.libvirt, step.params.destinations, ctx, step.params.nonMigratable)
          : undrainLibvirtHost(this.libvirt, ctx);
      case 'undrain':
        return apply
          ? undrainLibvirtHost(this.libvirt, ctx)
          : {
              changed: false,
              summary: 're-draining on revert needs destinations from the controller; the host stays as it is',
              before: {},
              after: {},
            };
      default:
        return runNetworkStep(withAudit(this.env, ctx), step, ctx);
    }
  }

  /** The reboot itself, once its result is stored: `systemctl reboot`. */
  async afterReported(step: StepCommand): Promise<void> {
    if (step.kind === 'reboot' && step.mode === 'apply' && (await rebootOwed(this.env))) {
      this.opts.log?.warn({ hostId: this.opts.hostId }, 'rebooting this host now');
      await inStep('reboot', () => this.env.run(['systemctl', 'reboot']));
    }
  }
}

/** The driver factory the host worker uses for `--driver linux`. */
export function createLinuxDriver(opts: LinuxDriverOptions): LinuxDriver {
  return new LinuxDriver(opts);
}
