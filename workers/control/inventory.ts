import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { BUCKETS } from '../../schemas/names.js';
import { HostPresence, isOnline } from '../../schemas/host.js';

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
  const hosts: InventoryRow[] = [];
  const invalid: string[] = [];
  for (let i = 0; i < keys.length; i += 100) {
    const entries = await Promise.all(keys.slice(i, i + 100).map((k) => kv.get(k)));
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
  }
  hosts.sort((a, b) => a.hostId.localeCompare(b.hostId));
  return { hosts, invalid };
}
