import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { PermissionViolationError, headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollHosts } from '../workers/dev/enroll.js';
import { BUCKETS, STREAMS, SUBJECTS, commandConsumer, inboxPrefix } from '../schemas/names.js';
import { HostPresence } from '../schemas/host.js';
import { BucketFollower } from '../activities/controller/bucket-follower.js';
import { chooseDestinations, selectTargets } from '../activities/controller/inventory.js';
import { identityOfHost } from '../workers/nats.js';
import { ensureHostConsumer } from '../workers/messaging.js';
import { readInventory } from '../workers/control/inventory.js';
import { checkCancelMessage, checkCommandMessage, checkConfirmMessage } from '../workers/host/command-message.js';
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
    expect((await jetstreamManager(cli).then((m) => m.streams.info(STREAMS.audit))).config.name).toBe(STREAMS.audit);
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

  it('may ask a host for a dry run (refit rollout plan), and still cannot send it a step', async () => {
    const cli = await stack.connectAsCli();
    const hostD = uniqueHostId('perm-d');
    await enrollHosts(stack.home, [hostD]);
    const asD = await stack.connectAsHost(hostD);
    asD.subscribe(SUBJECTS.preview(hostD), { callback: (_err, m) => void m.respond('what would change') });
    await asD.flush();
    const answer = await cli.request(SUBJECTS.preview(hostD), '{"steps":[]}', { timeout: 5_000 });
    expect(answer.string()).toBe('what would change');
    // A real step, however it is dressed, stays refused.
    await refused(jetstream(cli).publish(SUBJECTS.command(hostD), JSON.stringify({ kind: 'ovs-convert' })));
    await publishRefused(cli, SUBJECTS.command(hostD));
    // The host answers only the request it received: it cannot write into the CLI's inbox by itself.
    await publishRefused(asD, `${inboxPrefix('cli')}.forged`);
    // Another host can neither ask it for a dry run nor listen in.
    await publishRefused(asA, SUBJECTS.preview(hostD));
    await subscriptionRefusal(asA, SUBJECTS.preview(hostD));
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

/** The outcome of a JetStream publish: its ack, or the error the server answered with. */
async function outcome(attempt: Promise<unknown>): Promise<string> {
  return attempt.then(
    () => 'stored',
    (e: unknown) => (e instanceof Error ? e.message : String(e)),
  );
}

function rollup(kind: 'all' | 'sub') {
  const h = headers();
  h.set('Nats-Rollup', kind);
  return h;
}

describe('the CLI, beyond reading', () => {
  it('cannot read pending commands: no info, message get or direct get on the command stream', async () => {
    const cli = await stack.connectAsCli();
    const hostE = uniqueHostId('perm-e');
    await ensureHostConsumer(controller, hostE);
    await jetstream(controller).publish(SUBJECTS.command(hostE), JSON.stringify({ secret: 'pending' }));
    const cliJsm = await jetstreamManager(cli);
    await refused(cliJsm.streams.info(STREAMS.commands));
    await refused(cliJsm.streams.getMessage(STREAMS.commands, { last_by_subj: SUBJECTS.command(hostE) }));
    await refused(cliJsm.direct.getMessage(STREAMS.commands, { last_by_subj: SUBJECTS.command(hostE) }));
    await refused(cliJsm.consumers.info(STREAMS.commands, commandConsumer(hostE)));
    expect(await pendingFor(hostE)).toBe(1);
  });

  it('creates no consumer of any kind, on any stream, so it cannot choose where JetStream delivers', async () => {
    const cli = await stack.connectAsCli();
    const cliJsm = await jetstreamManager(cli);
    for (const stream of [STREAMS.audit, `KV_${BUCKETS.hosts}`, `KV_${BUCKETS.results}`]) {
      await refused(cliJsm.consumers.add(stream, { ack_policy: AckPolicy.Explicit }));
      await refused(cliJsm.consumers.add(stream, { durable_name: 'cli-pull', ack_policy: AckPolicy.Explicit }));
      await refused(
        cliJsm.consumers.add(stream, {
          name: 'cli-push',
          deliver_subject: SUBJECTS.cancel('x'),
          ack_policy: AckPolicy.None,
        }),
      );
    }
    expect((await jsm.consumers.list(STREAMS.audit).next()).map((c) => c.name)).not.toContain('cli-push');
  });

  it("cannot pause, change, reset or delete a host's consumer", async () => {
    const cli = await stack.connectAsCli();
    const hostF = uniqueHostId('perm-f');
    await ensureHostConsumer(controller, hostF);
    const cliJsm = await jetstreamManager(cli);
    const consumer = commandConsumer(hostF);
    await refused(cliJsm.consumers.pause(STREAMS.commands, consumer, new Date(Date.now() + 3_600_000)));
    await refused(cliJsm.consumers.update(STREAMS.commands, consumer, { max_ack_pending: 100 }));
    await refused(cliJsm.consumers.delete(STREAMS.commands, consumer));
    await refused(cli.request(`$JS.API.CONSUMER.RESET.${STREAMS.commands}.${consumer}`, '{}', { timeout: 5_000 }));
    const info = await jsm.consumers.info(STREAMS.commands, consumer);
    expect({ paused: info.paused ?? false, maxAckPending: info.config.max_ack_pending }).toEqual({
      paused: false,
      maxAckPending: 1,
    });
  });

  it('publishes nothing a host listens to, nor to the audit stream', async () => {
    const cli = await stack.connectAsCli();
    const victim = uniqueHostId('cli-pub');
    for (const subject of [
      SUBJECTS.cancel(victim),
      SUBJECTS.confirm(victim),
      SUBJECTS.command(victim),
      `${inboxPrefix(identityOfHost(victim))}.x`,
      SUBJECTS.auditController,
      SUBJECTS.auditHost(victim),
    ])
      expect((await publishRefused(cli, subject)).subject).toBe(subject);
  });

  it("cannot get a message of its choosing taken as the controller's on a host's cancel or confirm subject", async () => {
    // The attack of issue 13: append a forged request, then have JetStream deliver it to the host.
    const victim = uniqueHostId('cli-push');
    const asVictim = await stack.connectAsHost(victim);
    const arrived = collect(asVictim, [SUBJECTS.cancel(victim), SUBJECTS.confirm(victim)]);
    await asVictim.flush();
    const cli = await stack.connectAsCli();
    const forged = JSON.stringify({ commandId: 'wf/run/1', reason: 'forged' });
    await refused(jetstream(cli).publish(SUBJECTS.auditController, forged));
    const cliJsm = await jetstreamManager(cli);
    for (const deliver of [SUBJECTS.cancel(victim), SUBJECTS.confirm(victim)])
      await refused(
        cliJsm.consumers.add(STREAMS.audit, {
          deliver_subject: deliver,
          deliver_policy: DeliverPolicy.Last,
          ack_policy: AckPolicy.None,
        }),
      );
    // What it can still do: have a stored message (here a host's presence) answered onto the subject.
    await jetstream(asVictim).publish(`$KV.${BUCKETS.hosts}.${victim}`, forged);
    for (const subject of [SUBJECTS.cancel(victim), SUBJECTS.confirm(victim)])
      cli.publish(`$JS.API.DIRECT.GET.KV_${BUCKETS.hosts}.$KV.${BUCKETS.hosts}.${victim}`, '', { reply: subject });
    await cli.flush();

    const messages = await arrived.after(2, 5_000);
    expect(messages.map(hostsVerdict)).toEqual([
      expect.stringMatching(/^refused: not from the controller: it carries the Nats-Stream header/),
      expect.stringMatching(/^refused: not from the controller: it carries the Nats-Stream header/),
    ]);
  });
});

/** What the host worker makes of a message on its cancel or confirm subject (workers/host/command-message.ts). */
function hostsVerdict(m: Msg): string {
  const checked = m.subject.startsWith('refit.cancel.') ? checkCancelMessage(m) : checkConfirmMessage(m);
  return checked.ok ? 'taken' : `refused: ${checked.reason}`;
}

/** Every message arriving on `subjects`, read once at least `count` arrived or `ms` passed. */
function collect(nc: NatsConnection, subjects: string[]) {
  const got: Msg[] = [];
  for (const subject of subjects) nc.subscribe(subject, { callback: (_err, m) => void got.push(m) });
  return {
    async after(count: number, ms: number): Promise<Msg[]> {
      const deadline = Date.now() + ms;
      while (got.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      return [...got];
    },
  };
}

describe('a host, through the reply subject of its own request', () => {
  // nats-server answers a request on whatever reply subject the requester names, without checking
  // it against the requester's permissions, and JetStream stores such an answer when the subject is
  // a stream's. A host can so have JetStream put a message of its own on another host's subjects;
  // the readers refuse what JetStream handed on (activities/origin.ts).
  it("cannot have a message of its own taken as the controller's on another host's cancel or confirm subject", async () => {
    const [forger, victim] = [uniqueHostId('reply-a'), uniqueHostId('reply-b')];
    const asForger = await stack.connectAsHost(forger);
    await ensureHostConsumer(controller, forger);
    const asVictim = await stack.connectAsHost(victim);
    const arrived = collect(asVictim, [SUBJECTS.cancel(victim), SUBJECTS.confirm(victim)]);
    await asVictim.flush();
    const forged = JSON.stringify({ commandId: 'wf/run/1' });
    await jetstream(asForger).publish(SUBJECTS.auditHost(forger), forged);
    await jetstream(controller).publish(SUBJECTS.command(forger), forged);
    const directGet = `$JS.API.DIRECT.GET.${STREAMS.audit}.${SUBJECTS.auditHost(forger)}`;
    asForger.publish(directGet, '', { reply: SUBJECTS.cancel(victim) });
    asForger.publish(directGet, '', { reply: SUBJECTS.confirm(victim) });
    // Its own next command, delivered on the other host's confirm subject.
    asForger.publish(nextSubject(forger), JSON.stringify({ batch: 1, no_wait: true }), {
      reply: SUBJECTS.confirm(victim),
    });
    // A publish ack, and the answer to an API request.
    asForger.publish(SUBJECTS.auditHost(forger), forged, { reply: SUBJECTS.confirm(victim) });
    asForger.publish('$JS.API.INFO', '', { reply: SUBJECTS.cancel(victim) });
    await asForger.flush();

    const messages = await arrived.after(5, 5_000);
    expect(messages).toHaveLength(5);
    expect(messages.map(hostsVerdict).filter((v) => v === 'taken')).toEqual([]);
    // The controller's own confirmation is taken, so the check can tell them apart.
    controller.publish(SUBJECTS.confirm(victim), forged);
    expect((await arrived.after(6, 5_000)).slice(5).map(hostsVerdict)).toEqual(['taken']);
  });

  it("cannot put a command of its own into another host's queue", async () => {
    const [forger, victim] = [uniqueHostId('cmd-a'), uniqueHostId('cmd-b')];
    const asForger = await stack.connectAsHost(forger);
    await ensureHostConsumer(controller, victim);
    const command = { commandId: 'wf/run/9', hostId: victim, kind: 'verify', mode: 'apply' };
    await jetstream(asForger).publish(SUBJECTS.auditHost(forger), JSON.stringify(command));
    asForger.publish(`$JS.API.DIRECT.GET.${STREAMS.audit}.${SUBJECTS.auditHost(forger)}`, '', {
      reply: SUBJECTS.command(victim),
    });
    await asForger.flush();
    await until(async () => (await pendingFor(victim)) === 1, 5_000);
    const own = await jetstream(await stack.connectAsHost(victim)).consumers.get(
      STREAMS.commands,
      commandConsumer(victim),
    );
    const delivered = await own.next({ expires: 5_000 });
    expect(delivered).not.toBeNull();
    const checked = checkCommandMessage(delivered as JsMsg, victim);
    expect(checked).toMatchObject({ ok: false, forwarded: true, reason: expect.stringMatching(/Nats-Stream/) });
    delivered?.term();
  });

  it("cannot have a presence of its own taken as another host's", async () => {
    const [forger, victim] = [uniqueHostId('pres-a'), uniqueHostId('pres-b')];
    const asForger = await stack.connectAsHost(forger);
    await jetstream(asForger).publish(SUBJECTS.auditHost(forger), JSON.stringify(presenceOf(victim)));
    asForger.publish(`$JS.API.DIRECT.GET.${STREAMS.audit}.${SUBJECTS.auditHost(forger)}`, '', {
      reply: `$KV.${BUCKETS.hosts}.${victim}`,
    });
    await asForger.flush();
    // JetStream stored it under the victim's key ...
    await until(async () => (await presence.get(victim)) !== null, 5_000);
    // ... and neither the controller nor `refit hosts` takes it.
    const warnings: string[] = [];
    const follower = await BucketFollower.start(presence, HostPresence, {
      keepAll: true,
      log: pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) }),
    });
    try {
      expect(follower.get(victim)).toBeUndefined();
      expect(await follower.fetch(victim)).toBeUndefined();
      expect(warnings.join('\n')).toMatch(/handed on from elsewhere/);
    } finally {
      follower.stop();
    }
    const inventory = await readInventory(await stack.connectAsCli());
    expect(inventory.hosts.map((h) => h.hostId)).not.toContain(victim);
    expect(inventory.invalid).toContain(victim);
  });
});

async function until(check: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a host cannot erase what other hosts wrote', () => {
  it("cannot wipe every host's presence with a roll-up on its own presence key", async () => {
    const [other, third] = [uniqueHostId('wipe-b'), uniqueHostId('wipe-c')];
    for (const h of [other, third])
      await jetstream(await stack.connectAsHost(h)).publish(`$KV.${BUCKETS.hosts}.${h}`, 'here');

    const attempt = await outcome(
      jetstream(asA).publish(`$KV.${BUCKETS.hosts}.${hostA}`, 'rolled up', { headers: rollup('all') }),
    );

    expect((await presence.get(other))?.string()).toBe('here');
    expect((await presence.get(third))?.string()).toBe('here');
    expect(attempt).toMatch(/rollup not permitted/);
  });

  it("cannot wipe every host's results with a roll-up on one of its own result keys", async () => {
    const other = uniqueHostId('wipe-r');
    await jetstream(await stack.connectAsHost(other)).publish(`$KV.${BUCKETS.results}.${other}.x`, 'done');

    const attempt = await outcome(
      jetstream(asA).publish(`$KV.${BUCKETS.results}.${hostA}.y`, 'rolled up', { headers: rollup('all') }),
    );

    expect((await results.get(`${other}.x`))?.string()).toBe('done');
    expect(attempt).toMatch(/rollup not permitted/);
  });

  it('cannot roll up its own audit subject, which would erase its own chain', async () => {
    await jetstream(asA).publish(SUBJECTS.auditHost(hostA), '{"n":1}');
    const attempt = await outcome(
      jetstream(asA).publish(SUBJECTS.auditHost(hostA), '{"n":2}', { headers: rollup('sub') }),
    );
    expect(attempt).toMatch(/rollup not permitted/);
  });

  it('meets buckets that refuse purges and message deletes, even from the controller', async () => {
    for (const stream of [`KV_${BUCKETS.hosts}`, `KV_${BUCKETS.results}`, `KV_${BUCKETS.leases}`]) {
      const { config } = await jsm.streams.info(stream);
      expect({ stream, ...pick(config) }).toEqual({
        stream,
        allow_rollup_hdrs: false,
        deny_delete: true,
        deny_purge: true,
      });
    }
    await expect(jsm.streams.purge(`KV_${BUCKETS.hosts}`)).rejects.toThrow(/purge not permitted|not permitted/);
  });
});

function pick(c: { allow_rollup_hdrs?: boolean; deny_delete?: boolean; deny_purge?: boolean }) {
  return { allow_rollup_hdrs: c.allow_rollup_hdrs, deny_delete: c.deny_delete, deny_purge: c.deny_purge };
}

describe('between any two of five hosts', () => {
  const fleet = Array.from({ length: 5 }, (_, i) => uniqueHostId(`nxn${i}`));
  const connections = new Map<string, NatsConnection>();

  beforeAll(async () => {
    await enrollHosts(stack.home, fleet);
    for (const h of fleet) connections.set(h, await stack.connectAsHost(h));
  });

  /** Every write one identity could try on a host's subjects and queue; each must be refused by the server. */
  const writes = (victim: string) => {
    const consumer = commandConsumer(victim);
    return [
      SUBJECTS.command(victim),
      `$JS.ACK.${STREAMS.commands}.${consumer}.1.1.1.1.0`,
      `$KV.${BUCKETS.results}.${victim}.forged`,
      `$KV.${BUCKETS.hosts}.${victim}`,
      SUBJECTS.auditHost(victim),
      SUBJECTS.cancel(victim),
      SUBJECTS.confirm(victim),
      `${inboxPrefix(identityOfHost(victim))}.forged`,
      // The JetStream API paths that change a host's consumer or make one beside it.
      `$JS.API.CONSUMER.PAUSE.${STREAMS.commands}.${consumer}`,
      `$JS.API.CONSUMER.DELETE.${STREAMS.commands}.${consumer}`,
      `$JS.API.CONSUMER.RESET.${STREAMS.commands}.${consumer}`,
      `$JS.API.CONSUMER.UNPIN.${STREAMS.commands}.${consumer}`,
      `$JS.API.CONSUMER.DURABLE.CREATE.${STREAMS.commands}.${consumer}`,
      `$JS.API.CONSUMER.CREATE.${STREAMS.commands}.${consumer}`,
      `$JS.API.CONSUMER.CREATE.${STREAMS.commands}.spy.${SUBJECTS.command(victim)}`,
      `$JS.API.CONSUMER.CREATE.${STREAMS.audit}.spy.${SUBJECTS.auditHost(victim)}`,
      `$JS.API.CONSUMER.CREATE.KV_${BUCKETS.results}.spy.$KV.${BUCKETS.results}.${victim}.>`,
      `$JS.API.CONSUMER.CREATE.KV_${BUCKETS.hosts}.spy.$KV.${BUCKETS.hosts}.${victim}`,
    ];
  };
  /** Every read of a host's commands and results, through core NATS and the JetStream API. */
  const commandAndResultReads = (victim: string) => [
    `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.commands}.${commandConsumer(victim)}`,
    `$JS.API.CONSUMER.INFO.${STREAMS.commands}.${commandConsumer(victim)}`,
    `$JS.API.DIRECT.GET.KV_${BUCKETS.results}.$KV.${BUCKETS.results}.${victim}.forged`,
  ];
  /** Reads of a host's presence and audit events: another host's business, the CLI's to show. */
  const presenceAndAuditReads = (victim: string) => [
    `$JS.API.DIRECT.GET.KV_${BUCKETS.hosts}.$KV.${BUCKETS.hosts}.${victim}`,
    `$JS.API.DIRECT.GET.${STREAMS.audit}.${SUBJECTS.auditHost(victim)}`,
  ];
  /** API subjects that read every host at once (the request body chooses which): no host may use them. */
  const wholeStreamReads = [
    `$JS.API.STREAM.INFO.${STREAMS.commands}`,
    `$JS.API.STREAM.INFO.${STREAMS.audit}`,
    `$JS.API.STREAM.MSG.GET.${STREAMS.commands}`,
    `$JS.API.STREAM.MSG.GET.${STREAMS.audit}`,
    `$JS.API.STREAM.MSG.GET.KV_${BUCKETS.results}`,
    `$JS.API.STREAM.MSG.GET.KV_${BUCKETS.hosts}`,
    `$JS.API.DIRECT.GET.${STREAMS.commands}`,
    `$JS.API.DIRECT.GET.${STREAMS.audit}`,
    `$JS.API.DIRECT.GET.KV_${BUCKETS.results}`,
    `$JS.API.DIRECT.GET.KV_${BUCKETS.hosts}`,
    `$JS.API.CONSUMER.LIST.${STREAMS.commands}`,
    `$JS.API.CONSUMER.CREATE.${STREAMS.audit}`,
    `$JS.API.STREAM.PURGE.${STREAMS.audit}`,
    `$JS.API.STREAM.MSG.DELETE.${STREAMS.audit}`,
  ];
  const subscriptions = (victim: string) => [
    SUBJECTS.command(victim),
    `$KV.${BUCKETS.results}.${victim}.>`,
    `$KV.${BUCKETS.hosts}.${victim}`,
    SUBJECTS.auditHost(victim),
    SUBJECTS.cancel(victim),
    SUBJECTS.confirm(victim),
    `${inboxPrefix(identityOfHost(victim))}.>`,
  ];

  /** Each publish and subscription the server did not refuse, as "<actor> <op> <subject>". */
  async function allowedOf(actor: string, nc: NatsConnection, pubs: string[], subs: string[]): Promise<string[]> {
    const allowed: string[] = [];
    await Promise.all([
      ...pubs.map(async (subject) => {
        const refusal = await publishRefused(nc, subject).catch(() => undefined);
        if (refusal === undefined) allowed.push(`${actor} publish ${subject}`);
      }),
      ...subs.map(async (subject) => {
        const refusal = await subscriptionRefusal(nc, subject).catch(() => undefined);
        if (!(refusal instanceof PermissionViolationError)) allowed.push(`${actor} subscribe ${subject}`);
      }),
    ]);
    return allowed;
  }

  it("is refused every read and write of the other's consumer, keys, audit, cancel and confirm subjects", async () => {
    const allowed = (
      await Promise.all(
        fleet.map(async (actor) => {
          const nc = connections.get(actor) as NatsConnection;
          const found = await allowedOf(actor, nc, wholeStreamReads, []);
          for (const victim of fleet.filter((h) => h !== actor)) {
            const pubs = [...writes(victim), ...commandAndResultReads(victim), ...presenceAndAuditReads(victim)];
            found.push(...(await allowedOf(actor, nc, pubs, subscriptions(victim))));
          }
          return found;
        }),
      )
    ).flat();
    expect(allowed).toEqual([]);
    expect(fleet.filter((h) => connections.get(h)?.isClosed())).toEqual([]);
  });

  it('leaves the CLI no write on any host, no read of commands or results, and nothing to subscribe to', async () => {
    const cli = await stack.connectAsCli();
    const reads = [
      `$JS.API.STREAM.INFO.${STREAMS.commands}`,
      `$JS.API.STREAM.MSG.GET.${STREAMS.commands}`,
      `$JS.API.DIRECT.GET.${STREAMS.commands}`,
      `$JS.API.STREAM.INFO.KV_${BUCKETS.results}`,
      `$JS.API.DIRECT.GET.KV_${BUCKETS.results}`,
      `$JS.API.CONSUMER.CREATE.${STREAMS.audit}`,
      `$JS.API.CONSUMER.CREATE.KV_${BUCKETS.hosts}`,
    ];
    const found = await allowedOf('cli', cli, reads, []);
    for (const victim of fleet)
      found.push(
        ...(await allowedOf('cli', cli, [...writes(victim), ...commandAndResultReads(victim)], subscriptions(victim))),
      );
    expect(found).toEqual([]);
    expect(cli.isClosed()).toBe(false);
  });
});

/** A presence as a host could write it: not checked here, the controller is the one that must check. */
const presenceOf = (
  hostId: string,
  changes: Partial<Record<keyof HostPresence, unknown>> = {},
  facts: Partial<Record<keyof HostPresence['facts'], unknown>> = {},
) => ({
  hostId,
  driver: 'sim',
  simulated: true,
  agentVersion: 'test',
  labels: {},
  facts: {
    bootId: `boot-${hostId}`,
    bridge: { type: 'linux' },
    sriov: { supported: true, totalVfs: 7, numVfs: 0, iommu: true },
    vms: [],
    cordoned: false,
    capacity: { vmSlots: 8, vmsRunning: 0 },
    ...facts,
  },
  reportedAt: new Date().toISOString(),
  intervalMs: 1_000,
  ...changes,
});

describe("the controller's reading of presence", () => {
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
  let follower: BucketFollower<typeof HostPresence>;

  beforeAll(async () => {
    follower = await BucketFollower.start(presence, HostPresence, { keepAll: true, log });
  });
  afterAll(() => follower.stop());

  /** Publish as `writer` under its own key; once `marker` (a later honest host) is seen, the forged entry was too. */
  async function publishAs(writer: string, body: unknown): Promise<void> {
    await jetstream(await stack.connectAsHost(writer)).publish(`$KV.${BUCKETS.hosts}.${writer}`, JSON.stringify(body));
    const marker = uniqueHostId('marker');
    await jetstream(await stack.connectAsHost(marker)).publish(
      `$KV.${BUCKETS.hosts}.${marker}`,
      JSON.stringify(presenceOf(marker)),
    );
    await follower.waitFor(marker, () => true, { timeoutMs: 10_000 });
  }

  it("does not take a host's presence from under another host's key, and says so", async () => {
    const forger = uniqueHostId('forger');
    const victim = uniqueHostId('victim');
    await publishAs(forger, presenceOf(victim, { labels: { role: 'forged' } }));

    expect(selectTargets(follower.values(), { hosts: [victim] })).toMatchObject({ hostIds: [], missing: [victim] });
    expect(follower.get(forger)).toBeUndefined();
    expect(warnings.join('\n')).toContain(forger);
  });

  it('judges a host online by when its presence was stored, not by the time the host claims', async () => {
    const liar = uniqueHostId('future');
    const inAYear = new Date(Date.now() + 365 * 86_400_000).toISOString();
    await publishAs(liar, presenceOf(liar, { reportedAt: inAYear }));

    expect(selectTargets(follower.values(), { hosts: [liar] }).hostIds).toEqual([liar]);
    const tenSecondsOfSilence = Date.now() + 10_000;
    expect(selectTargets(follower.values(), { hosts: [liar] }, tenSecondsOfSilence)).toMatchObject({
      hostIds: [],
      missing: [liar],
    });
  });

  it('does not send every drained VM to a host that claims a billion free slots', async () => {
    const [source, honest, boaster] = [uniqueHostId('src'), uniqueHostId('honest'), uniqueHostId('boast')];
    const vms = [
      { name: 'vm1', state: 'running', sriov: false },
      { name: 'vm2', state: 'running', sriov: false },
    ];
    await publishAs(source, presenceOf(source, {}, { vms, capacity: { vmSlots: 8, vmsRunning: 2 } }));
    await publishAs(honest, presenceOf(honest));
    await publishAs(boaster, presenceOf(boaster, {}, { capacity: { vmSlots: 1_000_000_000, vmsRunning: 0 } }));

    const fleet = follower.values().filter((p) => [source, honest, boaster].includes(p.hostId));
    expect(chooseDestinations(fleet, source, [])).toEqual({ vm1: honest, vm2: honest });
    expect(warnings.join('\n')).toContain(boaster);
  });

  it('does not keep a host online for hours because it claims a long presence interval', async () => {
    const sleeper = uniqueHostId('sleeper');
    await publishAs(sleeper, presenceOf(sleeper, { intervalMs: 3_600_000 }));
    const tenMinutesLater = Date.now() + 10 * 60_000;
    expect(selectTargets(follower.values(), { hosts: [sleeper] }, tenMinutesLater).missing).toEqual([sleeper]);
  });
});
