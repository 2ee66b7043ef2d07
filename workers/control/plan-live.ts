import type { Client } from '@temporalio/client';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Plan } from '../../schemas/plan.js';
import { hostIdKey, rolloutIdKey } from '../../workflows/messages.js';
import type { RefitConfig } from '../config.js';
import { enrolledHostIds } from '../dev/credentials.js';
import { readInventory } from './inventory.js';
import { previewPlan, requestPreviews, type BusyHosts, type PlanPreview } from './plan-preview.js';

/** Hosts whose maintenance runs now, in which rollout: they are in another campaign. */
export async function busyHosts(client: Client): Promise<BusyHosts> {
  const busy = new Map<string, string>();
  const running = client.workflow.list({ query: 'WorkflowType = "hostMaintenance" AND ExecutionStatus = "Running"' });
  for await (const wf of running) {
    const hostId = wf.typedSearchAttributes.get(hostIdKey);
    if (hostId !== undefined) busy.set(hostId, wf.typedSearchAttributes.get(rolloutIdKey) ?? 'another rollout');
  }
  return busy;
}

/** `refit rollout plan`: the plan against the live inventory, each target's own dry run over NATS. */
export async function previewPlanLive(
  nc: NatsConnection,
  config: RefitConfig,
  plan: Plan,
  busy: BusyHosts,
  signingKey = false,
): Promise<PlanPreview> {
  const { hosts } = await readInventory(nc);
  const enrolled = enrolledHostIds(config.home);
  return previewPlan({
    plan,
    inventory: hosts.map((h) => h.presence),
    busy,
    signingKey,
    ...(enrolled.length > 0 ? { enrolled: new Set(enrolled) } : {}),
    previews: (hostIds) => requestPreviews(nc, plan, hostIds),
  });
}
