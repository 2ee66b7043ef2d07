import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { CommandStatus, resultKey } from '../../schemas/command.js';
import { BUCKETS, SUBJECTS } from '../../schemas/names.js';
import { simHostIds } from '../../workers/sim/fleet.js';
import { waitForOnline } from '../helpers/controller.js';
import { useSimFleet } from '../helpers/fleet.js';
import { HOSTILE_STRINGS, fuzzOptions } from './fuzz-options.js';

const hosts = simHostIds(2, `fz${randomBytes(2).toString('hex')}`);
const [host, other] = hosts as [string, string];
const suite = useSimFleet({ hosts, speed: 8 });
let nc: NatsConnection;
beforeAll(async () => {
  nc = await suite.stack.controllerConnection();
});

const encoder = new TextEncoder();
const RUNS = fuzzOptions(1_000);
/** A test's time: the stack's own, and the storm's, which grows with the runs (`npm run fuzz` runs more). */
const TIMEOUT_MS = 90_000 + RUNS.numRuns * 100;

/** JSON of every wrong shape, text that is not JSON, bytes that are not UTF-8, and huge messages. */
const payload: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v) => encoder.encode(JSON.stringify(v))),
  fc.constantFrom(...HOSTILE_STRINGS).map((s) => encoder.encode(s)),
  fc.uint8Array({ maxLength: 200 }),
  fc.constant(encoder.encode('[]'.repeat(20_000))),
  fc.constant(encoder.encode(`{"commandId":"${'x'.repeat(60_000)}"}`)),
  fc.constant(encoder.encode('{"a":'.repeat(5_000))),
);

/** A field of a command replaced by a value of a wrong kind, or dropped. */
const damagedField = fc.record({
  field: fc.constantFrom('params', 'rolloutId', 'workflowId', 'issuedAt', 'mode', 'applied', 'extra', 'kind'),
  value: fc.oneof(
    fc.constantFrom(...HOSTILE_STRINGS),
    fc.constant(undefined),
    fc.jsonValue({ maxDepth: 3 }),
    fc.constantFrom(1e308, -1, { confirmWithin: 3650 * 86_400_000 }, { vfs: 1e9 }, 'firmware-flash'),
  ),
});

let serial = 0;
/** A command of `host` with one field damaged: it names a command id, this host and a kind, so it can be answered. */
function namedCommand(field: string, value: unknown): { commandId: string; body: Record<string, unknown> } {
  const commandId = `fuzz/${host}/${++serial}`;
  const body: Record<string, unknown> = {
    commandId,
    hostId: host,
    kind: 'verify',
    mode: 'apply',
    params: { targets: [{ address: '10.77.0.1' }], count: 1 },
    rolloutId: 'fuzz',
    workflowId: 'fuzz',
    issuedAt: new Date().toISOString(),
  };
  if (field === 'kind' && (typeof value !== 'string' || !/^[a-z][a-z0-9-]{0,63}$/.test(value)))
    body.kind = 'firmware-flash';
  else if (field === 'params') body.params = { count: value ?? 'x', nic: value };
  else body[field] = value ?? null;
  if (field === 'extra') body.extra = value ?? 1;
  return { commandId, body };
}

async function statusOf(commandId: string): Promise<CommandStatus | undefined> {
  const kv = await new Kvm(nc).open(BUCKETS.results);
  const entry = await kv.get(resultKey(host, commandId));
  return entry?.operation === 'PUT' ? CommandStatus.parse(entry.json()) : undefined;
}

/** A rollout run after the storm: nothing was lost, host and controller still work. */
async function stillWorks(): Promise<void> {
  await waitForOnline(suite.config, hosts);
  const { result } = await suite.controller.runRollout(`apiVersion: refit/v1
kind: Campaign
name: after-storm
targets: { hosts: [${host}] }
waves: { canary: 0 }
steps:
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 3 }
`);
  expect(result.state, JSON.stringify(result.hosts)).toBe('completed');
}

describe('a thousand malformed messages on each subject a host or the controller reads', () => {
  it(
    'commands: each one that names a command of the host is answered failed with its reason; the rest are dropped',
    async () => {
      const js = jetstream(nc);
      const answered: string[] = [];
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            payload.map((p) => ({ raw: p })),
            damagedField,
          ),
          async (m) => {
            const named = 'raw' in m ? undefined : namedCommand(m.field, m.value);
            try {
              await js.publish(SUBJECTS.command(host), 'raw' in m ? m.raw : JSON.stringify(named?.body), {
                msgID: named?.commandId ?? `fuzz-raw-${++serial}`,
              });
            } catch (err) {
              // Larger than the command stream takes (64 KiB): the server refuses it; it never reaches the host.
              expect(String(err)).toMatch(/message size exceeds maximum allowed/);
              return;
            }
            if (named) answered.push(named.commandId);
          },
        ),
        RUNS,
      );
      // The host answers them one by one; every named one gets a failed status with a reason.
      const deadline = Date.now() + TIMEOUT_MS / 2;
      let last: CommandStatus | undefined;
      for (const commandId of answered) {
        for (;;) {
          last = await statusOf(commandId);
          if (last && last.state !== 'accepted' && last.state !== 'running') break;
          if (Date.now() > deadline) throw new Error(`no final status for ${commandId}; last ${JSON.stringify(last)}`);
          await sleep(20);
        }
        // A damaged field that happens to be harmless (a valid mode) runs; every other is refused with why.
        if (last.state === 'failed') expect(last.error?.message, commandId).toMatch(/\S/);
        else expect(last.state, commandId).toBe('succeeded');
      }
      expect(answered.length).toBeGreaterThan(RUNS.numRuns / 3);
      await stillWorks();
    },
    TIMEOUT_MS,
  );

  it(
    'confirm and cancel requests: dropped and logged, the host keeps running steps',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.boolean(), payload, async (confirm, data) => {
          nc.publish(confirm ? SUBJECTS.confirm(host) : SUBJECTS.cancel(host), data);
          return Promise.resolve();
        }),
        RUNS,
      );
      await nc.flush();
      await stillWorks();
    },
    TIMEOUT_MS,
  );

  it(
    "presence and results written in the hosts' keys: the controller skips them and keeps its inventory",
    async () => {
      const presence = await new Kvm(nc).open(BUCKETS.hosts);
      const results = await new Kvm(nc).open(BUCKETS.results);
      await fc.assert(
        fc.asyncProperty(fc.boolean(), payload, fc.constantFrom(host, other), async (isPresence, data, hostId) => {
          // A key of the host, or one that belongs to no host at all; the server refuses over-long ones.
          await (isPresence ? presence.put(hostId, data) : results.put(`${hostId}.fuzz${++serial}`, data)).catch(
            (err: unknown) => expect(String(err)).toMatch(/maximum|size|payload/i),
          );
        }),
        RUNS,
      );
      // The hosts' own next presence replaces the garbage; a rollout finds and runs the host.
      await stillWorks();
    },
    TIMEOUT_MS,
  );
});
