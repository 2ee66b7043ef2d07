import { condition, proxyActivities } from '@temporalio/workflow';
import type { ControllerActivities } from '../schemas/activities.js';
import type { NotificationBody, Notify, NotifyEvent } from '../schemas/notify.js';
import type { RolloutStatus } from '../schemas/rollout.js';

type Happening = { event: NotifyEvent; hostId?: string; detail?: string };

export interface Notifier {
  /** Resolves once every change seen so far has been notified (before continuing as new). */
  flush(): Promise<void>;
  /** The rollout ended: tell the webhooks how, then wait for every notification. */
  ended(status: RolloutStatus): Promise<void>;
}

const HOST_EVENTS: Partial<Record<string, NotifyEvent>> = {
  failed: 'host-failed',
  held: 'host-failed',
  'rolled-back': 'host-rolled-back',
};

/**
 * Tells the plan's webhooks what happens to a rollout, by watching its status: an approval asked for,
 * a pause (by the budget, the canary or an operator), a host failed or rolled back, the end. Only
 * changes after this run started are told (a new run of a rollout that continued as new starts from
 * what it carried). Notifications go out beside the rollout, never in its way: one activity per
 * webhook and event, tried as the plan says, whose failure is audited and otherwise ignored.
 */
export function startNotifier(notify: Notify, rolloutId: string, planName: string, status: RolloutStatus): Notifier {
  const send = proxyActivities<ControllerActivities>({
    startToCloseTimeout: notify.timeout + 5_000,
    retry: {
      initialInterval: notify.backoff,
      backoffCoefficient: 2,
      maximumInterval: '5m',
      maximumAttempts: notify.attempts,
    },
  }).sendNotification;
  const sending = new Set<Promise<void>>();
  let approvalSeen = status.pendingApproval?.since;
  let pauseSeen = status.paused?.at;
  const hostSeen = new Map(status.hosts.map((h) => [h.hostId, h.state]));

  function changes(): Happening[] {
    const found: Happening[] = [];
    const approval = status.pendingApproval;
    if (approval !== null && approval.since !== approvalSeen)
      found.push({ event: 'approval-needed', detail: approval.gate });
    const paused = status.paused;
    if (paused !== null && paused.at !== pauseSeen)
      found.push({ event: 'paused', detail: `${paused.reason} (by ${paused.by})` });
    for (const h of status.hosts) {
      if (hostSeen.get(h.hostId) === h.state) continue;
      const event = HOST_EVENTS[h.state];
      // A host back to pending or running is noted at once, so that failing again is told again.
      if (event === undefined) hostSeen.set(h.hostId, h.state);
      else found.push({ event, hostId: h.hostId, ...(h.error !== undefined ? { detail: h.error } : {}) });
    }
    return found;
  }

  function markSeen(): void {
    approvalSeen = status.pendingApproval?.since;
    pauseSeen = status.paused?.at;
    for (const h of status.hosts) hostSeen.set(h.hostId, h.state);
  }

  function tell(h: Happening): void {
    const body: Omit<NotificationBody, 'deliveryId'> = {
      event: h.event,
      rolloutId,
      plan: planName,
      at: new Date().toISOString(),
      state: status.state,
      counts: { ...status.counts },
      ...(h.hostId !== undefined ? { hostId: h.hostId } : {}),
      ...(h.detail !== undefined ? { detail: h.detail } : {}),
    };
    notify.webhooks.forEach((webhook, index) => {
      if (!webhook.events.includes(h.event)) return;
      const p = send({ webhook, index, body, attempts: notify.attempts, timeoutMs: notify.timeout })
        .then(() => undefined)
        .catch(() => undefined)
        .finally(() => sending.delete(p));
      sending.add(p);
    });
  }

  void (async () => {
    for (;;) {
      await condition(() => changes().length > 0);
      const found = changes();
      markSeen();
      for (const h of found) tell(h);
    }
  })();

  const flush = () => condition(() => changes().length === 0 && sending.size === 0);
  return {
    flush,
    async ended(end) {
      await condition(() => changes().length === 0);
      const event: NotifyEvent =
        end.state === 'completed' ? 'completed' : end.state === 'cancelled' ? 'cancelled' : 'failed';
      tell({ event, ...(end.message !== undefined ? { detail: end.message } : {}) });
      await flush();
    },
  };
}
