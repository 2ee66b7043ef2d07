import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import { AUDIT_CHAINS, AuditDraft } from '../../schemas/audit.js';
import { StateFileError, readJsonFile } from '../../activities/files.js';
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

/** An event recorded by this process: sent from memory while its spool file is written. */
interface Recorded {
  draft: AuditDraft;
  /** Resolves true once its spool file is in place, false if it could not be written. */
  written: Promise<boolean>;
}

/**
 * The host's side of the audit trail. Events are written to a spool in the host's state dir (one
 * file each, numbered in order) and appended one at a time to the host's chain, sent from memory as
 * soon as they are recorded. The host is the only writer of its chain and remembers its end in
 * `tail.json`, so it appends without reading; only when the stream says the chain moved (a lost
 * acknowledgement, a lost or stale state dir) does it read the chain's last message, the one read
 * its permissions allow.
 *
 * What is flushed to disk, and when (docs/decisions/0023-cheaper-host-steps.md): a spool file is
 * written and renamed into place without fsync, which a killed process cannot tear; the files of
 * events still unsent when a step ends ({@link flush}) or the worker stops are fsynced then, in one
 * pass. `tail.json` is a cache of the chain's end, written once per batch of appends without fsync;
 * an unreadable or stale one only makes the host read its chain's end again.
 */
export class HostAuditLog {
  private readonly chain: string;
  private readonly pending = new Set<number>();
  private readonly recorded = new Map<number, Recorded>();
  private next: number;
  /** The tail last written to tail.json. */
  private savedTail: ChainTail | undefined;
  private wake: (() => void) | undefined;
  private progress = new Set<() => void>();
  private stopping = new AbortController();
  private sending: Promise<void> | undefined;
  /** The tidying after each batch of appends, one after another, off the sender's path. */
  private settling: Promise<void> = Promise.resolve();

  private constructor(
    private readonly o: HostAuditLogOptions,
    private tail: ChainTail | undefined,
    spooled: number[],
  ) {
    this.chain = AUDIT_CHAINS.host(o.hostId);
    this.savedTail = tail;
    for (const n of spooled) this.pending.add(n);
    this.next = Math.max(0, ...spooled) + 1;
  }

  static async open(o: HostAuditLogOptions): Promise<HostAuditLog> {
    await mkdir(path.join(o.dir, 'spool'), { recursive: true, mode: 0o700 });
    const stored = await readJsonFile(path.join(o.dir, 'tail.json'), Tail).catch((err: unknown) => {
      if (!(err instanceof StateFileError)) throw err;
      // Only a cache: the chain's end is read from the stream at the first append.
      o.log.warn({ err }, "the host's audit tail.json is unreadable; the chain's end is read from the stream");
      return undefined;
    });
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

  /**
   * Spool an event; it is sent in the order recorded, at once. Resolves when its spool file is in
   * place (not yet fsynced: {@link flush} does that for what is still unsent).
   */
  record(draft: AuditDraft): Promise<void> {
    const checked = AuditDraft.parse(draft);
    const n = this.next++;
    const write = writeSpoolFile(this.fileOf(n), `${JSON.stringify(checked)}\n`);
    this.recorded.set(n, {
      draft: checked,
      written: write.then(
        () => true,
        () => false,
      ),
    });
    this.pending.add(n);
    this.wake?.();
    return write;
  }

  /**
   * Resolves once every event recorded before the call is stored; rejects if `giveUp` aborts first.
   * Events still unsent are fsynced in the spool meanwhile, so that they outlive a power cut while
   * the stream does not have them; once it has them, nothing waits for the disk (decision 0042).
   */
  async flush(giveUp: AbortSignal): Promise<void> {
    const target = this.next - 1;
    const done = () => [...this.pending].every((n) => n > target);
    if (done()) return;
    this.syncSpool([...this.pending].filter((n) => n <= target)).catch((err: unknown) =>
      this.o.log.warn(
        { err },
        'cannot flush the audit spool to disk; events not stored yet may not outlive a power cut',
      ),
    );
    await this.stored(done, giveUp);
  }

  /** fsync the spool files of these events (those still there) and the spool directory, once. */
  private async syncSpool(ns: number[]): Promise<void> {
    await Promise.all(
      ns.map(async (n) => {
        if ((await this.recorded.get(n)?.written) === false) return;
        const handle = await open(this.fileOf(n), 'r').catch(() => undefined);
        if (handle === undefined) return;
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
      }),
    );
    const dir = await open(path.join(this.o.dir, 'spool'), 'r');
    // Some filesystems refuse fsync on a directory; the renames are still atomic there.
    try {
      await dir.sync().catch(() => undefined);
    } finally {
      await dir.close();
    }
  }

  private stored(done: () => boolean, giveUp: AbortSignal): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
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
    await this.syncSpool([...this.pending]).catch((err: unknown) =>
      this.o.log.error({ err }, 'cannot flush the audit spool to disk'),
    );
  }

  private fileOf(n: number): string {
    return path.join(this.o.dir, 'spool', `${String(n).padStart(12, '0')}.json`);
  }

  private async sendAll(): Promise<void> {
    const { log } = this.o;
    let wait = 250;
    let failing = false;
    /** Events stored since tail.json was last written; their spool files go once it is. */
    const sent: number[] = [];
    while (!this.stopping.signal.aborted) {
      const n = Math.min(...this.pending);
      if (!Number.isFinite(n)) {
        this.settleLater(sent.splice(0));
        if (this.pending.size > 0 || this.stopping.signal.aborted) continue;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      try {
        await this.sendOne(n);
        sent.push(n);
        if (failing) log.info({ backlog: this.pending.size }, 'audit events are being stored again');
        failing = false;
        wait = 250;
      } catch (err) {
        this.settleLater(sent.splice(0));
        if (!failing)
          log.warn({ err, backlog: this.pending.size }, 'cannot store audit events; they stay spooled and are retried');
        failing = true;
        await sleep(wait, undefined, { signal: this.stopping.signal }).catch(() => undefined);
        wait = Math.min(wait * 2, RETRY_MAX_MS);
      }
    }
    this.settleLater(sent);
    await this.settling;
  }

  /**
   * Tidy after a batch of appends while the next events are sent: a write of tail.json and the
   * removal of a few files no longer hold up an event recorded meanwhile (issue 17: the step's
   * result waited for its `started` event's tidying). One batch's tidying at a time, in order.
   */
  private settleLater(sent: number[]): void {
    if (sent.length === 0) return;
    this.settling = this.settling.then(() => this.settle(sent));
  }

  /**
   * After a batch of appends: the chain's new end to tail.json, then the stored events' spool files
   * removed (in that order, so that a file left behind is found stored, not appended twice).
   */
  private async settle(sent: number[]): Promise<void> {
    if (sent.length === 0) return;
    try {
      const tail = this.tail;
      if (tail !== undefined && tail.streamSeq !== this.savedTail?.streamSeq) {
        await writeSpoolFile(path.join(this.o.dir, 'tail.json'), `${JSON.stringify({ chain: this.chain, ...tail })}\n`);
        this.savedTail = tail;
      }
      await Promise.all(
        sent.map(async (n) => {
          const written = this.recorded.get(n)?.written;
          this.recorded.delete(n);
          if ((await written) !== false) await rm(this.fileOf(n), { force: true });
        }),
      );
    } catch (err) {
      this.o.log.warn({ err }, 'cannot tidy the audit spool; stored events may be sent again (they are stored once)');
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
    const parsed =
      this.recorded.get(n)?.draft ??
      (await readJsonFile(file, AuditDraft).catch((err: unknown) => {
        this.o.log.error({ err, file }, 'an audit spool file is unreadable; it is set aside');
        return undefined;
      }));
    if (parsed !== undefined) {
      const done = await appendToChain(this.o.store, this.chain, parsed, {
        tail: this.tail ?? null,
        maxConflicts: MAX_CONFLICTS,
        signer: this.o.signer,
        onMoved: (believed, found) => this.moved(believed, found, parsed.eventId),
      });
      if (done.tail !== undefined) this.tail = done.tail;
    } else {
      await rename(file, `${file}.unreadable`);
    }
    this.pending.delete(n);
    for (const check of [...this.progress]) check();
  }
}

/**
 * Write a file whole under a temporary name and rename it into place: a killed process leaves the
 * old or the new content. Not fsynced (see {@link HostAuditLog} for what is, and when).
 */
async function writeSpoolFile(file: string, text: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
