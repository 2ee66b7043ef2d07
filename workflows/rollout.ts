import {
  ParentClosePolicy,
  isCancellation,
  WorkflowIdReusePolicy,
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ControllerActivities } from '../activities/controller/types.js';
import { hostWorkflowId } from '../schemas/names.js';
import type { HostState, HostStatus, RolloutInput, RolloutStatus } from '../schemas/rollout.js';
import { hostMaintenance } from './host-maintenance.js';
import { hostIdKey, phaseKey, rolloutIdKey, rolloutStatusQuery } from './messages.js';
import { planWaves, resolveCount } from './waves.js';

const { resolveTargets } = proxyActivities<ControllerActivities>({
  startToCloseTimeout: '1m',
  retry: { maximumInterval: '10s' },
});

const HOST_STATES: HostState[] = ['pending', 'running', 'succeeded', 'failed', 'rolled-back', 'held', 'skipped'];
const FAILED_STATES = new Set<HostState>(['failed', 'rolled-back', 'held']);

/** A campaign across the fleet: waves, canary first, a bounded number of hosts in flight. */
export async function fleetRollout(input: RolloutInput): Promise<RolloutStatus> {
  const { plan } = input;
  const status: RolloutStatus = {
    id: input.rolloutId,
    name: plan.name,
    state: 'waiting',
    message: 'resolving targets from the inventory',
    startedBy: input.startedBy,
    startedAt: new Date(workflowInfo().startTime).toISOString(),
    missingHosts: [],
    waves: [],
    hosts: [],
    counts: Object.fromEntries(HOST_STATES.map((s) => [s, 0])) as Record<HostState, number>,
    failureBudget: { maxFailedHosts: 0, failed: 0 },
  };
  setHandler(rolloutStatusQuery, () => status);
  const byHost = new Map<string, HostStatus>();

  function setHost(host: HostStatus, patch: Partial<HostStatus>): void {
    status.counts[host.state] -= 1;
    Object.assign(host, patch);
    status.counts[host.state] += 1;
    if (FAILED_STATES.has(host.state) && patch.state) status.failureBudget.failed = countFailed();
  }
  const countFailed = () => status.hosts.filter((h) => FAILED_STATES.has(h.state)).length;

  const targets = await resolveTargets(plan.targets);
  status.state = 'running';
  delete status.message;
  status.missingHosts = targets.missing;
  status.failureBudget.maxFailedHosts = resolveCount(plan.failureBudget.maxFailedHosts, targets.hostIds.length);
  planWaves(targets.hostIds, plan.waves).forEach((hosts, index) => {
    status.waves.push({ index, hosts, state: 'pending' });
    for (const hostId of hosts) {
      const host: HostStatus = { hostId, state: 'pending', step: null, wave: index };
      status.hosts.push(host);
      byHost.set(hostId, host);
      status.counts.pending += 1;
    }
  });

  const budgetSpent = () => status.failureBudget.failed > status.failureBudget.maxFailedHosts;

  async function maintain(hostId: string): Promise<void> {
    const host = byHost.get(hostId);
    if (!host) return;
    setHost(host, { state: 'running' });
    try {
      const child = await startChild(hostMaintenance, {
        workflowId: hostWorkflowId(hostId),
        args: [{ rolloutId: input.rolloutId, hostId, steps: plan.steps, onHostFailure: plan.onHostFailure }],
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        typedSearchAttributes: [
          { key: rolloutIdKey, value: input.rolloutId },
          { key: hostIdKey, value: hostId },
          { key: phaseKey, value: 'starting' },
        ],
      });
      const result = await child.result();
      const last = result.steps.at(-1);
      const step = last ? (last.mode === 'revert' ? `revert:${last.kind}` : last.kind) : null;
      setHost(host, { state: result.state, step, ...(result.error ? { error: result.error } : {}) });
    } catch (err) {
      if (isCancellation(err)) throw err;
      const busy = err instanceof Error && err.name === 'WorkflowExecutionAlreadyStartedError';
      setHost(host, {
        state: busy ? 'skipped' : 'failed',
        error: busy ? 'host is in another campaign' : err instanceof Error ? err.message : String(err),
      });
    }
  }

  for (const wave of status.waves) {
    if (budgetSpent()) break;
    wave.state = 'running';
    const inFlight = new Set<Promise<void>>();
    for (const hostId of wave.hosts) {
      if (budgetSpent()) break;
      while (inFlight.size >= plan.waves.maxInFlight) await Promise.race(inFlight);
      const p: Promise<void> = maintain(hostId).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    wave.state = 'done';
    // A failed canary stops the campaign whatever the budget says.
    if (wave.index === 0 && plan.waves.canary > 0 && wave.hosts.some((h) => FAILED_STATES.has(byHost.get(h)?.state ?? 'pending'))) {
      status.message = 'the canary failed';
      break;
    }
  }
  if (budgetSpent()) status.message = `failure budget spent: ${status.failureBudget.failed} hosts failed, ${status.failureBudget.maxFailedHosts} allowed`;

  const allSucceeded = status.hosts.every((h) => h.state === 'succeeded') && status.missingHosts.length === 0;
  status.state = allSucceeded ? 'completed' : 'failed';
  if (!allSucceeded && !status.message) {
    status.message = status.missingHosts.length > 0 ? `hosts not present: ${status.missingHosts.join(', ')}` : 'some hosts did not succeed';
  }
  upsertSearchAttributes([{ key: phaseKey, value: status.state }]);
  return status;
}
