import { BUCKETS, STREAMS, SUBJECTS, commandConsumer, inboxPrefix } from './names.js';

/** nats-server authorization for one identity (the `permissions` block of a user). */
export interface NatsPermissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
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
    subscribe: { allow: [`${inboxPrefix(identity)}.>`, SUBJECTS.cancel(hostId), SUBJECTS.confirm(hostId)] },
  };
}

/** The controller runs the dispatch activities and manages streams, buckets and consumers. */
export function controllerPermissions(): NatsPermissions {
  return { publish: { allow: ['>'] }, subscribe: { allow: ['>'] } };
}

/** The CLI reads inventory, results and audit; it cannot send commands or alter streams. */
export function cliPermissions(identity: string): NatsPermissions {
  return {
    publish: {
      allow: ['$JS.API.>', SUBJECTS.auditController],
      deny: [
        '$JS.API.STREAM.CREATE.>',
        '$JS.API.STREAM.UPDATE.>',
        '$JS.API.STREAM.DELETE.>',
        '$JS.API.STREAM.PURGE.>',
        '$JS.API.STREAM.MSG.DELETE.>',
        '$JS.API.CONSUMER.DELETE.>',
        '$JS.API.STREAM.RESTORE.>',
        // Creating or changing a consumer on the command stream would let it read or re-route commands.
        `$JS.API.CONSUMER.CREATE.${STREAMS.commands}.>`,
        `$JS.API.CONSUMER.CREATE.${STREAMS.commands}`,
        `$JS.API.CONSUMER.DURABLE.CREATE.${STREAMS.commands}.>`,
        `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.commands}.>`,
        SUBJECTS.commandsAll,
      ],
    },
    subscribe: { allow: [`${inboxPrefix(identity)}.>`] },
  };
}
