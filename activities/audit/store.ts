import { JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { AuditRecord } from '../../schemas/audit.js';
import { STREAMS } from '../../schemas/names.js';
import { RefitError } from '../../schemas/errors.js';
import { recordOf } from './hash.js';

const PUBLISH_TIMEOUT_MS = 5_000;

/** The subject already holds a message after the one the writer expected: someone else appended. */
export class WrongLastSequenceError extends RefitError {
  constructor(
    readonly subject: string,
    readonly actual: number,
    options?: ErrorOptions,
  ) {
    super(`${subject} has moved on: its last message is at stream sequence ${actual}`, options);
  }
}

/** The audit stream as a chain writer needs it: read a subject's last message, append after it. */
export interface ChainStore {
  last(subject: string): Promise<AuditRecord | null>;
  /** Store unless the subject's last stream sequence differs from `expectLast` (0: the subject is empty). */
  append(
    subject: string,
    body: string,
    msgId: string,
    expectLast: number,
  ): Promise<{ streamSeq: number; duplicate: boolean }>;
}

/**
 * The store as a host sees it: it reads only the last message of its own subject, through the
 * direct-get form that names the subject (`$JS.API.DIRECT.GET.REFIT_AUDIT.<subject>`), the only
 * read its permissions allow.
 */
export function hostChainStore(nc: NatsConnection): ChainStore {
  const manager = cached(() => jetstreamManager(nc, { checkAPI: false }));
  return {
    async last(subject) {
      const m = await (await manager()).direct.getMessage(STREAMS.audit, { last_by_subj: subject });
      return m === null ? null : recordOf(m.subject, m.seq, m.time.toISOString(), m.data);
    },
    append: appender(nc),
  };
}

/** The store as the controller and the CLI see it: any subject, read through the stream's leader. */
export function adminChainStore(nc: NatsConnection): ChainStore {
  const manager = cached(() => jetstreamManager(nc));
  return {
    async last(subject) {
      const m = await (await manager()).streams.getMessage(STREAMS.audit, { last_by_subj: subject });
      return m === null ? null : recordOf(m.subject, m.seq, m.time.toISOString(), m.data);
    },
    append: appender(nc),
  };
}

/** Made once; a failed attempt (the server was unreachable) is not kept, the next call tries again. */
function cached<T>(make: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  return () =>
    (value ??= make().catch((err: unknown) => {
      value = undefined;
      throw err;
    }));
}

function appender(nc: NatsConnection): ChainStore['append'] {
  const js = jetstream(nc);
  return async (subject, body, msgId, expectLast) => {
    try {
      const ack = await js.publish(subject, body, {
        msgID: msgId,
        expect: { lastSubjectSequence: expectLast },
        timeout: PUBLISH_TIMEOUT_MS,
      });
      return { streamSeq: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence) {
        const actual = Number(/(\d+)\s*$/.exec(err.message)?.[1] ?? Number.NaN);
        throw new WrongLastSequenceError(subject, actual, { cause: err });
      }
      throw err;
    }
  };
}

/** The stored message at one stream sequence (controller and CLI only). */
export async function readAt(nc: NatsConnection, streamSeq: number): Promise<AuditRecord | null> {
  const m = await (await jetstreamManager(nc)).streams.getMessage(STREAMS.audit, { seq: streamSeq });
  return m === null ? null : recordOf(m.subject, m.seq, m.time.toISOString(), m.data);
}

/**
 * Let hosts read the last message of their own audit subject (direct get). Needs the controller
 * identity; a no-op when already allowed. The stream itself is created by ensureMessaging.
 */
export async function allowAuditDirectGet(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(STREAMS.audit);
  if (info.config.allow_direct === true) return;
  await jsm.streams.update(STREAMS.audit, { allow_direct: true });
}
