import { BUCKETS, STREAMS, SUBJECTS, commandConsumer, inboxPrefix } from './names.js';

/** nats-server authorization for one identity (the `permissions` block of a user). */
export interface NatsPermissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
  /** May publish one reply to the reply subject of a request it received, within `expires`. */
  allow_responses?: { max: number; expires: string };
}

/**
 * A host sees only its own subjects: its command consumer, its result keys, its presence key,
 * its audit subject, its cancel subject and its own inbox. It holds no Temporal credentials.
 */
export function hostPermissions(hostId: string, identity: string): NatsPermissions {
  const consumer = commandConsumer(hostId);
  return {
    publish: {
      allow: [
        '$JS.API.INFO',
        `$JS.API.CONSUMER.INFO.${STREAMS.commands}.${consumer}`,
        `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.commands}.${consumer}`,
        `$JS.ACK.${STREAMS.commands}.${consumer}.>`,
        `$KV.${BUCKETS.results}.${hostId}.>`,
        `$KV.${BUCKETS.hosts}.${hostId}`,
        SUBJECTS.auditHost(hostId),
        // The last message of its own audit subject only: how a host finds its chain's end again.
        `$JS.API.DIRECT.GET.${STREAMS.audit}.${SUBJECTS.auditHost(hostId)}`,
      ],
    },
    subscribe: {
      allow: [
        `${inboxPrefix(identity)}.>`,
        SUBJECTS.cancel(hostId),
        SUBJECTS.confirm(hostId),
        SUBJECTS.preview(hostId),
      ],
    },
    // The reply to a preview request: one message, to the requester's own reply subject only.
    allow_responses: { max: 1, expires: '1m' },
  };
}

/** The controller runs the dispatch activities and manages streams, buckets and consumers. */
export function controllerPermissions(): NatsPermissions {
  return { publish: { allow: ['>'] }, subscribe: { allow: ['>'] } };
}

/** The streams the CLI reads: hosts' presence and the audit trail. Not the commands, not results. */
export const CLI_READS = [`KV_${BUCKETS.hosts}`, STREAMS.audit] as const;

/**
 * The CLI reads inventory and the audit trail: stream info and direct gets on those two streams,
 * nothing else. An allow list of single API subjects, not `$JS.API.>` with a deny list, so that an
 * API nats-server adds later is not granted by default. It creates no consumer at all: nats-server
 * (2.12) does not check a push consumer's delivery subject against its creator's permissions
 * (nats-io/nats-server#8274), and whether a consumer is push or pull is in the request body, which
 * permissions cannot see; so no consumer, no pause, no change, and no read of REFIT_CMD. Besides API
 * requests it publishes only dry-run requests (`refit.preview.<host>`, `refit rollout plan`): a host
 * answers one with what the plan's steps would change and changes nothing; it cannot reach a host's
 * commands, cancel or confirm subjects.
 */
export function cliPermissions(identity: string): NatsPermissions {
  return {
    publish: {
      allow: [
        '$JS.API.INFO',
        ...CLI_READS.flatMap((stream) => [
          `$JS.API.STREAM.INFO.${stream}`,
          `$JS.API.DIRECT.GET.${stream}`,
          `$JS.API.DIRECT.GET.${stream}.>`,
        ]),
        SUBJECTS.previewAll,
      ],
    },
    subscribe: { allow: [`${inboxPrefix(identity)}.>`] },
  };
}
