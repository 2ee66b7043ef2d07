import { parsePlan, type Plan } from '../schemas/plan.js';
import type { StepKind } from '../schemas/steps.js';

/** Parameters that every simulated host accepts, per step kind. */
const PARAMS: Record<StepKind, Record<string, unknown>> = {
  drain: {},
  undrain: {},
  'ovs-convert': {},
  'ovs-bond': { mode: 'balance-tcp' },
  'sriov-enable': { nic: 'ens6', vfs: 7 },
  reboot: { timeout: '30m' },
  verify: { targets: [{ address: '10.77.0.1' }], count: 10 },
  'nic-tuning': { interfaces: [{ name: 'ens6', txqueuelen: 2000 }] },
  'net-health': { window: '1s' },
  'vxlan-tunnel': {
    type: 'linux',
    name: 'vx100',
    vni: 100,
    remote: '10.77.0.12',
    local: '10.77.0.11',
    underlay: 'vmbr0',
  },
};

/**
 * The five steps of the throughput runs: each runs one real process on the host, like a command task.
 * A valid order (schemas/step-order.ts): a baseline check, the change, the check after it.
 */
export const FIVE_STEPS: readonly StepKind[] = ['drain', 'verify', 'ovs-convert', 'verify', 'undrain'];
/** The whole campaign, for the modelled run. */
export const CAMPAIGN_STEPS: readonly StepKind[] = [
  'drain',
  'ovs-convert',
  'sriov-enable',
  'reboot',
  'verify',
  'undrain',
];

export interface BenchPlanOptions {
  name: string;
  hosts: readonly string[];
  steps: readonly StepKind[];
  canary: number;
  /** Hosts per wave after the canary. A drain sends VMs only to hosts outside its own wave. */
  batchSize: number;
  maxInFlight: number;
}

/** A plan as an operator would write it, through the same parser `refit rollout start` uses. */
export function benchPlan(o: BenchPlanOptions): Plan {
  const parsed = parsePlan(
    JSON.stringify({
      apiVersion: 'refit/v1',
      kind: 'Campaign',
      name: o.name,
      targets: { hosts: o.hosts },
      waves: { canary: o.canary, batchSize: o.batchSize, maxInFlight: o.maxInFlight },
      steps: o.steps.map((kind) => ({ kind, params: PARAMS[kind] })),
      failureBudget: { maxFailedHosts: 0 },
    }),
  );
  if (!parsed.ok)
    throw new Error(`bench plan invalid: ${parsed.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
  return parsed.plan;
}

/** Zero duration for every kind: the sim's own time out of the way. */
export const NO_WAIT: Record<StepKind, number> = {
  drain: 0,
  undrain: 0,
  'ovs-convert': 0,
  'ovs-bond': 0,
  'sriov-enable': 0,
  reboot: 0,
  verify: 0,
  'nic-tuning': 0,
  'net-health': 0,
  'vxlan-tunnel': 0,
};
