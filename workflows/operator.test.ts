import { describe, expect, it } from 'vitest';
import { Plan } from '../schemas/plan.js';
import type { OperatorAction } from '../schemas/rollout.js';
import { ActionNotAudited, ActionRefused, checkOperatorName } from './operator.js';
import { RolloutMachine } from './rollout-machine.js';
import { newRollout } from './rollout-state.js';

const T0 = Date.UTC(2026, 0, 5, 12);
const alice = { by: 'alice@ops-laptop' };

/** A rollout of hosts a and b, the canary a done, waiting for an approval before b's wave. */
function atApprovalGate(): RolloutMachine {
  const plan = Plan.parse({
    apiVersion: 'refit/v1',
    kind: 'Campaign',
    name: 'operator-test',
    targets: { hosts: ['a', 'b'] },
    waves: { canary: 1, batchSize: 1 },
    approvals: { afterCanary: true },
    steps: [{ kind: 'drain' }, { kind: 'undrain' }],
  });
  const m = new RolloutMachine(plan, newRollout({ rolloutId: 'r', plan, startedBy: 'test' }, T0));
  m.targetsResolved({ hostIds: ['a', 'b'], missing: [], excluded: [], labels: {} });
  expect(m.next({ now: T0 })).toEqual({ kind: 'checkPresence', hostIds: ['a'] });
  m.presenceChecked(['a'], [], T0);
  expect(m.next({ now: T0 })).toEqual({ kind: 'start', hostId: 'a' });
  m.hostFinished('a', { hostId: 'a', state: 'succeeded', steps: [] });
  m.hostSettled('a');
  expect(m.next({ now: T0 })).toMatchObject({ kind: 'gate', approval: true });
  return m;
}

/** An audit store the test answers by hand: `stored()` or `refused(err)`, and what the rollout looked like when asked. */
function auditStore() {
  let settle: { resolve: () => void; reject: (err: unknown) => void } | undefined;
  const asked: unknown[] = [];
  return {
    asked,
    record: (seen: () => unknown) => () => {
      asked.push(structuredClone(seen()));
      return new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    },
    stored: () => settle?.resolve(),
    refused: (err: unknown) => settle?.reject(err),
  };
}
const flush = () => new Promise((r) => setTimeout(r, 0));

describe('the operator name', () => {
  it.each([['alice@ops-laptop'], ['ops@temporal-cli'], ['Jörg Müller'], ['x'.repeat(200)], ['🦊'.repeat(200)]])(
    'accepts %j',
    (by) => expect(() => checkOperatorName(by)).not.toThrow(),
  );

  it.each([
    [undefined, 'is missing'],
    [7, 'must be a string'],
    ['', 'is empty'],
    ['   ', 'is empty'],
    [' alice', 'starts or ends with a space'],
    ['alice\t', 'contains a control or invisible character'],
    ['alice\nbob', 'contains a control or invisible character'],
    ['alice\u001b[2J', 'contains a control or invisible character'],
    ['alice\u202egro', 'contains a control or invisible character'],
    ['ali\u200bce', 'contains a control or invisible character'],
    ['alice\u2028bob', 'contains a control or invisible character'],
    ['x'.repeat(201), 'is longer than 200 characters'],
  ])('refuses %j: it %s', (by, problem) => {
    expect(() => checkOperatorName(by)).toThrow(new ActionRefused(`the operator name (by) ${problem}`));
  });

  it('is checked for every action before anything else, as is the reason', () => {
    const m = atApprovalGate();
    for (const name of ['pause', 'resume', 'cancel', 'approve'] as const)
      expect(() => m.actions[name].check({ by: '' })).toThrow(/operator name \(by\) is empty/);
    for (const name of ['retryHost', 'skipHost'] as const)
      expect(() => m.actions[name].check({ by: '', hostId: 'a' })).toThrow(/operator name \(by\) is empty/);
    expect(() => m.actions.approve.check(undefined as unknown as OperatorAction)).toThrow(
      /expected \{ by, reason\? \}/,
    );
    expect(() => m.actions.approve.check({ by: 'alice', reason: 'x'.repeat(1_001) })).toThrow(/reason/);
    expect(() => m.actions.approve.check({ by: 'alice', reason: 'ok\u001b[2J' })).toThrow(/reason/);
    expect(() => m.actions.approve.check({ by: 'alice', reason: 'canary fine\n\tsee ticket' })).not.toThrow();
  });
});

describe('an operator action', () => {
  it('is stored in the audit trail before it changes the rollout', async () => {
    const m = atApprovalGate();
    const audit = auditStore();
    const done = m.actions.approve.perform(
      alice,
      audit.record(() => m.status),
    );
    await flush();
    expect(audit.asked).toEqual([expect.objectContaining({ approvals: [], pendingApproval: expect.anything() })]);
    expect(m.status.pendingApproval).not.toBeNull();
    audit.stored();
    await done;
    expect(m.status.pendingApproval).toBeNull();
    expect(m.status.approvals).toEqual([expect.objectContaining({ gate: 'after-canary', by: alice.by })]);
  });

  it('is not applied when its audit event cannot be stored, and says so', async () => {
    const m = atApprovalGate();
    const audit = auditStore();
    const done = m.actions.approve.perform(
      alice,
      audit.record(() => m.status),
    );
    await flush();
    audit.refused(new Error('Activity task failed', { cause: new Error('invalid audit event') }));
    await expect(done).rejects.toThrow(
      new ActionNotAudited('its audit event could not be stored: invalid audit event'),
    );
    expect(m.status).toMatchObject({ approvals: [], pendingApproval: { gate: 'after-canary' } });
    expect(m.approvalSettled).toBe(false);
  });

  it('by signal, is noted in the status when refused or when its audit event cannot be stored, and not applied', async () => {
    const m = atApprovalGate();
    const audit = auditStore();
    await m.actions.approve.tryPerform(
      { by: '' },
      audit.record(() => m.status),
    );
    expect(audit.asked).toEqual([]);
    expect(m.status.message).toBe('ignored a signal: approve refused: the operator name (by) is empty');

    const done = m.actions.approve.tryPerform(
      alice,
      audit.record(() => m.status),
    );
    await flush();
    audit.refused(new Error('the audit store refused the event'));
    await done;
    expect(m.status.message).toBe(
      'ignored a signal: approve not applied: its audit event could not be stored: the audit store refused the event',
    );
    expect(m.status).toMatchObject({ approvals: [], pendingApproval: { gate: 'after-canary' } });
  });

  it('holds the rollout while its audit event is being stored, and wakes it afterwards', async () => {
    const m = atApprovalGate();
    m.gatePassed({ kind: 'gate', wave: 1 });
    const audit = auditStore();
    const done = m.actions.pause.perform(
      { by: 'dave', reason: 'lunch' },
      audit.record(() => m.status),
    );
    await flush();
    const seen = m.version;
    expect(m.next({ now: T0 })).toEqual({ kind: 'wait' });
    audit.stored();
    await done;
    expect(m.version).toBeGreaterThan(seen);
    // Paused as of when it was checked: b never started.
    expect(m.next({ now: T0 })).toEqual({ kind: 'wait' });
    expect(m.status).toMatchObject({ state: 'paused', paused: { by: 'dave' } });
    expect(m.byHost.get('b')?.state).toBe('pending');
  });

  it('takes its turn: a second action is checked once the first is applied, and refused without an audit event', async () => {
    const m = atApprovalGate();
    const audit = auditStore();
    const first = m.actions.approve.perform(
      alice,
      audit.record(() => m.status),
    );
    const second = m.actions.approve.perform(
      { by: 'bob' },
      audit.record(() => m.status),
    );
    await flush();
    expect(audit.asked).toHaveLength(1);
    audit.stored();
    await first;
    await expect(second).rejects.toThrow(new ActionRefused('no approval is pending'));
    expect(audit.asked).toHaveLength(1);
    expect(m.status.approvals.map((a) => a.by)).toEqual([alice.by]);
  });

  it('that no longer applies once stored is not applied, and says it was recorded', async () => {
    const m = atApprovalGate();
    m.gatePassed({ kind: 'gate', wave: 1 });
    const audit = auditStore();
    const done = m.actions.skipHost.perform(
      { by: 'erin', hostId: 'b' },
      audit.record(() => m.status),
    );
    await flush();
    // A fleet-wide lease granted meanwhile starts the host without asking for a decision.
    m.leaseGranted('b');
    audit.stored();
    await expect(done).rejects.toThrow(
      new ActionRefused(
        'recorded in the audit trail, but no longer applies: host b is running; only pending, failed, held or rolled-back hosts can be skipped',
      ),
    );
    expect(m.byHost.get('b')?.state).toBe('running');
  });
});
