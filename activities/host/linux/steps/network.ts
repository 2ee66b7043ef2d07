import { vxlanEndFor, type StepOutcome } from '../../../../schemas/steps.js';
import type { StepCommand } from '../../../../schemas/command.js';
import { InvalidStepParamsError, type StepContext } from '../../driver.js';
import type { HostEnv } from '../host-env.js';
import { applyOvsBond, revertOvsBond } from './ovs-bond.js';
import { applyOvsConvert, revertOvsConvert } from './ovs-convert.js';
import { applyReboot } from './reboot.js';
import { applySriovEnable, revertSriovEnable } from './sriov-enable.js';
import { applyVerify } from './verify.js';
import { applyNicTuning, revertNicTuning } from './nic-tuning.js';
import { applyNetHealth } from './net-health.js';
import { applyVxlanTunnel, revertVxlanTunnel } from './vxlan-tunnel.js';

/** Every step but drain and undrain, which each driver does its own way (libvirt, the lab). */
export type NetworkStep = Exclude<StepCommand, { kind: 'drain' | 'undrain' }>;

const nothing = (summary: string): StepOutcome => ({ changed: false, summary, before: {}, after: {} });

/**
 * The steps that change a host's own network and boot, applied or reverted the same way by the
 * linux and lab drivers; `env` (audited) says on which host and through which commands.
 */
export async function runNetworkStep(env: HostEnv, step: NetworkStep, ctx: StepContext): Promise<StepOutcome> {
  const { commandId, rolloutId } = step;
  const apply = step.mode === 'apply';
  switch (step.kind) {
    case 'ovs-convert':
      return apply ? applyOvsConvert(env, step.params, ctx, rolloutId) : revertOvsConvert(env, step.params, ctx);
    case 'ovs-bond':
      return apply ? applyOvsBond(env, step.params, ctx) : revertOvsBond(env, step.params, ctx);
    case 'sriov-enable':
      return apply ? applySriovEnable(env, step.params, ctx, rolloutId) : revertSriovEnable(env, step.params, ctx);
    case 'reboot':
      return apply ? applyReboot(env, ctx, commandId) : nothing('a reboot cannot be undone; nothing to revert');
    case 'verify':
      return apply
        ? applyVerify(env, step.params, ctx, rolloutId)
        : nothing('a traffic check changes nothing; nothing to revert');
    case 'nic-tuning':
      return apply
        ? applyNicTuning(env, step.params, ctx, rolloutId)
        : revertNicTuning(env, step.params, ctx, rolloutId);
    case 'net-health':
      return apply
        ? applyNetHealth(env, step.params, ctx)
        : nothing('a counter check changes nothing; nothing to revert');
    case 'vxlan-tunnel': {
      // The controller sends each host its own end; a command with the whole map takes this host's entry.
      const end = vxlanEndFor(step.params, step.hostId);
      if (end === undefined)
        throw new InvalidStepParamsError(`vxlan-tunnel: the step's hosts have no entry for ${step.hostId}`);
      return apply ? applyVxlanTunnel(env, end, ctx) : revertVxlanTunnel(env, end, ctx);
    }
  }
}
