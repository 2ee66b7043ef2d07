import { rm } from 'node:fs/promises';
import type { StepParams, StepOutcome } from '../../../../schemas/steps.js';
import { UnsupportedHardwareError, throwIfAborted, type StepContext } from '../../driver.js';
import {
  detectBootloader,
  IOMMU_OPTIONS,
  iommuActive,
  planCmdlineIommu,
  planCmdlineIommuRemoval,
  type Iommu,
} from '../boot-config.js';
import { planGrubIommu, planGrubIommuRemoval } from '../grub.js';
import { backupFile, readText, writeTextAtomic, type HostEnv } from '../host-env.js';
import { ifName, type IfName } from '../names.js';
import { lineDiff } from '../observe.js';
import { recordBaselines } from './verify.js';
import { sriovRulesFor, vfMismatches, vfSettingsFor } from '../sriov.js';
import { readPersistedVfs, removeLegacyRules } from '../vf-persistence.js';

type Params = StepParams<'sriov-enable'>;

async function observeSriov(env: HostEnv, nic: IfName) {
  const cmdline = ((await readText(env.paths.procCmdline)) ?? '').trim();
  const numVfs = await env.vfs.numVfs(nic);
  return {
    nic,
    pci: (await env.vfs.pciAddress(nic)) ?? null,
    totalVfs: (await env.vfs.totalVfs(nic)) ?? 0,
    numVfs,
    vfs: numVfs > 0 ? await env.vfs.vfStates(nic) : {},
    iommu: await iommuActive(env.paths.sysIommu),
    cmdline,
    persisted: (await readPersistedVfs(env)) ?? null,
  };
}

/** What the kernel command line change did: where, before and after, and the file's diff. */
interface BootChange {
  changed: boolean;
  bootloader: 'grub' | 'systemd-boot';
  /** GRUB_CMDLINE_LINUX_DEFAULT, or the line of /etc/kernel/cmdline. */
  before: string;
  after: string;
  diff: string[];
}

/**
 * Put the IOMMU options on (or take them off) the kernel command line where this host keeps it: GRUB
 * (/etc/default/grub, then its update command) or systemd-boot through proxmox-boot-tool
 * (/etc/kernel/cmdline, then `proxmox-boot-tool refresh`). The file is backed up before it changes.
 */
async function changeKernelCmdline(env: HostEnv, iommu: Iommu | 'off', label: string): Promise<BootChange> {
  const boot = await detectBootloader(env);
  const [file, update]: [string, readonly string[]] =
    boot.kind === 'systemd-boot'
      ? [env.paths.kernelCmdline ?? '/etc/kernel/cmdline', ['proxmox-boot-tool', 'refresh']]
      : [env.paths.grub, env.grubUpdate];
  const text = (await readText(file)) ?? '';
  const plan =
    boot.kind === 'systemd-boot'
      ? iommu === 'off'
        ? planCmdlineIommuRemoval(text)
        : planCmdlineIommu(text, iommu)
      : iommu === 'off'
        ? planGrubIommuRemoval(text)
        : planGrubIommu(text, iommu);
  if (plan.changed) {
    await backupFile(env, file, text, label);
    await writeTextAtomic(file, plan.text);
    await env.run(update, { timeoutMs: 120_000 });
  }
  return {
    changed: plan.changed,
    bootloader: boot.kind,
    before: plan.before,
    after: plan.after,
    diff: lineDiff(text, plan.text),
  };
}

/**
 * Check the NIC can do SR-IOV, put the IOMMU options on the kernel command line (GRUB or
 * proxmox-boot-tool, whichever boots the host), persist the VF count and VF settings in udev rules matched by PCI address at every boot, and
 * create the VFs now when the running kernel already has the IOMMU on; otherwise ask for a reboot.
 */
export async function applySriovEnable(
  env: HostEnv,
  params: Params,
  ctx: StepContext,
  rolloutId: string,
): Promise<StepOutcome> {
  const nic = ifName(params.nic, 'nic');
  const total = await env.vfs.totalVfs(nic);
  if (total === undefined || total === 0)
    throw new UnsupportedHardwareError(
      `${nic} has no SR-IOV capability (sriov_totalvfs is ${total === undefined ? 'missing' : '0'})`,
    );
  if (params.vfs > total)
    throw new UnsupportedHardwareError(`${nic} supports at most ${total} VFs; the plan asks for ${params.vfs}`);
  const before = await observeSriov(env, nic);
  throwIfAborted(ctx.signal);
  if (params.baselineTargets !== undefined && params.baselineTargets.length > 0) {
    ctx.progress(10, 'measuring a traffic baseline before the change');
    await recordBaselines(env, undefined, params.baselineTargets, rolloutId, ctx);
  }

  const options = IOMMU_OPTIONS[params.iommu].join(' ');
  ctx.progress(20, `putting ${options} on the kernel command line`);
  const boot = await changeKernelCmdline(env, params.iommu, 'before-sriov-enable');

  const pci = await env.vfs.pciAddress(nic);
  if (pci === undefined)
    throw new UnsupportedHardwareError(
      `${nic} has no PCI address in sysfs (device/uevent): its VFs are persisted by PCI address`,
    );
  const rulesText = (await readText(env.paths.sriovRules)) ?? '';
  const rules = sriovRulesFor(nic, pci, params);
  if (rules !== rulesText) await writeTextAtomic(env.paths.sriovRules, rules);
  const legacyRemoved = await removeLegacyRules(env);
  const wanted = vfSettingsFor(params);

  let live = false;
  if (before.iommu) {
    if (before.numVfs !== params.vfs) {
      ctx.progress(60, `creating ${params.vfs} VFs on ${nic}`);
      if (before.numVfs !== 0) await env.vfs.setNumVfs(nic, 0);
      await env.vfs.setNumVfs(nic, params.vfs);
      live = true;
    }
    const current = await env.vfs.vfStates(nic);
    for (const [vf, settings] of Object.entries(wanted)) {
      if (vfMismatches({ [Number(vf)]: settings }, current).length > 0) {
        await env.vfs.setVf(nic, Number(vf), settings);
        live = true;
      }
    }
  }
  const after = await observeSriov(env, nic);
  const changed = boot.changed || rules !== rulesText || legacyRemoved || live;
  const rebootRequired = !after.iommu;
  ctx.progress(100, rebootRequired ? 'configured; a reboot is needed' : `${after.numVfs} VFs active`);
  return {
    changed,
    summary: rebootRequired
      ? `${options} on the kernel command line (${boot.bootloader === 'grub' ? '/etc/default/grub' : '/etc/kernel/cmdline, proxmox-boot-tool'}) and ${params.vfs} VFs on ${nic} persisted; reboot required`
      : `${after.numVfs} VFs active on ${nic}${changed ? '' : ' (nothing to change)'}`,
    before,
    after: {
      ...after,
      bootloader: boot.bootloader,
      ...(boot.bootloader === 'grub'
        ? { grubDiff: boot.diff, cmdlineDefault: boot.after }
        : { kernelCmdlineDiff: boot.diff, kernelCmdline: boot.after }),
    },
    rebootRequired,
  };
}

/** Take the IOMMU options and the persistent VF count off again; remove the VFs now where they run. */
export async function revertSriovEnable(env: HostEnv, params: Params, ctx: StepContext): Promise<StepOutcome> {
  const nic = ifName(params.nic, 'nic');
  const before = await observeSriov(env, nic);
  const boot = await changeKernelCmdline(env, 'off', 'before-sriov-revert');
  const hadRules = (await readText(env.paths.sriovRules)) !== undefined;
  if (hadRules) await rm(env.paths.sriovRules, { force: true });
  const hadLegacyRules = await removeLegacyRules(env);
  const hadVfs = before.numVfs > 0 && (await env.vfs.totalVfs(nic)) !== undefined;
  if (hadVfs) await env.vfs.setNumVfs(nic, 0);
  const after = await observeSriov(env, nic);
  ctx.progress(100, 'SR-IOV configuration removed');
  return {
    changed: boot.changed || hadRules || hadLegacyRules || hadVfs,
    summary: `IOMMU options off the kernel command line, no persistent VFs on ${nic}${after.iommu ? '; a reboot takes the IOMMU off' : ''}`,
    before,
    after: {
      ...after,
      bootloader: boot.bootloader,
      ...(boot.bootloader === 'grub' ? { grubDiff: boot.diff } : { kernelCmdlineDiff: boot.diff }),
    },
    rebootRequired: after.iommu,
  };
}
