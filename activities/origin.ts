import type { MsgHdrs } from '@nats-io/transport-node';

/**
 * Headers JetStream sets on a stored message it hands out (direct get, republish). No honest writer
 * of refit's subjects sets them. nats-server does not check a request's reply subject against the
 * requester's permissions, so a host can ask for its own last audit message by direct get with
 * another host's presence key, command subject or result key as the reply subject: the answer,
 * whatever the host wrote there, is stored under the other host's subject, with these headers
 * (docs/security.md). A reader that finds one of them knows the message was forwarded, not written.
 */
const FORWARDED_BY_JETSTREAM = ['Nats-Stream', 'Nats-Sequence', 'Nats-Subject', 'Nats-Time-Stamp'] as const;

/**
 * The JetStream header that shows a message was handed on by the server, or undefined. `added` is
 * how many of each the read itself put there: a direct get answer carries one set of its own, so a
 * message read that way was handed on before only when a header appears twice.
 */
export function forwardedBy(headers: MsgHdrs | undefined, added: 0 | 1 = 0): string | undefined {
  if (headers === undefined) return undefined;
  return FORWARDED_BY_JETSTREAM.find((h) => headers.values(h).length > added);
}

/**
 * Why a message on a subject only the controller may publish to (a host's cancel and confirm
 * subjects) cannot be the controller's, or undefined when it can be. The controller publishes
 * these plainly: no headers, no reply subject. Everything JetStream sends to a subject someone
 * chose as a reply or delivery subject has one or the other: a consumer delivery has its
 * `$JS.ACK.…` reply subject, a direct get answer its `Nats-Stream` headers; what is left (API
 * answers, publish acks) is JSON no cancel or confirm schema takes.
 */
export function notFromController(msg: {
  headers?: MsgHdrs | undefined;
  reply?: string | undefined;
}): string | undefined {
  if (msg.reply !== undefined && msg.reply !== '')
    return `it has a reply subject (${msg.reply}), as JetStream deliveries do`;
  if (msg.headers !== undefined) {
    const forwarded = forwardedBy(msg.headers);
    return forwarded !== undefined
      ? `it carries the ${forwarded} header: JetStream handed it on`
      : 'it carries headers, which the controller never sets';
  }
  return undefined;
}
