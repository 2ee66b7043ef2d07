import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { AUDIT_CHAINS, AuditRecordInput, AuditDraft, type AuditLink, type AuditRecorded } from '../../schemas/audit.js';
import { linkOf } from '../audit/hash.js';
import { adminChainStore, allowAuditDirectGet, readAt, type ChainStore } from '../audit/store.js';
import { ChainWriter, readTail } from '../audit/writer.js';
import type { Logger } from 'pino';
import { problemText } from '../../schemas/problems.js';

export interface AuditDeps {
  nc: NatsConnection;
  log: Logger;
}

/**
 * The controller's audit writer, as an activity the workflows call for every rollout and host
 * transition. Events of a rollout go on the rollout's chain; one outside any rollout on the
 * controller chain. An event naming a host also links the head of that host's own chain, so the
 * rollout chain vouches for what the host had written by then. The event id is the activity's
 * (`<workflowId>/<runId>/<activityId>`), so a retried activity stores the event once.
 */
export function createRecordAudit({ nc, log }: AuditDeps) {
  const store = adminChainStore(nc);
  // A rollout's host workflows append to its chain one after another, each without reading its end
  // (decision 0038).
  const writer = new ChainWriter(store);
  // Hosts find their chain's end by direct get; the stream must allow it (see docs/decisions/0005).
  const ready = allowAuditDirectGet(nc).catch((err: unknown) =>
    log.warn({ err }, 'cannot enable direct get on the audit stream'),
  );

  return async function recordAudit(input: AuditRecordInput): Promise<AuditRecorded> {
    const parsed = AuditRecordInput.safeParse(input);
    if (!parsed.success) {
      const problems = problemText(parsed.error, '(input)');
      throw ApplicationFailure.nonRetryable(`invalid audit event: ${problems}`, 'InvalidAuditEvent');
    }
    const req = parsed.data;
    const info = Context.current().info;
    const execution = info.workflowExecution;
    if (execution === undefined)
      throw ApplicationFailure.nonRetryable('recordAudit runs only inside a workflow', 'InvalidAuditEvent');
    const { workflowId, runId } = execution;
    const chain = req.rolloutId !== undefined ? AUDIT_CHAINS.rollout(req.rolloutId) : AUDIT_CHAINS.controller;
    await ready;
    const link = req.hostId !== undefined ? await hostHead(store, req.hostId) : undefined;
    // Checked here, where it is built from the input, the workflow and the host's chain; sealing trusts it.
    const draft = AuditDraft.parse({
      eventId: req.eventId ?? `${workflowId}/${runId}/${info.activityId}`,
      at: req.at ?? new Date().toISOString(),
      actor: req.actor,
      type: req.type,
      ...(req.rolloutId !== undefined ? { rolloutId: req.rolloutId } : {}),
      ...(req.hostId !== undefined ? { hostId: req.hostId } : {}),
      workflowId,
      ...(req.commandId !== undefined ? { commandId: req.commandId } : {}),
      ...(req.step !== undefined ? { step: req.step } : {}),
      data: req.data ?? {},
      ...(link !== undefined ? { links: [link] } : {}),
    } satisfies AuditDraft);
    const done = await writer.append(chain, draft);
    const stored =
      done.event ?? (done.tail?.eventId === draft.eventId ? done.tail : await storedAt(nc, done.streamSeq));
    log.debug({ eventId: draft.eventId, chain, type: req.type, duplicate: done.duplicate }, 'audit event stored');
    return { eventId: draft.eventId, chain, seq: stored.seq, hash: stored.hash, duplicate: done.duplicate };
  };
}

async function hostHead(store: ChainStore, hostId: string): Promise<AuditLink | undefined> {
  const chain = AUDIT_CHAINS.host(hostId);
  const tail = await readTail(store, chain);
  return tail === undefined ? undefined : { chain, seq: tail.seq, hash: tail.hash };
}

async function storedAt(nc: NatsConnection, streamSeq: number): Promise<{ seq: number; hash: string }> {
  const record = await readAt(nc, streamSeq);
  if (record === null) throw new Error(`audit message ${streamSeq} was acknowledged as a duplicate but cannot be read`);
  return linkOf(record, undefined);
}
