/**
 * Names shared by every process: NATS subjects, streams, buckets and consumers; Temporal task
 * queue, workflow ids and search attributes. The docker-compose stack uses the same names.
 */

export const TASK_QUEUE = 'refit-controller';

export const STREAMS = {
  commands: 'REFIT_CMD',
  audit: 'REFIT_AUDIT',
} as const;

export const BUCKETS = {
  /** Presence and facts, one key per host id. */
  hosts: 'refit_hosts',
  /** Command status and results, key `<hostId>.<commandKey>`. */
  results: 'refit_results',
  /** Fleet-wide maintenance leases, one key, changed only by compare-and-set. */
  leases: 'refit_leases',
  /** Enrolled operators' public keys, one key per operator name; only the controller identity writes it. */
  operators: 'refit_operators',
} as const;

export const SUBJECTS = {
  commandsAll: 'refit.cmd.>',
  command: (hostId: string) => `refit.cmd.${hostId}`,
  cancel: (hostId: string) => `refit.cancel.${hostId}`,
  /** The controller confirms it still reaches a host that switched its network (ovs-convert). */
  confirm: (hostId: string) => `refit.confirm.${hostId}`,
  /** A read-only dry run of a plan's steps, as a NATS request to the host (schemas/preview.ts). */
  preview: (hostId: string) => `refit.preview.${hostId}`,
  previewAll: 'refit.preview.*',
  auditAll: 'refit.audit.>',
  auditHost: (hostId: string) => `refit.audit.host.${hostId}`,
  auditController: 'refit.audit.controller',
} as const;

/** The durable pull consumer through which one host takes its commands. */
export const commandConsumer = (hostId: string) => `host-${hostId}`;

/** Each identity gets its own inbox prefix so that no identity can read another's replies. */
export const inboxPrefix = (identity: string) => `_INBOX_${identity}`;

/** The workflow id of a host's maintenance: one per host, so two campaigns never share a host. */
export const hostWorkflowId = (hostId: string) => `refit-host-${hostId}`;

/** The failure types of a rollout workflow that ended failed or cancelled; its status is the failure's details. */
export const ROLLOUT_FAILED = 'RolloutFailed';
export const ROLLOUT_CANCELLED = 'RolloutCancelled';

export const SEARCH_ATTRIBUTES = {
  rolloutId: 'RefitRolloutId',
  hostId: 'RefitHostId',
  phase: 'RefitPhase',
} as const;

/** Registered on the dev server at start (`temporal server start-dev --search-attribute`). */
export const SEARCH_ATTRIBUTE_TYPES: Record<string, 'Keyword'> = {
  [SEARCH_ATTRIBUTES.rolloutId]: 'Keyword',
  [SEARCH_ATTRIBUTES.hostId]: 'Keyword',
  [SEARCH_ATTRIBUTES.phase]: 'Keyword',
};

/** The identities `refit dev` creates besides one per host. */
export const IDENTITIES = { controller: 'controller', cli: 'cli' } as const;

/**
 * How a step is named in statuses, search attributes and counts: `drain`, or `revert:drain` when it
 * is undone. Here rather than beside the step schemas so that workflows use it without bundling zod.
 */
export function stepLabel(kind: string, mode: 'apply' | 'revert'): string {
  return mode === 'revert' ? `revert:${kind}` : kind;
}
