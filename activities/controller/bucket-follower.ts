import type { KV, KvEntry } from '@nats-io/kv';
import type { MsgHdrs } from '@nats-io/transport-node';
import { KvWatchInclude } from '@nats-io/kv';
import type { z } from 'zod';
import type { Logger } from 'pino';
import pLimit from 'p-limit';
import { RefitError } from '../../schemas/errors.js';
import { forwardedBy } from '../origin.js';

type Listener<T> = (value: T) => void;

/** A value as the follower holds it: with the time the NATS server stored it, which its writer cannot set. */
export type Received<T> = T & { receivedAt: string };

/** Each key of a followed bucket belongs to the host named by its first token: `<hostId>` or `<hostId>.<…>`. */
const hostOfKey = (key: string) => key.split('.', 1)[0];

export class WaitTimeoutError extends RefitError {}

/**
 * Keys someone waits on are also read directly this often, and a keepAll follower whose watch has
 * been silent this long reads every key. The watch is an ordered consumer on one server: when a
 * cluster loses that node, the client notices only after two missed idle heartbeats (5 s each,
 * 30 s each once it has been recreated) and then makes a new consumer, which the server may place
 * on the lost node again. Direct gets are answered by any replica, so a waiting activity sees its
 * result, and the inventory stays fresh, within this however long the watch takes
 * (docs/RELIABILITY.md, "NATS node loss").
 */
export const RECHECK_EVERY_MS = 3_000;
/** Direct gets in flight at once during a recheck. */
const RECHECKS_IN_FLIGHT = 50;

/**
 * One watch over a whole KV bucket, shared by every activity of the process, so that a thousand
 * hosts in flight cost one consumer, not a thousand. The buckets it follows are keyed by host and
 * written by the hosts themselves (presence, results), so an entry is taken only when it names the
 * host its key belongs to: a host can write only its own keys, but it can write anything in them.
 * Entries that fail their schema or name another host are logged and skipped; the follower keeps
 * running.
 */
export class BucketFollower<S extends z.ZodType<{ hostId: string }>> {
  private readonly latest = new Map<string, Received<z.output<S>>>();
  private readonly listeners = new Map<string, Set<Listener<Received<z.output<S>>>>>();
  private stopped = false;
  private iterator: { stop(): void } | undefined;
  private recheckTimer: NodeJS.Timeout | undefined;
  private rechecking = false;
  /** When the watch last delivered anything. */
  private lastWatched = Date.now();
  /** The newest revision delivered for each key someone waits on: a recheck and the watch never deliver one twice, or an older one after it. */
  private readonly revisions = new Map<string, number>();

  private constructor(
    private readonly kv: KV,
    private readonly schema: S,
    private readonly keepAll: boolean,
    private readonly log: Logger,
    private readonly recheckEveryMs: number,
    private readonly listKeys: (() => Promise<string[]>) | undefined,
  ) {}

  /** keepAll holds every key's latest value (inventory); otherwise only keys someone waits on are seen. */
  static async start<S extends z.ZodType<{ hostId: string }>>(
    kv: KV,
    schema: S,
    opts: {
      keepAll: boolean;
      log: Logger;
      recheckEveryMs?: number;
      /** Every key of the bucket without a consumer (bucketKeys): lets a keepAll follower read them all while its watch is silent. */
      listKeys?: () => Promise<string[]>;
    },
  ): Promise<BucketFollower<S>> {
    const every = opts.recheckEveryMs ?? RECHECK_EVERY_MS;
    const follower = new BucketFollower(kv, schema, opts.keepAll, opts.log, every, opts.listKeys);
    // A keepAll follower is returned only once it holds what the bucket held at start (delta 0 on
    // the ordered consumer), so an inventory read right after start is never half-loaded.
    let caughtUp!: () => void;
    const ready = new Promise<void>((resolve) => (caughtUp = resolve));
    if (!opts.keepAll || (await kv.status()).values === 0) caughtUp();
    const iter = await kv.watch({
      include: opts.keepAll ? KvWatchInclude.LastValue : KvWatchInclude.UpdatesOnly,
      ignoreDeletes: true,
    });
    follower.iterator = iter;
    follower.recheckTimer = setInterval(() => void follower.recheck(), every);
    follower.recheckTimer.unref();
    void (async () => {
      for await (const entry of iter) {
        follower.lastWatched = Date.now();
        follower.accept(entry.key, entry.value, entry.created, entry.revision, entryForwardedBy(entry));
        if (entry.delta === 0) caughtUp();
      }
    })().catch((err: unknown) => {
      if (!follower.stopped) opts.log.error({ err }, 'bucket watch ended');
    });
    await ready;
    return follower;
  }

  private parse(
    key: string,
    bytes: Uint8Array,
    stored: Date,
    forwarded: string | undefined,
  ): Received<z.output<S>> | undefined {
    if (forwarded !== undefined) {
      // Another identity had JetStream answer a request of its own onto this key (activities/origin.ts).
      this.log.warn(
        { key, header: forwarded },
        'ignored an entry JetStream handed on from elsewhere, not written by its host',
      );
      return undefined;
    }
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      this.log.warn({ key }, 'ignored an entry that is not JSON');
      return undefined;
    }
    const parsed = this.schema.safeParse(json);
    if (!parsed.success) {
      this.log.warn({ key, issues: parsed.error.issues.slice(0, 5) }, 'ignored an entry that fails its schema');
      return undefined;
    }
    const value = parsed.data;
    if (value.hostId !== hostOfKey(key)) {
      this.log.warn({ key, hostId: value.hostId }, "ignored an entry that names another host than its key's");
      return undefined;
    }
    return { ...value, receivedAt: stored.toISOString() };
  }

  private accept(key: string, bytes: Uint8Array, stored: Date, revision: number, forwarded: string | undefined): void {
    if (bytes.length === 0) return;
    const seen = this.revisions.get(key);
    if (seen !== undefined && revision <= seen) return;
    if (this.listeners.has(key)) this.revisions.set(key, revision);
    const value = this.parse(key, bytes, stored, forwarded);
    if (value === undefined) return;
    if (this.keepAll) this.latest.set(key, value);
    for (const fn of this.listeners.get(key) ?? []) fn(value);
  }

  /** Latest value of every key (keepAll followers only). */
  values(): Received<z.output<S>>[] {
    return [...this.latest.values()];
  }

  get(key: string): Received<z.output<S>> | undefined {
    return this.latest.get(key);
  }

  /** Read a key straight from the bucket. */
  async fetch(key: string): Promise<Received<z.output<S>> | undefined> {
    const entry = await this.kv.get(key);
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined;
    return this.parse(key, entry.value, entry.created, entryForwardedBy(entry));
  }

  /** Read every key someone waits on (every key, while a keepAll watch is silent), and take what the watch has not delivered yet. */
  private async recheck(): Promise<void> {
    if (this.rechecking || this.stopped) return;
    this.rechecking = true;
    try {
      const silent = Date.now() - this.lastWatched >= this.recheckEveryMs;
      const keys =
        this.keepAll && silent && this.listKeys !== undefined
          ? await this.listKeys().catch(() => [...this.listeners.keys()])
          : [...this.listeners.keys()];
      await pLimit(RECHECKS_IN_FLIGHT).map(keys, async (key) => {
        const entry = await this.kv.get(key).catch(() => null);
        if (entry?.operation === 'PUT')
          this.accept(key, entry.value, entry.created, entry.revision, entryForwardedBy(entry));
      });
    } finally {
      this.rechecking = false;
    }
  }

  /**
   * Resolve with the first value of `key` that satisfies `done`, including one already stored.
   * `onValue` sees every value on the way.
   */
  async waitFor(
    key: string,
    done: (v: Received<z.output<S>>) => boolean,
    opts: {
      onValue?: Listener<Received<z.output<S>>>;
      /** Told what the key held when the wait began (its own read), before onValue hears it. */
      onRead?: (value: Received<z.output<S>> | undefined) => void;
      signal?: AbortSignal;
      timeoutMs?: number;
    } = {},
  ): Promise<Received<z.output<S>>> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const set = this.listeners.get(key) ?? new Set();
      this.listeners.set(key, set);
      const finish = (fn: () => void) => {
        set.delete(listener);
        if (set.size === 0) {
          this.listeners.delete(key);
          this.revisions.delete(key);
        }
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const listener: Listener<Received<z.output<S>>> = (value) => {
        opts.onValue?.(value);
        if (done(value)) finish(() => resolve(value));
      };
      const onAbort = () => {
        const reason: unknown = opts.signal?.reason;
        finish(() => reject(reason instanceof Error ? reason : new Error('aborted')));
      };
      set.add(listener);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(
          () => finish(() => reject(new WaitTimeoutError(`no matching value for ${key}`))),
          opts.timeoutMs,
        );
      }
      // Registered first, read second: a value written in between is seen by one or the other.
      const known = this.keepAll ? this.latest.get(key) : undefined;
      if (known !== undefined) {
        opts.onRead?.(known);
        listener(known);
      } else
        this.fetch(key).then(
          (value) => {
            opts.onRead?.(value);
            if (value !== undefined && set.has(listener)) listener(value);
          },
          (err: unknown) => finish(() => reject(err instanceof Error ? err : new Error(String(err)))),
        );
    });
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.recheckTimer);
    this.iterator?.stop();
  }
}

/**
 * The headers of a KV entry, and how many of JetStream's hand-on headers the read that fetched it
 * added (a direct get answer adds one of each; see forwardedBy). nats.js does not expose them on
 * KvEntry; both of its entry kinds keep the message they came from (`sm`: a consumer delivery with
 * `headers`, or a message get or direct get answer with `header`, the latter knowing its `stream`).
 * Pinned by test/permissions.test.ts, which forwards a presence onto another host's key and
 * expects it ignored, and by every test that reads an honest presence.
 */
export function headersOf(entry: KvEntry): { headers: MsgHdrs | undefined; added: 0 | 1 } {
  const sm = (entry as unknown as { sm?: { headers?: MsgHdrs; header?: MsgHdrs; stream?: string } }).sm;
  if (sm === undefined) return { headers: undefined, added: 0 };
  if (sm.headers !== undefined) return { headers: sm.headers, added: 0 };
  return { headers: sm.header, added: typeof sm.stream === 'string' ? 1 : 0 };
}

/** The JetStream header that shows this entry was handed on rather than written by its host. */
export function entryForwardedBy(entry: KvEntry): string | undefined {
  const { headers, added } = headersOf(entry);
  return forwardedBy(headers, added);
}
