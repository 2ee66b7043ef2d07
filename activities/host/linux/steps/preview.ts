import type { StepPreview } from '../../../../schemas/preview.js';
import { vxlanEndFor, type StepCall, type StepParams } from '../../../../schemas/steps.js';
import type { HostFacts } from '../../../../schemas/host.js';
import { describeStep, filePreview } from '../../preview.js';
import { detectBootloader, planCmdlineIommu } from '../boot-config.js';
import { kernelCmdlineFromGrub, planGrubIommu } from '../grub.js';
import { readText, type HostEnv } from '../host-env.js';
import { detectIfupdown } from '../ifupdown.js';
import { ifName } from '../names.js';
import { BondPlanError, planOvsBond } from '../bond-plan.js';
import { InterfacesPlanError, planOvsConversion } from '../ovs-plan.js';
import { sriovRulesFor } from '../sriov.js';
import { previewVxlanTunnel } from './vxlan-tunnel.js';

/**
 * What each step would change on this host, from its real files, changing nothing: the
 * /etc/network/interfaces that ovs-convert would write, the /etc/default/grub, kernel command line
 * and udev rules of sriov-enable. The same planners as the steps themselves.
 */
export async function previewLinuxSteps(
  env: HostEnv,
  steps: readonly StepCall[],
  facts: HostFacts | undefined,
): Promise<StepPreview[]> {
  const previews: StepPreview[] = [];
  for (const [index, step] of steps.entries()) {
    if (step.kind === 'ovs-convert') previews.push(await previewOvsConvert(env, step.params, index));
    else if (step.kind === 'ovs-bond')
      previews.push(await previewOvsBond(env, step.params, index, steps.slice(0, index)));
    else if (step.kind === 'sriov-enable') previews.push(await previewSriovEnable(env, step.params, index));
    else if (step.kind === 'vxlan-tunnel') {
      // The host's preview worker hands on this host's own end (vxlanEndFor with its id).
      const end = vxlanEndFor(step.params, undefined);
      if (end === undefined) previews.push({ ...describeStep(step, index, facts), error: 'no end for this host' });
      else previews.push(await previewVxlanTunnel(env, end, index));
    } else previews.push(describeStep(step, index, facts));
  }
  return previews;
}

async function previewOvsConvert(env: HostEnv, params: StepParams<'ovs-convert'>, index: number): Promise<StepPreview> {
  const base = { index, kind: 'ovs-convert' as const, changes: [] };
  const text = await readText(env.paths.interfaces);
  if (text === undefined)
    return { ...base, summary: 'cannot be planned', files: [], error: `${env.paths.interfaces} does not exist` };
  try {
    const plan = planOvsConversion(text, {
      bridge: params.bridge,
      uplink: params.uplink,
      hostVlan: params.hostVlan,
      datapathType: env.datapathType,
      // Written for the ifupdown the host runs, as the step writes it.
      ifupdown: detectIfupdown(env.paths.ifupdown2),
    });
    return { ...base, summary: plan.summary, files: [filePreview(env.paths.interfaces, text, plan.text)] };
  } catch (err) {
    if (!(err instanceof InterfacesPlanError)) throw err;
    return { ...base, summary: 'cannot be planned', files: [], error: err.message };
  }
}

/**
 * The file ovs-bond would write: from the file as it is, or as an earlier ovs-convert of the same
 * bridge in the plan would leave it (which already builds the bridge on an OVSBond from a Linux bond).
 */
async function previewOvsBond(
  env: HostEnv,
  params: StepParams<'ovs-bond'>,
  index: number,
  earlier: readonly StepCall[],
): Promise<StepPreview> {
  const base = { index, kind: 'ovs-bond' as const, changes: [] };
  const text = await readText(env.paths.interfaces);
  if (text === undefined)
    return { ...base, summary: 'cannot be planned', files: [], error: `${env.paths.interfaces} does not exist` };
  const ifupdown = detectIfupdown(env.paths.ifupdown2);
  const convert = earlier.find(
    (s): s is Extract<StepCall, { kind: 'ovs-convert' }> =>
      s.kind === 'ovs-convert' && s.params.bridge === params.bridge,
  );
  try {
    const from =
      convert === undefined
        ? text
        : planOvsConversion(text, { ...convert.params, datapathType: env.datapathType, ifupdown }).text;
    const plan = planOvsBond(from, { ...params, ifupdown });
    return { ...base, summary: plan.summary, files: [filePreview(env.paths.interfaces, from, plan.text)] };
  } catch (err) {
    if (!(err instanceof InterfacesPlanError) && !(err instanceof BondPlanError)) throw err;
    return { ...base, summary: 'cannot be planned', files: [], error: err.message };
  }
}

async function previewSriovEnable(
  env: HostEnv,
  params: StepParams<'sriov-enable'>,
  index: number,
): Promise<StepPreview> {
  const nic = ifName(params.nic, 'nic');
  const base = { index, kind: 'sriov-enable' as const };
  const total = await env.vfs.totalVfs(nic);
  const pci = await env.vfs.pciAddress(nic);
  const unsupported =
    total === undefined || total === 0
      ? `${nic} has no SR-IOV capability (sriov_totalvfs is ${total === undefined ? 'missing' : '0'})`
      : params.vfs > total
        ? `${nic} supports at most ${total} VFs; the plan asks for ${params.vfs}`
        : pci === undefined
          ? `${nic} has no PCI address in sysfs (device/uevent): its VFs are persisted by PCI address`
          : undefined;
  const boot = await detectBootloader(env).catch((err: unknown) => err as Error);
  if (boot instanceof Error)
    return { ...base, summary: 'cannot be planned', files: [], changes: [], error: boot.message };
  const file = boot.kind === 'systemd-boot' ? (env.paths.kernelCmdline ?? '/etc/kernel/cmdline') : env.paths.grub;
  const text = (await readText(file)) ?? '';
  const rulesText = (await readText(env.paths.sriovRules)) ?? '';
  const rules = pci === undefined ? rulesText : sriovRulesFor(nic, pci, params);
  let planned: string;
  let cmdline: { before: string; after: string };
  if (boot.kind === 'systemd-boot') {
    const plan = planCmdlineIommu(text, params.iommu);
    planned = plan.text;
    cmdline = { before: plan.before, after: plan.after };
  } else {
    planned = planGrubIommu(text, params.iommu).text;
    cmdline = { before: kernelCmdlineFromGrub(text), after: kernelCmdlineFromGrub(planned) };
  }
  return {
    ...base,
    summary:
      planned !== text
        ? `IOMMU on the kernel command line, ${params.vfs} VFs on ${nic} at every boot; a reboot follows`
        : `${params.vfs} VFs on ${nic} at every boot (the IOMMU options are there already)`,
    files: [filePreview(file, text, planned), filePreview(env.paths.sriovRules, rulesText, rules)],
    changes: cmdline.before === cmdline.after ? [] : [{ what: 'kernel command line', ...cmdline }],
    ...(unsupported ? { error: unsupported } : {}),
  };
}
