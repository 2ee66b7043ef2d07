import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import pLimit from 'p-limit';
import { BUCKETS } from '../../schemas/names.js';
import { HostPresence, isOnline, presenceKeyProblem, type ReceivedPresence } from '../../schemas/host.js';
import { until } from '../../activities/poll.js';
import { entryForwardedBy } from '../../activities/controller/bucket-follower.js';
import { bucketKeys, retryTimeouts, SHORT_REQUEST_MS } from '../../activities/controller/bucket-keys.js';

/** How many presence entries are read at once. */
const READS_IN_FLIGHT = 100;

export interface InventoryRow {
  hostId: string;
  online: boolean;
  simulated: boolean;
  /** Another agent with the same host id writes this host's presence (the agent says so in it). */
  duplicate: boolean;
  presence: ReceivedPresence;
}

/**
 * Every host that ever reported, with whether it reports now (by when the server stored its
 * presence). Entries that fail the schema, name another host than their key, or were handed on by
 * JetStream rather than written by their host (activities/origin.ts) are listed as invalid.
 *
 * Reads with stream info and direct gets only: the CLI identity may create no consumer
 * (docs/security.md), which rules out a KV watch or `kv.keys()`.
 */
export function readInventory(nc: NatsConnection): Promise<{ hosts: InventoryRow[]; invalid: string[] }> {
  return retryTimeouts(() => readInventoryOnce(nc));
}

async function readInventoryOnce(nc: NatsConnection): Promise<{ hosts: InventoryRow[]; invalid: string[] }> {
  // Bound without a look at the stream: direct get must be asked for, or nats.js uses message get.
  const kv = await new Kvm(jetstream(nc, { timeout: SHORT_REQUEST_MS })).open(BUCKETS.hosts, { allow_direct: true });
  const keys = await bucketKeys(nc, BUCKETS.hosts);
  const entries = await pLimit(READS_IN_FLIGHT).map(keys, (k) => kv.get(k));
  const hosts: InventoryRow[] = [];
  const invalid: string[] = [];
  for (const entry of entries) {
    if (!entry || entry.operation !== 'PUT') continue;
    if (entryForwardedBy(entry) !== undefined) {
      invalid.push(entry.key);
      continue;
    }
    let parsed;
    try {
      parsed = HostPresence.safeParse(entry.json());
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success || presenceKeyProblem(entry.key, parsed.data) !== undefined) {
      invalid.push(entry.key);
      continue;
    }
    const presence = { ...parsed.data, receivedAt: entry.created.toISOString() };
    hosts.push({
      hostId: presence.hostId,
      online: isOnline(presence),
      simulated: presence.simulated,
      duplicate: presence.duplicateSeenAt !== undefined,
      presence,
    });
  }
  hosts.sort((a, b) => a.hostId.localeCompare(b.hostId));
  return { hosts, invalid };
}

export interface WaitForHostsOptions {
  timeoutMs?: number;
  /** The pause between two reads of the inventory (500 ms). */
  intervalMs?: number;
  /** Told how many of the hosts report, each time that number changes. */
  onProgress?: (online: number, of: number) => void;
}

const NAMED_IN_ERRORS = 20;

/**
 * Until every one of `hostIds` reports presence, as a rollout's target resolution will see it. The
 * timeout error names the hosts still missing (the first 20 of them).
 */
export async function waitForHostsOnline(
  nc: NatsConnection,
  hostIds: readonly string[],
  { timeoutMs = 60_000, intervalMs = 500, onProgress }: WaitForHostsOptions = {},
): Promise<void> {
  let missing: readonly string[] = hostIds;
  let told: number | undefined;
  await until(
    async () => {
      const online = new Set((await readInventory(nc)).hosts.filter((h) => h.online).map((h) => h.hostId));
      missing = hostIds.filter((id) => !online.has(id));
      const count = hostIds.length - missing.length;
      if (count !== told) onProgress?.(count, hostIds.length);
      told = count;
      return missing.length === 0;
    },
    {
      what: () => {
        const named = missing.slice(0, NAMED_IN_ERRORS).join(', ');
        const more = missing.length > NAMED_IN_ERRORS ? ` and ${missing.length - NAMED_IN_ERRORS} more` : '';
        return `${hostIds.length} hosts to report presence; ${missing.length} never did: ${named}${more}`;
      },
      timeoutMs,
      intervalMs,
    },
  );
}
