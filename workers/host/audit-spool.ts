import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import { AUDIT_CHAINS, AuditDraft } from '../../schemas/audit.js';
import { readJsonFile, writeJsonAtomic } from '../../activities/files.js';
import type { ChainTail } from '../../activities/audit/hash.js';
import type { ChainStore } from '../../activities/audit/store.js';
import { appendToChain } from '../../activities/audit/writer.js';
import { RefitError } from '../../schemas/errors.js';
import type { Signer } from '../../activities/nkey.js';

/** The worker is stopping before its audit events were stored; they stay spooled for the next start. */
export class AuditNotStoredError extends RefitError {}

const Tail = z.object({
  chain: z.string(),
  seq: z.number().int().positive(),
  hash: z.string(),
  streamSeq: z.number().int().positive(),
  eventId: z.string().optional(),
});

const RETRY_MAX_MS = 5_000;
/** Conflicts on a host's own chain mean someone else wrote there; retried with backoff like an outage. */
const MAX_CONFLICTS = 5;
const FILE = /^(\d{12})\.json$/;

export interface HostAuditLogOptions {
  hostId: string;
  /** The host's audit directory: `tail.json` and `spool/`. */
  dir: string;
  store: ChainStore;
  log: Logger;
  /** The host's own nkey: every event is signed with it as it is sealed onto the chain. */
  signer?: Signer | undefined;
}

/**
 * The host's side of the audit trail. Events are first written to a spool in the host's state dir
 * (one file each, in order), then appended one at a time to the host's chain. The host is the only
 * writer of its chain and remembers its end in `tail.json`, so it appends without reading; only
 * when the stream says the chain moved (a lost acknowledgement, a lost state dir) does it read the
 * chain's last message, the one read its permissions allow.
 */
export class HostAuditLog {
  private readonly chain: string;
  private readonly pending = new Set<number>();
  private next: number;
  private appending: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private progress = new Set<() => void>();
  private stopping = new AbortController();
  private sending: Promise<void> | undefined;

  private constructor(
    private readonly o: HostAuditLogOptions,
    private tail: ChainTail | undefined,
    spooled: number[],
  ) {
    this.chain = AUDIT_CHAINS.host(o.hostId);
    for (const n of spooled) this.pending.add(n);
    this.next = Math.max(0, ...spooled) + 1;
  }

  static async open(o: HostAuditLogOptions): Promise<HostAuditLog> {
    await mkdir(path.join(o.dir, 'spool'), { recursive: true, mode: 0o700 });
    const stored = await readJsonFile(path.join(o.dir, 'tail.json'), Tail);
    const tail: ChainTail | undefined =
      stored?.chain === AUDIT_CHAINS.host(o.hostId)
        ? {
            seq: stored.seq,
            hash: stored.hash,
            streamSeq: stored.streamSeq,
            ...(stored.eventId !== undefined ? { eventId: stored.eventId } : {}),
          }
        : undefined;
    const spooled = (await readdir(path.join(o.dir, 'spool'))).flatMap((n) => {
      const m = FILE.exec(n);
      return m ? [Number(m[1])] : [];
    });
    return new HostAuditLog(o, tail, spooled);
  }

  /** Events waiting in the spool. */
  get backlog(): number {
    return this.pending.size;
  }

  /** Spool an event durably; it is sent in the order recorded. */
  record(draft: AuditDraft): Promise<void> {
    const checked = AuditDraft.parse(draft);
    const n = this.next++;
    const write = this.appending.then(async () => {
      await writeJsonAtomic(this.fileOf(n), checked);
      this.pending.add(n);
      this.wake?.();
    });
    this.appending = write.catch(() => undefined);
    return write;
  }

  /** Resolves once every event recorded before the call is stored; rejects if `giveUp` aborts first. */
  async flush(giveUp: AbortSignal): Promise<void> {
    await this.appending;
    const target = this.next - 1;
    const done = () => [...this.pending].every((n) => n > target);
    if (done()) return;
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (done()) finish(resolve);
      };
      const onAbort = () =>
        finish(() => reject(new AuditNotStoredError(`${this.pending.size} audit events not stored yet`)));
      const finish = (fn: () => void) => {
        this.progress.delete(check);
        giveUp.removeEventListener('abort', onAbort);
        fn();
      };
      if (giveUp.aborted) return onAbort();
      this.progress.add(check);
      giveUp.addEventListener('abort', onAbort);
    });
  }

  start(): void {
    this.sending ??= this.sendAll().catch((err: unknown) => this.o.log.error({ err }, 'audit sender stopped'));
  }

  /** Stop sending, after giving the spool up to `drainMs` to empty. What is left is sent at the next start. */
  async stop(drainMs = 2_000): Promise<void> {
    await this.flush(AbortSignal.timeout(drainMs)).catch(() => undefined);
    this.stopping.abort();
    this.wake?.();
    await this.sending;
  }

  private fileOf(n: number): string {
    return path.join(this.o.dir, 'spool', `${String(n).padStart(12, '0')}.json`);
  }

  private async sendAll(): Promise<void> {
    const { log } = this.o;
    let wait = 250;
    let failing = false;
    while (!this.stopping.signal.aborted) {
      const n = Math.min(...this.pending);
      if (!Number.isFinite(n)) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      try {
        await this.sendOne(n);
        if (failing) log.info({ backlog: this.pending.size }, 'audit events are being stored again');
        failing = false;
        wait = 250;
      } catch (err) {
        if (!failing)
          log.warn({ err, backlog: this.pending.size }, 'cannot store audit events; they stay spooled and are retried');
        failing = true;
        await sleep(wait, undefined, { signal: this.stopping.signal }).catch(() => undefined);
        wait = Math.min(wait * 2, RETRY_MAX_MS);
      }
    }
  }

  /** The chain's end was not where this host left it. Going back means events were removed from the stream. */
  private moved(believed: ChainTail | undefined, found: ChainTail | undefined, sending: string): void {
    const at = { believed, found, chain: this.chain };
    if (found?.eventId === sending)
      this.o.log.info(at, 'an audit event was stored though its acknowledgement was lost');
    else if (believed !== undefined && (found === undefined || found.streamSeq < believed.streamSeq)) {
      this.o.log.error(
        at,
        "this host's audit chain ends before the last event it stored: events were deleted from the stream",
      );
    } else if (believed !== undefined) this.o.log.warn(at, "someone else appended to this host's audit chain");
    else this.o.log.info(at, "found the end of this host's audit chain");
  }

  private async sendOne(n: number): Promise<void> {
    const file = this.fileOf(n);
    const parsed = await readJsonFile(file, AuditDraft).catch((err: unknown) => {
      this.o.log.error({ err, file }, 'an audit spool file is unreadable; it is set aside');
      return undefined;
    });
    if (parsed !== undefined) {
      const done = await appendToChain(this.o.store, this.chain, parsed, {
        tail: this.tail ?? null,
        maxConflicts: MAX_CONFLICTS,
        signer: this.o.signer,
        onMoved: (believed, found) => this.moved(believed, found, parsed.eventId),
      });
      if (done.tail !== undefined && done.tail.streamSeq !== this.tail?.streamSeq) {
        this.tail = done.tail;
        await writeJsonAtomic(path.join(this.o.dir, 'tail.json'), { chain: this.chain, ...done.tail });
      }
    } else {
      await rename(file, `${file}.unreadable`);
    }
    await rm(file, { force: true });
    this.pending.delete(n);
    for (const check of [...this.progress]) check();
  }
}
