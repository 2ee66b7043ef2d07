/** What the workflow is to do next; it reports back through the machine's event methods. Plain data. */
export type RolloutDecision =
  /** Start the host's maintenance: it is in flight from now on. */
  | { kind: 'start'; hostId: string }
  /** Ask which of these hosts are offline now, then answer `presenceChecked` (onOffline). */
  | { kind: 'checkPresence'; hostIds: string[] }
  /** Ask for a fleet-wide lease, then answer `leaseGranted` or `leaseRefused`. */
  | { kind: 'acquireLease'; hostId: string; limit: number }
  /** Nothing to do until something changes (`version`), or until `untilMs` at the latest. */
  | { kind: 'wait'; untilMs?: number }
  /** The rollout paused itself (already in the status): record why in the audit trail. */
  | { kind: 'pause'; reason: string }
  /** Wave `wave` may start once approved, after `pauseMs`, or at once; then answer `gatePassed`. */
  | { kind: 'gate'; wave: number; approval?: true; pauseMs?: number }
  /** History is long and no host is in flight: continue as new with `carryOver()`. */
  | { kind: 'continueAsNew' }
  /** Nothing more will start: wait for the hosts in flight, then `finish()`. */
  | { kind: 'finish' };

/** Wave `wave` may start once approved, after `pauseMs`, or at once. */
export type GateDecision = Extract<RolloutDecision, { kind: 'gate' }>;
