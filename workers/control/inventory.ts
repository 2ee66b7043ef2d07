import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import pLimit from 'p-limit';
import { BUCKETS } from '../../schemas/names.js';
import { HostPresence, isOnline } from '../../schemas/host.js';

/** How many presence entries are read at once. */
const READS_IN_FLIGHT = 100;

export interface InventoryRow {
  hostId: string;
  online: boolean;
  simulated: boolean;
  presence: HostPresence;
}

/** Every host that ever reported, with whether it reports now. Entries that fail the schema are skipped. */
export async function readInventory(nc: NatsConnection): Promise<{ hosts: InventoryRow[]; invalid: string[] }> {
  const kv = await new Kvm(nc).open(BUCKETS.hosts);
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  const entries = await pLimit(READS_IN_FLIGHT).map(keys, (k) => kv.get(k));
  const hosts: InventoryRow[] = [];
  const invalid: string[] = [];
  for (const entry of entries) {
    if (!entry || entry.operation !== 'PUT') continue;
    let parsed;
    try {
      parsed = HostPresence.safeParse(entry.json());
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success) invalid.push(entry.key);
    else
      hosts.push({
        hostId: parsed.data.hostId,
        online: isOnline(parsed.data),
        simulated: parsed.data.simulated,
        presence: parsed.data,
      });
  }
  hosts.sort((a, b) => a.hostId.localeCompare(b.hostId));
  return { hosts, invalid };
}
