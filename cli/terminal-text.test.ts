import { describe, expect, it } from 'vitest';
import { eventHash } from '../activities/audit/hash.js';
import type { VerifyReport } from '../activities/audit/verify.js';
import type { StoredAuditEvent } from '../schemas/audit.js';
import type { RolloutStatus } from '../schemas/rollout.js';
import type { InventoryRow } from '../workers/control/inventory.js';
import { renderEvent, renderLog, renderReport } from './audit-render.js';
import { cells } from './hosts.js';
import { renderStatus, summaryLine } from './render.js';
import { tableLines } from './table.js';
import { safeLines, terminalSafe } from './terminal-text.js';

/**
 * What a hostile host, plan or audit event could carry: a terminal title and colour change, a CR
 * that overwrites the line, a bell, a one-byte C1 CSI, a right-to-left override, an isolate, a
 * zero-width space, a line separator and a line break that would forge a line of its own.
 */
const HOSTILE = 'x\x1b]0;pwned\x07\x1b[31mred\rOVER\x9b2J\u202eevil\u2066\u200b\u2028\nFAKE LINE';
// eslint-disable-next-line no-control-regex
const ACTED_ON = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/u;

/** No character a terminal acts on, and no line of the output that the hostile text started. */
function expectSafe(output: string): void {
  expect(output).not.toMatch(ACTED_ON);
  expect(output.split('\n').some((line) => line.startsWith('FAKE LINE'))).toBe(false);
  expect(output).toContain('\\e]0;pwned\\x07\\e[31mred\\rOVER\\x9b2J\\u202eevil\\u2066\\u200b\\u2028\\nFAKE LINE');
}

describe('terminalSafe', () => {
  it('shows every character a terminal would act on as an escape', () => {
    expect(terminalSafe('a\x1b[2Jb\rc\x07d\x9be\u202ef\u2067g\ufeffh\x00i\x7f')).toBe(
      'a\\e[2Jb\\rc\\x07d\\x9be\\u202ef\\u2067g\\ufeffh\\x00i\\x7f',
    );
  });

  it('leaves printable text of any script alone, and escaping twice changes nothing more', () => {
    const text = 'vmbr0 → ovs: Überprüfung 検証 ✓ "quoted" \\e';
    expect(terminalSafe(text)).toBe(text);
    expect(terminalSafe(terminalSafe(HOSTILE))).toBe(terminalSafe(HOSTILE));
  });

  it('keeps the lines of output but not line breaks inside one', () => {
    expect(safeLines(['one', 'two\nthree'])).toBe('one\ntwo\\nthree');
  });
});

describe('every human-readable output escapes what hosts, plans and audit events say', () => {
  it('refit rollout status and watch: host errors, operators, reasons, messages', () => {
    const status: RolloutStatus = {
      id: 'r1',
      name: 'plan',
      state: 'paused',
      startedBy: HOSTILE,
      startedAt: '2026-11-22T03:00:00.000Z',
      missingHosts: [HOSTILE],
      waves: [{ index: 0, hosts: ['h1', 'h2'], state: 'running' }],
      hosts: [
        { hostId: 'h1', state: 'failed', step: 'verify', wave: 0, error: HOSTILE, attempts: 1 },
        { hostId: 'h2', state: 'pending', step: null, wave: 0, waitingFor: HOSTILE, attempts: 0 },
      ],
      counts: { pending: 1, running: 0, succeeded: 0, failed: 1, 'rolled-back': 0, held: 0, skipped: 0 },
      failureBudget: { maxFailedHosts: 0, failed: 1 },
      excludedHosts: [{ hostId: 'h3', reason: HOSTILE }],
      currentWave: 0,
      paused: { reason: HOSTILE, by: HOSTILE, at: '2026-11-22T03:01:00.000Z' },
      pendingApproval: null,
      approvals: [{ gate: 'afterCanary', wave: 0, by: HOSTILE, at: '2026-11-22T03:02:00.000Z' }],
      cancelled: { by: HOSTILE, at: '2026-11-22T03:03:00.000Z', reason: HOSTILE },
      nextWindowAt: null,
      runs: 0,
      message: HOSTILE,
    };
    expectSafe(renderStatus(status));
    expect(summaryLine({ ...status, id: HOSTILE })).not.toMatch(ACTED_ON);
  });

  it('refit hosts: facts and labels as a host reports them', () => {
    const row = {
      hostId: 'h1',
      online: true,
      simulated: false,
      presence: {
        hostId: 'h1',
        driver: HOSTILE,
        simulated: false,
        agentVersion: HOSTILE,
        labels: { role: HOSTILE },
        facts: {
          bootId: HOSTILE,
          bridge: { name: HOSTILE, type: 'linux', ports: [] },
          sriov: { nic: 'ens6', supported: true, totalVfs: 7, numVfs: 0, iommu: false },
          vms: [],
          cordoned: false,
          capacity: { vmSlots: 8, vmsRunning: 0 },
        },
        reportedAt: '2026-11-22T03:00:00.000Z',
        intervalMs: 3_000,
        receivedAt: '2026-11-22T03:00:00.000Z',
      },
    } as unknown as InventoryRow;
    expectSafe(tableLines([cells(row)], { header: ['H'] }).join('\n'));
  });

  it('refit audit log, show and verify: every field of an event, a command and its output', () => {
    const unsealed = {
      eventId: 'e1',
      at: '2025-06-01T10:00:00.000Z',
      actor: `host:${HOSTILE}`,
      type: `step.${HOSTILE}`,
      hostId: HOSTILE,
      step: HOSTILE,
      data: {
        argv: ['ip', HOSTILE],
        exitCode: 1,
        durationMs: 5,
        stdout: HOSTILE,
        stderr: HOSTILE,
        note: HOSTILE,
        before: { bridge: HOSTILE },
        after: { bridge: 'ovs' },
      },
      chain: 'refit.audit.host.h1',
      seq: 1,
    };
    const event = { ...unsealed, hash: eventHash(unsealed) } as unknown as StoredAuditEvent;
    const record = { subject: event.chain, streamSeq: 1, storedAt: event.at, event };
    expectSafe(renderLog([{ event, record }]));
    expectSafe(renderEvent({ event, record }));
    const failed = { ...event, type: 'step.failed', data: { error: { type: HOSTILE, message: HOSTILE } } };
    expectSafe(renderLog([{ event: failed, record }]));
    const report: VerifyReport = {
      ok: false,
      events: 1,
      chains: [{ chain: HOSTILE, hostId: HOSTILE, events: 1, firstProblem: { kind: 'edited', message: HOSTILE } }],
      problems: [{ kind: 'edited', chain: HOSTILE, message: HOSTILE }],
      signatures: { checked: true, verified: 0, unsigned: 1 },
    };
    expectSafe(renderReport(report, HOSTILE));
  });

  it('refit rollout list and every other table', () => {
    expectSafe(tableLines([[HOSTILE, 'running', HOSTILE]], { header: ['ROLLOUT', 'STATE', 'STARTED'] }).join('\n'));
  });
});
