import { rm } from 'node:fs/promises';
import type { StepParams, StepOutcome } from '../../../../schemas/steps.js';
import { UnsupportedHardwareError, throwIfAborted, type StepContext } from '../../driver.js';
import { cmdlineHasIommu, planGrubIommu, planGrubIommuRemoval, type GrubPlan } from '../grub.js';
import { backupFile, readText, writeTextAtomic, type HostEnv } from '../host-env.js';
import { ifName, type IfName } from '../names.js';
import { lineDiff } from '../observe.js';
import { parseSriovRules, sriovRulesFor, vfVlanMap } from '../sriov.js';

type Params = StepParams<'sriov-enable'>;

async function observeSriov(env: HostEnv, nic: IfName) {
  const cmdline = ((await readText(env.paths.procCmdline)) ?? '').trim();
  return {
    nic,
    totalVfs: (await env.vfs.totalVfs(nic)) ?? 0,
    numVfs: await env.vfs.numVfs(nic),
    iommu: cmdlineHasIommu(cmdline),
    cmdline,
    persisted: parseSriovRules((await readText(env.paths.sriovRules)) ?? '') ?? null,
  };
}

async function writeGrub(env: HostEnv, plan: GrubPlan, original: string, label: string): Promise<void> {
  if (!plan.changed) return;
  await backupFile(env, env.paths.grub, original, label);
  await writeTextAtomic(env.paths.grub, plan.text);
  await env.run(env.grubUpdate, { timeoutMs: 120_000 });
}

/**
 * Check the NIC can do SR-IOV, put the IOMMU options on the kernel command line (/etc/default/grub and
 * its update command), persist the VF count (and VF VLANs) in udev rules applied at every boot, and
 * create the VFs now when the running kernel already has the IOMMU on; otherwise ask for a reboot.
 */
export async function applySriovEnable(env: HostEnv, params: Params, ctx: StepContext): Promise<StepOutcome> {
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

  const grubText = (await readText(env.paths.grub)) ?? '';
  const grub = planGrubIommu(grubText, params.iommu);
  ctx.progress(
    20,
    grub.changed
      ? `adding ${params.iommu}_iommu=on iommu=pt to the kernel command line`
      : 'IOMMU options already configured',
  );
  await writeGrub(env, grub, grubText, 'before-sriov-enable');

  const rulesText = (await readText(env.paths.sriovRules)) ?? '';
  const rules = sriovRulesFor(nic, params);
  if (rules !== rulesText) await writeTextAtomic(env.paths.sriovRules, rules);
  const vfVlans = vfVlanMap(params.vfs, params.vfVlan);

  let live = false;
  if (before.iommu) {
    if (before.numVfs !== params.vfs) {
      ctx.progress(60, `creating ${params.vfs} VFs on ${nic}`);
      if (before.numVfs !== 0) await env.vfs.setNumVfs(nic, 0);
      await env.vfs.setNumVfs(nic, params.vfs);
      live = true;
    }
    const current = await env.vfs.vfVlans(nic);
    for (const [vf, vlan] of Object.entries(vfVlans)) {
      if ((current[Number(vf)] ?? 0) !== vlan) {
        await env.vfs.setVfVlan(nic, Number(vf), vlan);
        live = true;
      }
    }
  }
  const after = await observeSriov(env, nic);
  const changed = grub.changed || rules !== rulesText || live;
  const rebootRequired = !after.iommu;
  ctx.progress(100, rebootRequired ? 'configured; a reboot is needed' : `${after.numVfs} VFs active`);
  return {
    changed,
    summary: rebootRequired
      ? `${params.iommu}_iommu=on iommu=pt on the kernel command line and ${params.vfs} VFs on ${nic} persisted; reboot required`
      : `${after.numVfs} VFs active on ${nic}${changed ? '' : ' (nothing to change)'}`,
    before,
    after: { ...after, grubDiff: lineDiff(grubText, grub.text), cmdlineDefault: grub.after },
    rebootRequired,
  };
}

/** Take the IOMMU options and the persistent VF count off again; remove the VFs now where they run. */
export async function revertSriovEnable(env: HostEnv, params: Params, ctx: StepContext): Promise<StepOutcome> {
  const nic = ifName(params.nic, 'nic');
  const before = await observeSriov(env, nic);
  const grubText = (await readText(env.paths.grub)) ?? '';
  const grub = planGrubIommuRemoval(grubText);
  await writeGrub(env, grub, grubText, 'before-sriov-revert');
  const hadRules = (await readText(env.paths.sriovRules)) !== undefined;
  if (hadRules) await rm(env.paths.sriovRules, { force: true });
  const hadVfs = before.numVfs > 0 && (await env.vfs.totalVfs(nic)) !== undefined;
  if (hadVfs) await env.vfs.setNumVfs(nic, 0);
  const after = await observeSriov(env, nic);
  ctx.progress(100, 'SR-IOV configuration removed');
  return {
    changed: grub.changed || hadRules || hadVfs,
    summary: `IOMMU options off the kernel command line, no persistent VFs on ${nic}${after.iommu ? '; a reboot takes the IOMMU off' : ''}`,
    before,
    after: { ...after, grubDiff: lineDiff(grubText, grub.text) },
    rebootRequired: after.iommu,
  };
}
