import path from 'node:path';
import { createExecaRunner, type CommandRunner } from '../linux/command.js';
import { labBinDir, switchOvsDir } from './layout.js';
import type { LabHost, LabState, LabVm } from './state.js';

/** Commands in the root namespace (`ip netns add`, `ip -n <ns> ...`). */
export const rootRunner: CommandRunner = createExecaRunner();

export const hostExecScript = (lab: LabState) => path.join(labBinDir(lab.labDir), 'host-exec');
export const labUpdateGrubScript = (lab: LabState) => path.join(labBinDir(lab.labDir), 'update-grub');

/**
 * Commands as the lab host sees the world: its network namespace, its /etc (ip netns exec binds
 * /etc/netns/<ns>/* over /etc/*) and its own /run (so ifupdown's state and the host's Open vSwitch
 * sockets are its own, and no systemd is reachable from inside).
 */
export function hostPrefix(lab: LabState, host: LabHost): string[] {
  return ['ip', 'netns', 'exec', host.ns, hostExecScript(lab), host.root];
}

export function hostRunner(lab: LabState, host: LabHost): CommandRunner {
  return createExecaRunner(hostPrefix(lab, host));
}

/** Commands inside a namespace VM. A QEMU guest runs no commands for the lab: they fail saying so. */
export function vmRunner(vm: LabVm): CommandRunner {
  if (vm.kind === 'qemu')
    return async (argv) => {
      throw new Error(`${vm.name} is a QEMU guest: the lab cannot run ${argv[0] ?? 'commands'} inside it`);
    };
  return createExecaRunner(['ip', 'netns', 'exec', vm.ns]);
}

export function switchRunner(lab: LabState): CommandRunner {
  return createExecaRunner(['ip', 'netns', 'exec', lab.switch.ns]);
}

/**
 * Open vSwitch commands for the switch's own OVS (bonded hosts' LACP partner), in the switch
 * namespace: OVS_RUNDIR points them at its sockets and pid files under the lab dir.
 */
export function switchOvsRunner(lab: LabState): CommandRunner {
  return createExecaRunner(['ip', 'netns', 'exec', lab.switch.ns, 'env', `OVS_RUNDIR=${switchOvsDir(lab.labDir)}`]);
}
