import { diffLines } from '../audit/diff.js';
import { MAX_DIFF_LINES, type FilePreview, type StepPreview } from '../../schemas/preview.js';
import type { StepCall, StepParams } from '../../schemas/steps.js';
import type { HostFacts } from '../../schemas/host.js';
import { missingToolMessage } from './linux/tools.js';

/** A file before and after, as a step would leave it; the diff cut at MAX_DIFF_LINES, saying so. */
export function filePreview(path: string, before: string, after: string): FilePreview {
  if (before === after) return { path, changed: false, diff: [] };
  const diff = diffLines(before, after);
  return {
    path,
    changed: true,
    diff:
      diff.length > MAX_DIFF_LINES
        ? [...diff.slice(0, MAX_DIFF_LINES), `@@ … ${diff.length - MAX_DIFF_LINES} more lines`]
        : diff,
  };
}

const onOff = (v: boolean | undefined) => (v === true ? 'on' : 'off');

/** `ens6: gro off, rings rx 4096, mtu 9000`. */
function describeNic(s: StepParams<'nic-tuning'>['interfaces'][number]): string {
  const parts = [
    ...Object.entries(s.offloads ?? {}).map(([k, v]) => `${k} ${onOff(v)}`),
    ...Object.entries(s.rings ?? {}).map(([k, v]) => `rings ${k} ${v}`),
    ...Object.entries(s.channels ?? {}).map(([k, v]) => `channels ${k} ${v}`),
    ...(s.txqueuelen !== undefined ? [`txqueuelen ${s.txqueuelen}`] : []),
    ...(s.mtu !== undefined ? [`mtu ${s.mtu}`] : []),
  ];
  return `${s.name}: ${parts.join(', ')}`;
}

/**
 * What a step that changes no file of the host would do, from the host's facts: drain, undrain,
 * reboot and verify on every driver.
 */
export function describeStep(step: StepCall, index: number, facts: HostFacts | undefined): StepPreview {
  const base = { index, kind: step.kind, files: [], changes: [] };
  const vms = facts?.vms.length;
  switch (step.kind) {
    case 'drain': {
      const pinned = facts?.vms.filter((v) => v.sriov).map((v) => v.name) ?? [];
      return {
        ...base,
        summary: `live-migrates ${vms === undefined ? 'its VMs' : vms === 1 ? '1 VM' : `${vms} VMs`} away (destinations chosen by the controller), then cordons`,
        ...(pinned.length > 0
          ? { error: `VMs with SR-IOV functions cannot be live-migrated: ${pinned.join(', ')}` }
          : {}),
      };
    }
    case 'undrain':
      return { ...base, summary: 'brings its VMs back and uncordons' };
    case 'reboot':
      return {
        ...base,
        summary: `reboots; the controller waits for a new boot id (now ${facts?.bootId ?? 'unknown'})`,
      };
    case 'verify':
      return {
        ...base,
        summary: `sends ${step.params.count} packets to ${step.params.targets.map((t) => t.address).join(', ')}${step.params.health !== undefined ? `, watching the drop, error and overrun counters of ${step.params.health.interfaces?.join(', ') ?? 'every interface'} and TCP retransmissions meanwhile` : ''}; changes nothing`,
        ...(step.params.fromVm === undefined && facts?.tools?.hping3 === false
          ? { error: missingToolMessage('hping3') }
          : {}),
      };
    case 'nic-tuning':
      return {
        ...base,
        summary: `tunes ${step.params.interfaces.map(describeNic).join('; ')}, at once and in their stanzas of /etc/network/interfaces`,
      };
    case 'net-health':
      return {
        ...base,
        summary: `watches the drop, error and overrun counters of ${step.params.interfaces?.join(', ') ?? 'every interface'} and TCP retransmissions for ${step.params.window / 1000} s; changes nothing`,
      };
    default:
      return { ...base, summary: `${step.kind}: this driver cannot say what it would change` };
  }
}
