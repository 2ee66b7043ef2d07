import type { HostAction, HostStatus, OperatorAction, RolloutCarried, RolloutStatus } from '../schemas/rollout.js';
import type { HostActionName, OperatorActionName } from './messages.js';

export type HostPatch = { [K in keyof HostStatus]?: HostStatus[K] | undefined };

interface Deps {
  status: RolloutStatus;
  byHost: Map<string, HostStatus>;
  carried: RolloutCarried;
  isOver(): boolean;
  setHost(host: HostStatus, patch: HostPatch): void;
  onChange(): void;
}

export interface Action<A> {
  /** Throws with the reason the action does not apply now (an update's validator). */
  check(a: A): void;
  apply(a: A): void;
  /** For signals: apply when it applies (true), otherwise note why not in the status (false). */
  tryApply(a: A): boolean;
}

const RETRYABLE = new Set(['failed', 'held', 'rolled-back', 'skipped']);
const SKIPPABLE = new Set(['pending', 'failed', 'held', 'rolled-back']);

/** What operators may do to a running rollout: each checked first, then applied. Pure state changes. */
export function createOperatorActions(
  d: Deps,
): Record<OperatorActionName, Action<OperatorAction>> & Record<HostActionName, Action<HostAction>> {
  const now = () => new Date().toISOString();
  const running = () => {
    if (d.isOver()) throw new Error(`rollout has ended (${d.status.state})`);
    if (d.status.cancelled) throw new Error('rollout is being cancelled');
  };
  const host = (hostId: string): HostStatus => {
    const h = d.byHost.get(hostId);
    if (!h) throw new Error(`host ${hostId} is not in this rollout`);
    return h;
  };
  function action<A>(check: (a: A) => void, apply: (a: A) => void): Action<A> {
    return {
      check,
      apply: (a) => {
        apply(a);
        d.onChange();
      },
      tryApply: (a) => {
        try {
          check(a);
        } catch (err) {
          d.status.message = `ignored a signal: ${(err as Error).message}`;
          d.onChange();
          return false;
        }
        apply(a);
        d.onChange();
        return true;
      },
    };
  }

  return {
    pause: action<OperatorAction>(
      () => {
        running();
        if (d.status.paused) throw new Error(`already paused (${d.status.paused.reason})`);
      },
      (a) => (d.status.paused = { reason: a.reason ?? 'paused by an operator', by: a.by, at: now() }),
    ),
    resume: action<OperatorAction>(
      () => {
        running();
        if (!d.status.paused) throw new Error('not paused');
      },
      () => {
        d.status.paused = null;
        // The failures so far are accepted; the next one beyond the budget pauses again.
        d.carried.acceptedFailures = d.status.failureBudget.failed;
      },
    ),
    cancel: action<OperatorAction>(running, (a) => {
      d.status.cancelled = { by: a.by, at: now(), ...(a.reason ? { reason: a.reason } : {}) };
      d.status.paused = null;
      d.status.pendingApproval = null;
    }),
    approve: action<OperatorAction>(
      () => {
        running();
        if (!d.status.pendingApproval) throw new Error('no approval is pending');
      },
      (a) => {
        const gate = d.status.pendingApproval;
        if (gate) d.status.approvals.push({ gate: gate.gate, wave: gate.wave, by: a.by, at: now() });
        d.status.pendingApproval = null;
      },
    ),
    retryHost: action<HostAction>(
      (a) => {
        running();
        const h = host(a.hostId);
        if (!RETRYABLE.has(h.state))
          throw new Error(
            `host ${a.hostId} is ${h.state}; only failed, held, rolled-back or skipped hosts can be retried`,
          );
      },
      (a) => d.setHost(host(a.hostId), { state: 'pending', error: undefined, waitingFor: undefined }),
    ),
    skipHost: action<HostAction>(
      (a) => {
        running();
        const h = host(a.hostId);
        if (!SKIPPABLE.has(h.state))
          throw new Error(
            `host ${a.hostId} is ${h.state}; only pending, failed, held or rolled-back hosts can be skipped`,
          );
      },
      (a) => d.setHost(host(a.hostId), { state: 'skipped', error: `skipped by ${a.by}`, waitingFor: undefined }),
    ),
  };
}
