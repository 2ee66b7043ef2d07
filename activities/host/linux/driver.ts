import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { HostFacts, HostTools } from '../../../schemas/host.js';
import type { StepCall, StepOutcome } from '../../../schemas/steps.js';
import type { StepPreview } from '../../../schemas/preview.js';
import type { StepCommand } from '../../../schemas/command.js';
import type { HostDriver, StepContext } from '../driver.js';
import { createExecaRunner, type CommandRunner } from './command.js';
import { controllerConfirmation } from './confirm.js';
import { iommuActive } from './boot-config.js';
import { readText, withAudit, type Confirmation, type HostEnv } from './host-env.js';
import { drainLibvirtHost, isCordoned, runningDomains, undrainLibvirtHost, type LibvirtHost } from './libvirt-drain.js';
import { ifName } from './names.js';
import { observeBridge } from './observe.js';
import { SRIOV_RULES_FILE } from './sriov.js';
import { runNetworkStep } from './steps/network.js';
import { previewLinuxSteps } from './steps/preview.js';
import { rebootOwed } from './steps/reboot.js';
import { toolFacts } from './tools.js';
import { sysfsVfControl } from './vf-sysfs.js';

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
export class LinuxDriver implements HostDriver {
  readonly kind = 'linux' as const;
  private readonly env: HostEnv;
  private readonly libvirt: LibvirtHost;
  private readonly tools: () => Promise<HostTools>;

  constructor(private readonly opts: LinuxDriverOptions) {
    const run = opts.run ?? createExecaRunner();
    this.env = realHostEnv(opts, run);
    this.tools = toolFacts(run);
    this.libvirt = {
      run,
      hostId: opts.hostId,
      uri: opts.libvirtUri ?? 'qemu:///system',
      uriOf: opts.libvirtUriOf ?? ((h) => `qemu+ssh://${h}/system`),
      stateDir: opts.stateDir,
    };
  }

  async facts(): Promise<HostFacts> {
    const bridge = await observeBridge(this.env, ifName(this.opts.bridge ?? 'vmbr0'));
    const nic = this.opts.nic === undefined ? undefined : ifName(this.opts.nic);
    const totalVfs = nic === undefined ? 0 : ((await this.env.vfs.totalVfs(nic)) ?? 0);
    const vms = await runningDomains(this.libvirt).catch(() => []);
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
      vms: vms.map((name) => ({ name, state: 'running', sriov: false })),
      cordoned: isCordoned(this.libvirt),
      capacity: { vmSlots: this.opts.vmSlots ?? 16, vmsRunning: vms.length },
      tools: await this.tools(),
    };
  }

  /** Reads /etc/network/interfaces, /etc/default/grub and the udev rules; writes nothing. */
  async preview(steps: readonly StepCall[]): Promise<StepPreview[]> {
    return previewLinuxSteps(this.env, steps, await this.facts().catch(() => undefined));
  }

  async runStep(step: StepCommand, ctx: StepContext): Promise<StepOutcome> {
    await mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
    const apply = step.mode === 'apply';
    switch (step.kind) {
      case 'drain':
        return apply
          ? drainLibvirtHost(this.libvirt, step.params.destinations, ctx)
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
      await this.env.run(['systemctl', 'reboot']);
    }
  }
}

/** The driver factory the host worker uses for `--driver linux`. */
export function createLinuxDriver(opts: LinuxDriverOptions): LinuxDriver {
  return new LinuxDriver(opts);
}
