import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollHosts } from '../workers/dev/enroll.js';
import { BUCKETS, STREAMS, SUBJECTS, commandConsumer, inboxPrefix } from '../schemas/names.js';
import { identityOfHost } from '../workers/nats.js';
import { testStack, uniqueHostId } from './helpers/stack.js';

const stack = testStack();
afterAll(() => stack.closeAll());

const hostA = uniqueHostId('perm-a');
const hostB = uniqueHostId('perm-b');
let controller: NatsConnection;
let jsm: JetStreamManager;
let results: KV;
let presence: KV;
let asA: NatsConnection;

beforeAll(async () => {
  await enrollHosts(stack.home, [hostA, hostB]);
  controller = await stack.controllerConnection();
  jsm = await jetstreamManager(controller);
  results = await new Kvm(controller).open(BUCKETS.results);
  presence = await new Kvm(controller).open(BUCKETS.hosts);
  asA = await stack.connectAsHost(hostA);
});

const pullRequest = JSON.stringify({ batch: 1, expires: 1_000_000_000 });
const nextSubject = (hostId: string) => `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.commands}.${commandConsumer(hostId)}`;

/** Commands waiting in a host's queue, as the controller sees them. */
async function pendingFor(hostId: string): Promise<number> {
  return (await jsm.consumers.info(STREAMS.commands, commandConsumer(hostId))).num_pending;
}

/** The permission violation behind a rejection; nats.js wraps a refused request in a RequestError. */
async function refused(attempt: Promise<unknown>): Promise<PermissionViolationError> {
  const error = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof PermissionViolationError) return e;
  throw new Error(`expected a permission violation, got ${String(error)}`);
}

/** A plain publish the server refuses is reported only on the connection's status stream. */
async function publishRefused(nc: NatsConnection, subject: string): Promise<PermissionViolationError> {
  const statuses = nc.status();
  nc.publish(subject, 'forged');
  const refusal = (async () => {
    for await (const s of statuses) {
      if (s.type === 'error' && s.error instanceof PermissionViolationError && s.error.subject === subject)
        return s.error;
    }
    throw new Error('status stream ended');
  })();
  return within(refusal, 5_000, `no permission error for a publish to ${subject}`);
}

async function subscriptionRefusal(nc: NatsConnection, subject: string): Promise<void | Error> {
  return within(nc.subscribe(subject).closed, 5_000, `the subscription to ${subject} stayed open`);
}

async function firstMessage(nc: NatsConnection, subject: string, send: () => void): Promise<string> {
  const sub = nc.subscribe(subject, { max: 1 });
  await nc.flush();
  send();
  for await (const m of sub) return m.string();
  throw new Error(`the subscription to ${subject} ended without a message`);
}

function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('a host', () => {
  it("takes commands from its own queue but cannot pull from another host's", async () => {
    await jetstream(controller).publish(SUBJECTS.command(hostB), 'for B');
    await jetstream(controller).publish(SUBJECTS.command(hostA), 'for A');

    expect((await refused(asA.request(nextSubject(hostB), pullRequest, { timeout: 5_000 }))).subject).toBe(
      nextSubject(hostB),
    );
    await refused(jetstream(asA).consumers.get(STREAMS.commands, commandConsumer(hostB)));
    expect(await pendingFor(hostB)).toBe(1);

    const own = await jetstream(asA).consumers.get(STREAMS.commands, commandConsumer(hostA));
    const command = await own.next({ expires: 5_000 });
    expect(command?.string()).toBe('for A');
    await command?.ackAck();
    expect(await pendingFor(hostA)).toBe(0);
  });

  it("cannot listen to another host's commands, inbox or cancel subject", async () => {
    for (const subject of [
      SUBJECTS.command(hostB),
      `${inboxPrefix(identityOfHost(hostB))}.>`,
      SUBJECTS.cancel(hostB),
    ]) {
      const refusal = await subscriptionRefusal(asA, subject);
      expect(refusal, subject).toBeInstanceOf(PermissionViolationError);
    }
    expect(asA.isClosed()).toBe(false);
  });

  it('receives its own cancel and inbox messages', async () => {
    const cancel = SUBJECTS.cancel(hostA);
    expect(await firstMessage(asA, cancel, () => controller.publish(cancel, 'stop'))).toBe('stop');
    const inbox = `${inboxPrefix(identityOfHost(hostA))}.probe`;
    expect(await firstMessage(asA, inbox, () => controller.publish(inbox, 'reply'))).toBe('reply');
  });

  it("cannot write another host's result or presence keys", async () => {
    const forged = [`$KV.${BUCKETS.results}.${hostB}.x`, `$KV.${BUCKETS.hosts}.${hostB}`];
    for (const subject of forged) {
      expect((await refused(jetstream(asA).publish(subject, 'forged'))).subject).toBe(subject);
      expect((await publishRefused(asA, subject)).operation).toBe('publish');
    }
    await controller.flush();
    expect(await results.get(`${hostB}.x`)).toBeNull();
    expect(await presence.get(hostB)).toBeNull();
  });

  it('writes its own result and presence keys', async () => {
    await jetstream(asA).publish(`$KV.${BUCKETS.results}.${hostA}.x`, 'done');
    await jetstream(asA).publish(`$KV.${BUCKETS.hosts}.${hostA}`, 'here');
    expect((await results.get(`${hostA}.x`))?.string()).toBe('done');
    expect((await presence.get(hostA))?.string()).toBe('here');
  });

  it("appends to its own audit subject but not to another host's", async () => {
    await refused(jetstream(asA).publish(SUBJECTS.auditHost(hostB), '{}'));
    const ack = await jetstream(asA).publish(SUBJECTS.auditHost(hostA), '{}');
    expect(ack.stream).toBe(STREAMS.audit);
    const state = await jsm.streams.info(STREAMS.audit, { subjects_filter: SUBJECTS.auditHost('*') });
    expect(state.state.subjects?.[SUBJECTS.auditHost(hostA)]).toBe(1);
    expect(state.state.subjects?.[SUBJECTS.auditHost(hostB)]).toBeUndefined();
  });
});

describe('the CLI', () => {
  it("cannot send commands or take them from a host's queue", async () => {
    const cli = await stack.connectAsCli();
    expect((await jetstreamManager(cli).then((m) => m.streams.info(STREAMS.commands))).config.name).toBe(
      STREAMS.commands,
    );
    const hostC = uniqueHostId('perm-c');
    await enrollHosts(stack.home, [hostC]);

    await refused(jetstream(cli).publish(SUBJECTS.command(hostC), 'forged'));
    await publishRefused(cli, SUBJECTS.command(hostC));
    await refused(cli.request(nextSubject(hostC), pullRequest, { timeout: 5_000 }));
    await controller.flush();
    expect(await pendingFor(hostC)).toBe(0);

    await jetstream(controller).publish(SUBJECTS.command(hostC), 'real');
    expect(await pendingFor(hostC)).toBe(1);
  });

  it("cannot create or change a consumer on the command stream, so it cannot re-route a host's commands", async () => {
    const cli = await stack.connectAsCli();
    const hostD = uniqueHostId('perm-d');
    await enrollHosts(stack.home, [hostD]);
    const jsm = await jetstreamManager(cli);
    await refused(jsm.consumers.update(STREAMS.commands, commandConsumer(hostD), { ack_wait: 1_000_000_000 }));
    await refused(
      jsm.consumers.add(STREAMS.commands, { durable_name: 'cli-spy', filter_subject: SUBJECTS.command(hostD) }),
    );
    const controllerJsm = await jetstreamManager(controller);
    const info = await controllerJsm.consumers.info(STREAMS.commands, commandConsumer(hostD));
    expect(info.config.ack_wait).not.toBe(1_000_000_000);
    await expect(controllerJsm.consumers.info(STREAMS.commands, 'cli-spy')).rejects.toThrow();
  });
});
