import { StoredAuditEvent, type AuditRecord } from '../../schemas/audit.js';

/** How the trail is read: from a storage time, or after a stream sequence (activities/audit/read.ts). */
export type TrailRead = (opts: { since?: Date; afterSeq?: number }) => Promise<AuditRecord[]>;

export interface HostEvents {
  /** The newest events of the host (in the rollout), oldest first, at most `maxEvents`. */
  events: StoredAuditEvent[];
  /** How many matching events there are in all, these included. */
  total: number;
}

interface Entry {
  /** The last stream sequence read for this page; 0 before anything was read. */
  lastSeq: number;
  events: StoredAuditEvent[];
  total: number;
}

/**
 * A host page's audit events (`refit ui`), kept per host and rollout between polls: the first read takes the
 * trail from `since` (the rollout's start, less a margin), each later one only what was stored after
 * the last stream sequence it saw. The audit stream only grows (REFIT_AUDIT refuses deletes), so
 * what was read stays true. The pages read least recently are forgotten past `maxPages`.
 */
export class HostEventCache {
  private readonly pages = new Map<string, Entry>();

  constructor(
    private readonly read: TrailRead,
    private readonly maxEvents: number,
    private readonly maxPages = 32,
  ) {}

  async events(hostId: string, rolloutId: string | undefined, since: Date | undefined): Promise<HostEvents> {
    const key = JSON.stringify([hostId, rolloutId ?? null]);
    const known = this.pages.get(key);
    const entry = known ?? { lastSeq: 0, events: [], total: 0 };
    const records = await this.read(
      entry.lastSeq > 0 ? { afterSeq: entry.lastSeq } : since !== undefined ? { since } : {},
    );
    // Another poll of the same page may have taken some of these already: only what is past it counts.
    const fresh = records.filter((r) => r.streamSeq > entry.lastSeq);
    const matching = fresh.flatMap((r) => {
      const parsed = StoredAuditEvent.safeParse(r.event);
      const e = parsed.success ? parsed.data : undefined;
      return e?.hostId === hostId && (rolloutId === undefined || e.rolloutId === rolloutId) ? [e] : [];
    });
    entry.lastSeq = Math.max(entry.lastSeq, fresh.at(-1)?.streamSeq ?? 0);
    entry.total += matching.length;
    entry.events = [...entry.events, ...matching].slice(-this.maxEvents);
    this.pages.delete(key);
    this.pages.set(key, entry);
    for (const oldest of this.pages.keys()) {
      if (this.pages.size <= this.maxPages) break;
      this.pages.delete(oldest);
    }
    return { events: entry.events, total: entry.total };
  }
}
