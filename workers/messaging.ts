import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { nanos } from '@nats-io/transport-node';
import { BUCKETS, STREAMS, SUBJECTS, commandConsumer } from '../schemas/names.js';
import { MAX_EVENT_BYTES } from '../activities/audit/draft.js';
import { createLogger, type Logger } from './log.js';

/** How long JetStream drops a command re-sent with the same message id; past it, the host journal answers. */
export const COMMAND_DEDUP_WINDOW_MS = 10 * 60_000;
/** A host must ack, or say it is still working, within this; otherwise the command is redelivered. */
export const COMMAND_ACK_WAIT_MS = 30_000;

/**
 * The largest message each stream takes. A host can write only its own keys and audit subject, but
 * without these it could write 1 MB into each, as often as it likes. Each is at least four times the
 * largest a whole simulated campaign writes (test/nats-limits.test.ts measures it).
 */
export const MAX_MESSAGE_BYTES = {
  /** The host worker refuses larger commands itself (workers/host/command-message.ts). */
  commands: 64 * 1024,
  /** One command status: a campaign's largest is about 1 KB. */
  results: 64 * 1024,
  /** One host's presence: about 1 KB, up to ~100 KB for a host with MAX_VMS_PER_HOST VMs. */
  presence: 256 * 1024,
  leases: 64 * 1024,
  /** An audit event is fitted to MAX_EVENT_BYTES before the chain's own fields are added. */
  audit: MAX_EVENT_BYTES + 64 * 1024,
} as const;

/**
 * The results bucket as a whole. NATS cannot bound how many keys one host writes under its own
 * prefix; this bounds what a host flooding them can take from the server's disk, and with discard
 * "new" a full bucket refuses new writes rather than dropping other hosts' results.
 */
export const RESULTS_MAX_BYTES = 1024 * 1024 * 1024;

/**
 * What every KV bucket holds to: no roll-ups (a `Nats-Rollup: all` header on a host's own key would
 * erase every other key of the bucket), and no purge or message delete through the API, for anyone.
 * Refit never purges a KV key (kv.purge needs roll-ups). A server takes these on an existing stream,
 * but never takes deny_delete or deny_purge back (docs/security.md).
 */
const NO_ERASING = { allow_rollup_hdrs: false, deny_delete: true, deny_purge: true } as const;

type Settings = Partial<
  Pick<
    StreamConfig,
    | 'allow_rollup_hdrs'
    | 'deny_delete'
    | 'deny_purge'
    | 'max_msg_size'
    | 'max_bytes'
    | 'max_msgs_per_subject'
    | 'allow_direct'
  >
>;

/**
 * Create the streams and buckets refit uses, or bring existing ones to the settings above (logged,
 * or a warning naming what the server refused). Needs the controller identity.
 */
export async function ensureMessaging(
  nc: NatsConnection,
  replicas = 1,
  log: Logger = createLogger('messaging'),
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const streams: [Parameters<JetStreamManager['streams']['add']>[0], Settings][] = [
    [
      {
        name: STREAMS.commands,
        subjects: [SUBJECTS.commandsAll],
        retention: RetentionPolicy.Workqueue,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        duplicate_window: nanos(COMMAND_DEDUP_WINDOW_MS),
        max_age: nanos(30 * 24 * 3_600_000),
        num_replicas: replicas,
      },
      // Only the controller writes commands, and an operator may have to purge a host's stale queue.
      { max_msg_size: MAX_MESSAGE_BYTES.commands },
    ],
    [
      {
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
      },
      // No one, the controller included, removes an event: tampering can only add, and the chains show it.
      { ...NO_ERASING, max_msg_size: MAX_MESSAGE_BYTES.audit },
    ],
  ];
  for (const [config, settings] of streams) await ensureStream(jsm, config, settings, log);
  const kvm = new Kvm(nc);
  const buckets = [
    [BUCKETS.hosts, {}, { max_msg_size: MAX_MESSAGE_BYTES.presence }],
    [BUCKETS.leases, {}, { max_msg_size: MAX_MESSAGE_BYTES.leases }],
    [BUCKETS.operators, { history: 10 }, { max_msg_size: MAX_MESSAGE_BYTES.leases }],
    [
      BUCKETS.results,
      { ttl: 90 * 24 * 3_600_000 },
      // One message per key (history 1): a host rewriting its own result key replaces, never piles up.
      { max_msg_size: MAX_MESSAGE_BYTES.results, max_bytes: RESULTS_MAX_BYTES, max_msgs_per_subject: 1 },
    ],
  ] as const;
  for (const [bucket, options, limits] of buckets) {
    const stream = `KV_${bucket}`;
    const existed = await streamExists(jsm, stream);
    await kvm.create(bucket, { history: 1, storage: StorageType.File, replicas, ...options });
    // nats.js makes every bucket with roll-ups allowed; they are turned off at once. Direct get is
    // how the CLI reads a bucket: it may create no consumer (schemas/permissions.ts).
    await bringTo(jsm, stream, { ...NO_ERASING, allow_direct: true, ...limits }, log, existed);
  }
}

async function streamExists(jsm: JetStreamManager, name: string): Promise<boolean> {
  return jsm.streams.info(name).then(
    () => true,
    () => false,
  );
}

async function ensureStream(
  jsm: JetStreamManager,
  config: Parameters<JetStreamManager['streams']['add']>[0],
  settings: Settings,
  log: Logger,
): Promise<void> {
  if (await streamExists(jsm, config.name)) await bringTo(jsm, config.name, settings, log, true);
  else await jsm.streams.add({ ...config, ...settings });
}

/** Update an existing stream to `settings` where it differs; say what changed, or what the server refused. */
async function bringTo(
  jsm: JetStreamManager,
  stream: string,
  settings: Settings,
  log: Logger,
  existed: boolean,
): Promise<void> {
  const { config } = await jsm.streams.info(stream);
  const changes = (Object.keys(settings) as (keyof Settings)[]).filter((k) => config[k] !== settings[k]);
  if (changes.length === 0) return;
  const changed = Object.fromEntries(changes.map((k) => [k, { from: config[k], to: settings[k] }]));
  try {
    await jsm.streams.update(stream, settings);
  } catch (err) {
    log.warn(
      { stream, wanted: changed, err },
      `stream ${stream} keeps its settings: the server refused to change ${changes.join(', ')}; recreate the stream to apply them`,
    );
    return;
  }
  if (existed) log.info({ stream, changed }, `stream ${stream} brought to refit's settings: ${changes.join(', ')}`);
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
