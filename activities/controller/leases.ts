import type { KV } from '@nats-io/kv';
import { z } from 'zod';

const LEASE_KEY = 'maintenance';

const Leases = z.object({ holders: z.record(z.string(), z.object({ rolloutId: z.string(), since: z.string() })) });
type Leases = z.infer<typeof Leases>;

export interface LeaseRequest {
  hostId: string;
  rolloutId: string;
  /** The plan's fleet-wide limit: at most this many hosts under maintenance, across all rollouts. */
  limit: number;
}

/**
 * Hosts under maintenance across every rollout, kept in one KV entry that only changes by
 * compare-and-set on its revision: two controllers can never both take the last slot.
 */
export function createLeases(kv: KV) {
  async function change(fn: (leases: Leases) => boolean): Promise<boolean> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const entry = await kv.get(LEASE_KEY);
      const current: Leases =
        entry && entry.operation === 'PUT' && entry.length > 0 ? Leases.parse(entry.json()) : { holders: {} };
      const next = structuredClone(current);
      if (!fn(next)) return false;
      try {
        if (entry) await kv.update(LEASE_KEY, JSON.stringify(next), entry.revision);
        else await kv.create(LEASE_KEY, JSON.stringify(next));
        return true;
      } catch {
        // Someone else changed it first; read again.
      }
    }
    throw new Error('fleet-wide leases are contended; try again');
  }

  return {
    /** True when the host holds a lease now (also when it already held one). */
    async acquireLease(req: LeaseRequest): Promise<boolean> {
      let held = false;
      const changed = await change((l) => {
        if (l.holders[req.hostId]) {
          held = true;
          return false;
        }
        if (Object.keys(l.holders).length >= req.limit) return false;
        l.holders[req.hostId] = { rolloutId: req.rolloutId, since: new Date().toISOString() };
        return true;
      });
      return held || changed;
    },
    async releaseLease(req: { hostId: string }): Promise<void> {
      await change((l) => {
        if (!l.holders[req.hostId]) return false;
        delete l.holders[req.hostId];
        return true;
      });
    },
    async leaseHolders(): Promise<Leases['holders']> {
      const entry = await kv.get(LEASE_KEY);
      return entry && entry.operation === 'PUT' && entry.length > 0 ? Leases.parse(entry.json()).holders : {};
    },
  };
}
