import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { StepContext } from '../driver.js';
import { CommandFailedError, type CommandRunner } from './command.js';
import type { IfName } from './names.js';
import type { VfState } from './sriov.js';
import type { VmNicBackend } from './vm-nics.js';
import type { VfSettings } from '../../../schemas/steps.js';
import { writeFileAtomic } from '../../files.js';

/** Where a host's files are, seen by the host worker (a real host: the real paths; a lab host: under its lab dir). */
export interface HostPathsEnv {
  interfaces: string;
  /** Backups of the interfaces file and /etc/default/grub, written before each change. */
  backupDir: string;
  grub: string;
  /** The udev rules refit writes to create VFs at boot. */
  sriovRules: string;
  /** Where an older refit wrote them (matched by name); removed when sriovRules is written or reverted. */
  legacySriovRules?: string;
  /** The running kernel's command line (/proc/cmdline). */
  procCmdline: string;
  /** /proc/sys/kernel/random/boot_id. */
  bootId: string;
  /** The driver's own small state (traffic baselines, pending reboot). */
  stateDir: string;
  /** The kernel command line proxmox-boot-tool puts in the boot entries (default /etc/kernel/cmdline). */
  kernelCmdline?: string;
  /** One entry per active IOMMU (default /sys/class/iommu). */
  sysIommu?: string;
  /** ifupdown2's directory: present means the host runs ifupdown2 (default /usr/share/ifupdown2, as Proxmox VE checks). */
  ifupdown2?: string;
}

/** The NIC's SR-IOV controls: sysfs and `ip link ... vf` on real hardware, a fake sysfs in the lab. */
export interface VfControl {
  /** undefined when the NIC has no SR-IOV capability (no sriov_totalvfs). */
  totalVfs(nic: IfName): Promise<number | undefined>;
  numVfs(nic: IfName): Promise<number>;
  setNumVfs(nic: IfName, count: number): Promise<void>;
  /** The NIC's PCI address (PCI_SLOT_NAME in its device's uevent); undefined where it has none. */
  pciAddress(nic: IfName): Promise<string | undefined>;
  /** Each VF as the PF reports it: VLAN, MAC, spoof checking, trust. */
  vfStates(nic: IfName): Promise<Record<number, VfState>>;
  /** The name of the network interface at a PCI address now (it may have been renamed since the rules were written). */
  nicAt(pci: string): Promise<IfName | undefined>;
  setVf(nic: IfName, vf: number, settings: VfSettings): Promise<void>;
}

/**
 * Decides whether the host can still be reached after a network change: true before `deadline`, or
 * false. `confirmed` is the controller's word (StepContext.confirmed).
 */
export type Confirmation = (opts: {
  confirmed: Promise<void> | undefined;
  deadline: number;
  signal: AbortSignal;
}) => Promise<boolean>;

/** Everything a step needs to act on one host. The linux and lab drivers build it differently. */
export interface HostEnv {
  /** Runs a command on the host (the lab prefixes `ip netns exec <ns> ...`). */
  run: CommandRunner;
  paths: HostPathsEnv;
  vfs: VfControl;
  /** The command that turns /etc/default/grub into the boot configuration (`update-grub`). */
  grubUpdate: readonly string[];
  /** `netdev` where Open vSwitch runs without the kernel datapath (the lab). */
  datapathType?: 'netdev';
  confirm: Confirmation;
  /** Runs a command inside a VM, for traffic checks from it; only the lab can. */
  runInVm?: (vm: string) => CommandRunner;
  /** After the host's bridge was rebuilt: plug the VMs still on it back in (the hypervisor's job). */
  afterBridgeSwitch?: () => Promise<void>;
  /** Who reads and writes the VLAN tag of the VMs' NICs (Proxmox, libvirt, OVS taps); none: VMs are left alone. */
  vmNics?: () => Promise<VmNicBackend>;
}

export async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Replace a file atomically and durably; files refit writes under /etc are world-readable as usual. */
export async function writeTextAtomic(file: string, text: string): Promise<void> {
  await writeFileAtomic(file, text, { mode: 0o644 });
}

/** Keep a copy of a file before refit changes it: `<name>.refit-<label>` in the backup dir (the latest per label). */
export async function backupFile(env: HostEnv, file: string, text: string, label: string): Promise<string> {
  const target = path.join(env.paths.backupDir, `${path.basename(file)}.refit-${label}`);
  await writeTextAtomic(target, text);
  return target;
}

export const backupPath = (env: HostEnv, file: string, label: string) =>
  path.join(env.paths.backupDir, `${path.basename(file)}.refit-${label}`);

const AUDIT_OUTPUT_CHARS = 2_000;

/**
 * The env with every command reported to the step's audit trail: argv as run, exit status and
 * duration; a failed command (CommandFailedError) with the end of its stderr.
 */
export function withAudit<E extends Pick<HostEnv, 'run' | 'runInVm'>>(env: E, ctx: Pick<StepContext, 'audit'>): E {
  const audit = ctx.audit;
  if (audit === undefined) return env;
  const audited =
    (run: CommandRunner): CommandRunner =>
    async (argv, opts) => {
      const started = Date.now();
      try {
        const result = await run(argv, opts);
        audit({ type: 'step.command', argv: result.argv, exitCode: result.exitCode, durationMs: Date.now() - started });
        return result;
      } catch (err) {
        if (err instanceof CommandFailedError) {
          const stderr = err.stderr.slice(-AUDIT_OUTPUT_CHARS);
          audit({
            type: 'step.command',
            argv: err.argv,
            exitCode: err.exitCode,
            durationMs: Date.now() - started,
            stderr,
          });
        }
        throw err;
      }
    };
  const runInVm = env.runInVm;
  return {
    ...env,
    run: audited(env.run),
    ...(runInVm !== undefined ? { runInVm: (vm: string) => audited(runInVm(vm)) } : {}),
  };
}
