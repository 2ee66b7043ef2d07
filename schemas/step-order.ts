import type { StepKind } from './steps.js';

/** A step out of order: its index in the plan's steps and why. */
export interface StepOrderProblem {
  index: number;
  message: string;
}

/** Steps that change the host's network; a plan proves the network afterwards with a verify. */
const CHANGES = new Set<StepKind>(['ovs-convert', 'ovs-bond', 'sriov-enable', 'nic-tuning']);
/** Steps that cut a running VM off (its bridge moves, or its host goes down): its host must be drained. */
const NEED_DRAINED = new Set<StepKind>(['ovs-convert', 'ovs-bond', 'reboot']);

/**
 * Where a plan's steps are in an order that would hurt a host or prove nothing:
 * - ovs-convert, ovs-bond and reboot run on a drained host (a drain before them and no undrain between);
 * - an undrain follows a drain, and a drain is followed by an undrain (no host left cordoned and empty);
 * - sriov-enable is followed by a reboot (its kernel options take effect only then);
 * - after the last step that changes the network (ovs-convert, ovs-bond, sriov-enable, nic-tuning) comes a verify.
 */
export function stepOrderProblems(kinds: readonly StepKind[]): StepOrderProblem[] {
  const problems: StepOrderProblem[] = [];
  let drained = false;
  let drainAt: number | undefined;
  kinds.forEach((kind, index) => {
    if (kind === 'drain') {
      drained = true;
      drainAt ??= index;
    } else if (kind === 'undrain') {
      if (!drained)
        problems.push({ index, message: 'an undrain needs a drain before it: there are no VMs to bring back' });
      drained = false;
      drainAt = undefined;
    } else if (NEED_DRAINED.has(kind) && !drained) {
      problems.push({
        index,
        message: `${kind} needs a drain before it (and no undrain between): it would cut off the host's running VMs`,
      });
    }
    if (kind === 'sriov-enable' && !kinds.slice(index + 1).includes('reboot'))
      problems.push({ index, message: 'sriov-enable needs a reboot after it: the VFs and IOMMU come up only then' });
  });
  if (drainAt !== undefined)
    problems.push({
      index: drainAt,
      message: 'a drain needs an undrain after it: the host would stay cordoned, its VMs elsewhere',
    });
  const lastChange = kinds.findLastIndex((k) => CHANGES.has(k));
  if (lastChange >= 0 && !kinds.slice(lastChange + 1).includes('verify'))
    problems.push({
      index: lastChange,
      message: `${kinds[lastChange]} needs a verify after it: nothing would prove the network still works`,
    });
  return problems.sort((a, b) => a.index - b.index);
}
