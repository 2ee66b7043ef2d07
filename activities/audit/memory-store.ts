import type { AuditRecord } from '../../schemas/audit.js';
import { recordOf } from './hash.js';
import { WrongLastSequenceError, type ChainStore } from './store.js';

/** Lost on the way: the store either never saw the append, or stored it and the answer was lost. */
export type Fault = 'unreachable' | 'ack-lost';

/**
 * An in-memory stand-in for the audit stream with JetStream's semantics: the expected last
 * subject sequence is checked before the message-id de-duplication, as nats-server does.
 * For unit tests of writers; the integration suites use the real server.
 */
export class MemoryChainStore implements ChainStore {
  readonly records: AuditRecord[] = [];
  private readonly ids = new Map<string, number>();
  readonly faults: Fault[] = [];

  async last(subject: string): Promise<AuditRecord | null> {
    return this.lastOf(subject);
  }

  private lastOf(subject: string): AuditRecord | null {
    return [...this.records].reverse().find((r) => r.subject === subject) ?? null;
  }

  async append(
    subject: string,
    body: string,
    msgId: string,
    expectLast: number,
  ): Promise<{ streamSeq: number; duplicate: boolean }> {
    const fault = this.faults.shift();
    if (fault === 'unreachable') throw new Error('connection lost');
    const last = this.lastOf(subject)?.streamSeq ?? 0;
    if (last !== expectLast) throw new WrongLastSequenceError(subject, last);
    const known = this.ids.get(msgId);
    if (known !== undefined) return { streamSeq: known, duplicate: true };
    this.put(subject, body, msgId);
    if (fault === 'ack-lost') throw new Error('timeout');
    return { streamSeq: this.records.length, duplicate: false };
  }

  /** Store without any check, as a forger with publish rights would. */
  put(subject: string, body: string, msgId?: string): void {
    const streamSeq = this.records.length + 1;
    this.records.push(recordOf(subject, streamSeq, new Date().toISOString(), new TextEncoder().encode(body)));
    if (msgId !== undefined) this.ids.set(msgId, streamSeq);
  }
}
