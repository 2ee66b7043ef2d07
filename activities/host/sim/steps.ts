import type { StepParams, TrafficStats } from '../../../schemas/steps.js';
import type { StepCommand } from '../../../schemas/command.js';
import { StepFailedError, UnsupportedHardwareError } from '../driver.js';
import type { SimState } from './state.js';

/** What a step would do to a simulated host; computed purely from its state and the parameters. */
export interface SimPlan {
  /** The host is already in the desired state: nothing to apply. */
  done: boolean;
  summary: string;
  change: (state: SimState) => SimState;
  rebootRequired?: boolean;
  traffic?: TrafficStats[];
  /** The change itself happens after the result is reported (a reboot); it is counted then. */
  deferred?: boolean;
  /** The boot id to report: a reboot done already reports the boot it left, as it did when it asked for it. */
  bootId?: string;
}

const unchanged = (state: SimState) => state;

export function planSimStep(state: SimState, step: StepCommand): SimPlan {
  switch (step.kind) {
    case 'drain':
      return step.mode === 'apply' ? planDrain(state, step.params.destinations) : planUndrain(state);
    case 'undrain':
      return step.mode === 'apply' ? planUndrain(state) : planDrain(state, {});
    case 'ovs-convert':
      return planBridge(
        state,
        step.params.bridge,
        step.params.uplink,
        step.mode === 'apply' ? 'ovs' : 'linux',
        step.params.hostVlan,
      );
    case 'ovs-bond':
      return step.mode === 'apply' ? planSimBond(state, step.params) : planSimBondOff(state, step.params.bond);
    case 'sriov-enable':
      return step.mode === 'apply' ? planSriov(state, step.params) : planSriovOff(state);
    case 'reboot':
      return step.mode === 'apply'
        ? planReboot(state, step.commandId)
        : { done: true, summary: 'a reboot cannot be undone; nothing to revert', change: unchanged };
    case 'verify':
      return step.mode === 'apply'
        ? planVerify(step.params)
        : { done: true, summary: 'a traffic check changes nothing; nothing to revert', change: unchanged };
    case 'nic-tuning':
      return planNicTuning(state, step.params, step.mode);
    case 'net-health':
      return step.mode === 'apply'
        ? {
            done: false,
            summary: `counters of ${step.params.interfaces?.join(', ') ?? 'every interface'} not modelled: nothing measured`,
            change: unchanged,
          }
        : { done: true, summary: 'a counter check changes nothing; nothing to revert', change: unchanged };
    case 'vxlan-tunnel':
      return { done: true, summary: 'simulated host: it has no network, so no tunnel is made', change: unchanged };
  }
}

/** The simulated host has its uplink and its bridge; their settings are not modelled. */
function planNicTuning(state: SimState, params: StepParams<'nic-tuning'>, mode: 'apply' | 'revert'): SimPlan {
  const names = params.interfaces.map((i) => i.name);
  const known = new Set([state.bridge.uplink, state.bridge.name, state.nic.name]);
  const missing = names.filter((n) => !known.has(n));
  if (missing.length > 0) throw new StepFailedError(`sim: no interface ${missing.join(', ')} on this host`);
  return {
    done: false,
    summary: `${mode === 'apply' ? 'tuned' : 'restored'} ${names.join(', ')} (settings not modelled)`,
    change: unchanged,
  };
}

function planDrain(state: SimState, destinations: Record<string, string>): SimPlan {
  if (state.cordoned && state.vms.length === 0)
    return { done: true, summary: 'already drained and cordoned', change: unchanged };
  const moves = state.vms.map((vm) => [vm, destinations[vm] ?? 'elsewhere'] as const);
  const where = moves.map(([vm, to]) => `${vm}→${to}`).join(', ');
  return {
    done: false,
    summary: `migrated ${moves.length} VMs away${where ? ` (${where})` : ''}; host cordoned`,
    change: (s) => ({ ...s, vms: [], away: { ...s.away, ...Object.fromEntries(moves) }, cordoned: true }),
  };
}

function planUndrain(state: SimState): SimPlan {
  const back = Object.keys(state.away);
  if (!state.cordoned && back.length === 0)
    return { done: true, summary: 'not cordoned, no VMs away', change: unchanged };
  return {
    done: false,
    summary: `migrated ${back.length} VMs back; host uncordoned`,
    change: (s) => ({ ...s, vms: [...s.vms, ...back.filter((vm) => !s.vms.includes(vm))], away: {}, cordoned: false }),
  };
}

function planBridge(
  state: SimState,
  bridge: string,
  uplink: string | undefined,
  type: 'linux' | 'ovs',
  hostVlan: number,
): SimPlan {
  if (bridge !== state.bridge.name)
    throw new StepFailedError(`sim: no bridge ${bridge} on this host (it has ${state.bridge.name})`);
  if (uplink !== undefined && uplink !== state.bridge.uplink) {
    throw new StepFailedError(`sim: ${uplink} is not a port of ${bridge} (its uplink is ${state.bridge.uplink})`);
  }
  const kind = type === 'ovs' ? 'Open vSwitch' : 'Linux bridge';
  if (state.bridge.type === type) return { done: true, summary: `${bridge} is already a ${kind}`, change: unchanged };
  return {
    done: false,
    summary: `${bridge} converted to ${kind} (uplink ${state.bridge.uplink}${type === 'ovs' ? `, host VLAN ${hostVlan}` : ''})`,
    change: (s) => ({
      ...s,
      bridge: type === 'ovs' ? { ...s.bridge, type, hostVlan } : { name: s.bridge.name, uplink: s.bridge.uplink, type },
    }),
  };
}

/** A simulated host has no Linux bond to read: the mode is the plan's, balance-tcp when it names none. */
function planSimBond(state: SimState, params: StepParams<'ovs-bond'>): SimPlan {
  if (params.bridge !== state.bridge.name || state.bridge.type !== 'ovs')
    throw new StepFailedError(`sim: ${params.bridge} is not an Open vSwitch bridge here (ovs-convert first)`);
  const mode = params.mode ?? 'balance-tcp';
  const lacp = params.lacp ?? (mode === 'active-backup' ? 'off' : 'active');
  const bond = { name: params.bond, mode, lacp };
  const now = state.bridge.ovsBond;
  if (now?.name === bond.name && now.mode === mode && now.lacp === lacp)
    return { done: true, summary: `${params.bond} is already an OVS bond (${mode}, lacp=${lacp})`, change: unchanged };
  return {
    done: false,
    summary: `${params.bond} is an OVSBond on ${params.bridge} (bond_mode=${mode} lacp=${lacp}), simulated`,
    change: (s) => ({ ...s, bridge: { ...s.bridge, ovsBond: bond } }),
  };
}

function planSimBondOff(state: SimState, bond: string): SimPlan {
  if (state.bridge.ovsBond?.name !== bond)
    return { done: true, summary: `${bond} is not an OVS bond here; nothing to revert`, change: unchanged };
  return {
    done: false,
    summary: `${bond} is a Linux bond again, simulated`,
    change: (s) => {
      const bridge = { ...s.bridge };
      delete bridge.ovsBond;
      return { ...s, bridge };
    },
  };
}

function planSriov(state: SimState, params: { nic: string; vfs: number; iommu: 'intel' | 'amd' }): SimPlan {
  if (params.nic !== state.nic.name)
    throw new UnsupportedHardwareError(`sim: no NIC ${params.nic} (this host has ${state.nic.name})`);
  if (params.vfs > state.nic.totalVfs) {
    throw new UnsupportedHardwareError(
      `sim: ${params.nic} supports at most ${state.nic.totalVfs} VFs, ${params.vfs} asked`,
    );
  }
  const live = state.running.iommu && state.running.numVfs === params.vfs;
  const persisted = state.bootConfig.iommu === params.iommu && state.bootConfig.numVfs === params.vfs;
  if (persisted) {
    const summary = live
      ? `${params.vfs} VFs on ${params.nic} already active`
      : `IOMMU and ${params.vfs} VFs already persisted; waiting for a reboot`;
    return { done: true, summary, change: unchanged, rebootRequired: !live };
  }
  return {
    done: false,
    summary: `${params.iommu}_iommu=on iommu=pt on the kernel command line, ${params.vfs} VFs on ${params.nic} persisted; reboot required`,
    change: (s) => ({ ...s, bootConfig: { iommu: params.iommu, numVfs: params.vfs } }),
    rebootRequired: !live,
  };
}

function planSriovOff(state: SimState): SimPlan {
  const off = state.bootConfig.iommu === null && state.bootConfig.numVfs === 0 && state.running.numVfs === 0;
  if (off) return { done: true, summary: 'SR-IOV already off', change: unchanged, rebootRequired: state.running.iommu };
  return {
    done: false,
    summary: `VFs on ${state.nic.name} removed, IOMMU options taken off the kernel command line`,
    change: (s) => ({ ...s, bootConfig: { iommu: null, numVfs: 0 }, running: { ...s.running, numVfs: 0 } }),
    rebootRequired: state.running.iommu,
  };
}

function planReboot(state: SimState, commandId: string): SimPlan {
  if (state.rebootPending?.commandId === commandId)
    return { done: true, summary: 'reboot already scheduled', change: unchanged };
  // Resumed after the worker came back and did the reboot it owed (SimDriver.open).
  if (state.lastReboot?.commandId === commandId)
    return {
      done: true,
      summary: `rebooted (boot id ${state.lastReboot.bootIdBefore} before)`,
      change: unchanged,
      bootId: state.lastReboot.bootIdBefore,
    };
  return {
    done: false,
    summary: `rebooting (boot id ${state.bootId})`,
    deferred: true,
    change: (s) => ({ ...s, rebootPending: { commandId, bootIdBefore: s.bootId } }),
  };
}

function planVerify(params: StepParams<'verify'>): SimPlan {
  const { targets, count, maxRttMs } = params;
  const traffic = targets.map((t, i): TrafficStats => {
    const avg = 0.08 + 0.02 * (i % 5);
    return {
      target: t.port === undefined ? t.address : `${t.address}:${t.port}`,
      transmitted: count,
      received: count,
      lossPct: 0,
      rttMinMs: round(avg * 0.6),
      rttAvgMs: round(avg),
      rttMaxMs: round(avg * 2.5),
    };
  });
  const slow = traffic.find((t) => maxRttMs !== undefined && (t.rttAvgMs ?? 0) > maxRttMs);
  if (slow !== undefined)
    throw new StepFailedError(`sim: simulated rtt to ${slow.target} is ${slow.rttAvgMs} ms, above ${maxRttMs} ms`);
  return {
    done: false,
    summary: `simulated traffic check of ${targets.length} targets, no packets sent${params.health !== undefined ? '; net health: counters not modelled, nothing measured' : ''}`,
    change: unchanged,
    traffic,
  };
}

const round = (n: number) => Math.round(n * 1000) / 1000;
