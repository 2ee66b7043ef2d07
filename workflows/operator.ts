import { RefitError } from '../schemas/errors.js';
import type { HostAction, HostStatus, OperatorAction, RolloutCarried, RolloutStatus } from '../schemas/rollout.js';
import type { HostActionName, OperatorActionName } from './messages.js';

export type HostPatch = { [K in keyof HostStatus]?: HostStatus[K] | undefined };

/** An operator action that does not apply now, or that names no valid operator: nothing changed. */
export class ActionRefused extends RefitError {}
/** The action's audit event could not be stored, so the action was not applied. */
export class ActionNotAudited extends RefitError {}

interface Deps {
  status: RolloutStatus;
  byHost: Map<string, HostStatus>;
  carried: RolloutCarried;
  isOver(): boolean;
  setHost(host: HostStatus, patch: HostPatch): void;
  onChange(): void;
  /** While an action's audit event is being stored, the rollout decides nothing, so the action meets the state it was checked against. */
  holdDecisions(held: boolean): void;
}

export interface Action<A> {
  /** Throws `ActionRefused` with the reason the action does not apply now or names no valid operator (an update's validator). */
  check(a: A): void;
  /**
   * Check, store the audit event (`record`), check again, apply; operator actions take turns. An
   * action whose event cannot be stored is not applied (`ActionNotAudited`).
   */
  perform(a: A, record: () => Promise<void>): Promise<void>;
  /** For signals: `perform`, noting in the status message why an action was refused or not applied. */
  tryPerform(a: A, record: () => Promise<void>): Promise<void>;
  /** As before audit-first, for histories recorded then: apply at once; the caller records it afterwards. */
  apply(a: A): void;
  /** As before audit-first, for signals in histories recorded then: apply if it applies (true), else note why not (false). */
  tryApply(a: A): boolean;
}

/** The longest operator name: `user:<name>` stays within the audit trail's bound on actors. */
export const MAX_OPERATOR_NAME = 200;
const MAX_REASON = 1_000;
/** Control and invisible characters (format characters such as bidi overrides and zero-width spaces, line and paragraph separators). */
const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
/** Control characters other than tab and newline. */
const CONTROL = /[^\P{Cc}\t\n]/u;

/**
 * What is wrong with the name an operator action gives as who asked for it (`by`), if anything. The
 * audit trail records it as `user:<name>`: a string of 1 to 200 characters, no space at either end,
 * and no control or invisible character, which could make one name read as another in the trail or
 * on a terminal.
 */
export function operatorNameProblem(by: unknown): string | undefined {
  if (by === undefined) return 'is missing';
  if (typeof by !== 'string') return 'must be a string';
  if (by.trim() === '') return 'is empty';
  if (HIDDEN.test(by)) return 'contains a control or invisible character';
  if (by !== by.trim()) return 'starts or ends with a space';
  if ([...by].length > MAX_OPERATOR_NAME) return `is longer than ${MAX_OPERATOR_NAME} characters`;
  return undefined;
}

/** Throws `ActionRefused` unless `by` is a valid operator name (`operatorNameProblem`). */
export function checkOperatorName(by: unknown): asserts by is string {
  const problem = operatorNameProblem(by);
  if (problem) throw new ActionRefused(`the operator name (by) ${problem}`);
}

/** Who asked, and why: an operator name, and a reason of at most 1,000 characters (tabs and newlines allowed) if any. */
function checkRequest(a: unknown): void {
  if (typeof a !== 'object' || a === null) throw new ActionRefused('expected { by, reason? }');
  const { by, reason } = a as Partial<OperatorAction>;
  checkOperatorName(by);
  if (reason !== undefined && (typeof reason !== 'string' || [...reason].length > MAX_REASON || CONTROL.test(reason)))
    throw new ActionRefused(`the reason must be text of at most ${MAX_REASON} characters without control characters`);
}

/** The innermost message: what an activity failure was caused by. */
function reasonOf(err: unknown): string {
  let e = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}

const RETRYABLE = new Set(['failed', 'held', 'rolled-back', 'skipped']);
const SKIPPABLE = new Set(['pending', 'failed', 'held', 'rolled-back']);

/** What operators may do to a running rollout: each checked, audited, then applied. Pure state changes. */
export function createOperatorActions(
  d: Deps,
): Record<OperatorActionName, Action<OperatorAction>> & Record<HostActionName, Action<HostAction>> {
  const now = () => new Date().toISOString();
  const running = () => {
    if (d.isOver()) throw new ActionRefused(`rollout has ended (${d.status.state})`);
    if (d.status.cancelled) throw new ActionRefused('rollout is being cancelled');
  };
  const host = (hostId: string): HostStatus => {
    const h = d.byHost.get(hostId);
    if (!h) throw new ActionRefused(`host ${hostId} is not in this rollout`);
    return h;
  };
  let turn: Promise<unknown> = Promise.resolve();
  const inTurn = (f: () => Promise<void>): Promise<void> => {
    const mine = turn.then(f);
    turn = mine.catch(() => undefined);
    return mine;
  };

  function action<A>(name: string, checkState: (a: A) => void, change: (a: A) => void): Action<A> {
    const check = (a: A) => {
      checkRequest(a);
      checkState(a);
    };
    const apply = (a: A) => {
      change(a);
      d.onChange();
    };
    const perform = (a: A, record: () => Promise<void>) =>
      inTurn(async () => {
        check(a);
        d.holdDecisions(true);
        try {
          try {
            await record();
          } catch (err) {
            throw new ActionNotAudited(`its audit event could not be stored: ${reasonOf(err)}`, { cause: err });
          }
          try {
            checkState(a);
          } catch (err) {
            throw new ActionRefused(`recorded in the audit trail, but no longer applies: ${reasonOf(err)}`);
          }
          apply(a);
        } finally {
          d.holdDecisions(false);
        }
      });
    return {
      check,
      perform,
      tryPerform: async (a, record) => {
        try {
          await perform(a, record);
        } catch (err) {
          const outcome = err instanceof ActionNotAudited ? 'not applied' : 'refused';
          d.status.message = `ignored a signal: ${name} ${outcome}: ${err instanceof Error ? err.message : String(err)}`;
        }
      },
      apply,
      tryApply: (a) => {
        try {
          checkState(a);
        } catch (err) {
          d.status.message = `ignored a signal: ${(err as Error).message}`;
          d.onChange();
          return false;
        }
        apply(a);
        return true;
      },
    };
  }

  return {
    pause: action<OperatorAction>(
      'pause',
      () => {
        running();
        if (d.status.paused) throw new ActionRefused(`already paused (${d.status.paused.reason})`);
      },
      (a) => (d.status.paused = { reason: a.reason ?? 'paused by an operator', by: a.by, at: now() }),
    ),
    resume: action<OperatorAction>(
      'resume',
      () => {
        running();
        if (!d.status.paused) throw new ActionRefused('not paused');
      },
      () => {
        d.status.paused = null;
        // The failures so far are accepted; the next one beyond the budget pauses again.
        d.carried.acceptedFailures = d.status.failureBudget.failed;
      },
    ),
    cancel: action<OperatorAction>('cancel', running, (a) => {
      d.status.cancelled = { by: a.by, at: now(), ...(a.reason ? { reason: a.reason } : {}) };
      d.status.paused = null;
      d.status.pendingApproval = null;
    }),
    approve: action<OperatorAction>(
      'approve',
      () => {
        running();
        if (!d.status.pendingApproval) throw new ActionRefused('no approval is pending');
      },
      (a) => {
        const gate = d.status.pendingApproval;
        if (gate) d.status.approvals.push({ gate: gate.gate, wave: gate.wave, by: a.by, at: now() });
        d.status.pendingApproval = null;
      },
    ),
    retryHost: action<HostAction>(
      'retryHost',
      (a) => {
        running();
        const h = host(a.hostId);
        if (!RETRYABLE.has(h.state))
          throw new ActionRefused(
            `host ${a.hostId} is ${h.state}; only failed, held, rolled-back or skipped hosts can be retried`,
          );
      },
      // A host that was offline is looked for afresh, with a new wait if it is still away.
      (a) =>
        d.setHost(host(a.hostId), { state: 'pending', error: undefined, waitingFor: undefined, offline: undefined }),
    ),
    skipHost: action<HostAction>(
      'skipHost',
      (a) => {
        running();
        const h = host(a.hostId);
        if (!SKIPPABLE.has(h.state))
          throw new ActionRefused(
            `host ${a.hostId} is ${h.state}; only pending, failed, held or rolled-back hosts can be skipped`,
          );
      },
      (a) => d.setHost(host(a.hostId), { state: 'skipped', error: `skipped by ${a.by}`, waitingFor: undefined }),
    ),
  };
}
