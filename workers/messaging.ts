import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { nanos } from '@nats-io/transport-node';
import { BUCKETS, STREAMS, SUBJECTS, commandConsumer } from '../schemas/names.js';

/** How long JetStream drops a command re-sent with the same message id; past it, the host journal answers. */
export const COMMAND_DEDUP_WINDOW_MS = 10 * 60_000;
/** A host must ack, or say it is still working, within this; otherwise the command is redelivered. */
export const COMMAND_ACK_WAIT_MS = 30_000;

/** Create the streams and buckets refit uses, or leave them as they are. Needs the controller identity. */
export async function ensureMessaging(nc: NatsConnection, replicas = 1): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, {
    name: STREAMS.commands,
    subjects: [SUBJECTS.commandsAll],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(COMMAND_DEDUP_WINDOW_MS),
    max_age: nanos(30 * 24 * 3_600_000),
    num_replicas: replicas,
  });
  await ensureStream(jsm, {
    name: STREAMS.audit,
    subjects: [SUBJECTS.auditAll],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(60 * 60_000),
    max_age: 0,
    // Hosts read the end of their own chain by direct get (schemas/permissions.ts, decision 0005).
    allow_direct: true,
    num_replicas: replicas,
  });
  const kvm = new Kvm(nc);
  await kvm.create(BUCKETS.hosts, { history: 1, storage: StorageType.File, replicas });
  await kvm.create(BUCKETS.leases, { history: 1, storage: StorageType.File, replicas });
  await kvm.create(BUCKETS.results, { history: 1, storage: StorageType.File, replicas, ttl: 90 * 24 * 3_600_000 });
}

async function ensureStream(
  jsm: JetStreamManager,
  config: Parameters<JetStreamManager['streams']['add']>[0],
): Promise<void> {
  try {
    await jsm.streams.info(config.name);
  } catch {
    await jsm.streams.add(config);
  }
}

const knownConsumers = new WeakMap<NatsConnection, Set<string>>();

/** The durable pull consumer of one host's command queue; created once, then remembered. */
export async function ensureHostConsumer(nc: NatsConnection, hostId: string): Promise<void> {
  const known = knownConsumers.get(nc) ?? new Set<string>();
  knownConsumers.set(nc, known);
  if (known.has(hostId)) return;
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.add(STREAMS.commands, {
    durable_name: commandConsumer(hostId),
    filter_subject: SUBJECTS.command(hostId),
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(COMMAND_ACK_WAIT_MS),
    max_ack_pending: 1,
    max_deliver: -1,
  });
  known.add(hostId);
}
