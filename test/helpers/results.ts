import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { CommandStatus } from '../../schemas/command.js';
import { BUCKETS } from '../../schemas/names.js';

/**
 * Every command status a host has written to the results bucket, read through `connection` (opened
 * at the first call): what each host itself says of its steps, not the rollout's bookkeeping.
 */
export function hostCommands(connection: () => Promise<NatsConnection>): (hostId: string) => Promise<CommandStatus[]> {
  let results: Promise<KV> | undefined;
  return async (hostId) => {
    results ??= connection().then((nc) => new Kvm(nc).open(BUCKETS.results));
    const kv = await results;
    const out: CommandStatus[] = [];
    for await (const key of await kv.keys(`${hostId}.>`)) {
      const entry = await kv.get(key);
      if (entry?.operation === 'PUT') out.push(CommandStatus.parse(entry.json()));
    }
    return out;
  };
}
