import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prepareStep, StepFailedError, type StepAuditNote, type StepContext } from '../activities/host/driver.js';
import { SimDriver } from '../activities/host/sim/driver.js';
import { StepCommand } from '../schemas/command.js';
import type { StepKind } from '../schemas/steps.js';
import { NO_WAIT } from './plans.js';

let dir: string;
let seq = 0;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'refit-bench-sim-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const step = (kind: StepKind, params: Record<string, unknown> = {}) =>
  prepareStep(
    StepCommand.parse({
      commandId: `wf/run/${++seq}`,
      hostId: 'sim-001',
      kind,
      params,
      rolloutId: 'r1',
      workflowId: 'wf',
      issuedAt: new Date().toISOString(),
    }),
  );

function context(notes: StepAuditNote[]): StepContext {
  return {
    signal: new AbortController().signal,
    progress: () => undefined,
    log: pino({ level: 'silent' }),
    recovering: false,
    audit: (note) => notes.push(note),
  };
}

describe('the sim driver with a step command', () => {
  it('runs the program once per step, also when the step finds nothing to do, and records it for the audit trail', async () => {
    const marks = path.join(dir, 'marks');
    const sim = await SimDriver.open({
      hostId: 'sim-001',
      stateDir: path.join(dir, 'host'),
      stepMs: NO_WAIT,
      stepCommand: ['/usr/bin/env', 'mkdir', '-p', marks],
    });
    const notes: StepAuditNote[] = [];
    await sim.runStep(step('drain'), context(notes));
    await rm(marks, { recursive: true });
    const again = await sim.runStep(step('drain'), context(notes));
    expect(again.changed).toBe(false);
    expect(await readdir(dir)).toContain('marks');
    expect(notes).toEqual([
      expect.objectContaining({ type: 'step.command', argv: ['/usr/bin/env', 'mkdir', '-p', marks], exitCode: 0 }),
      expect.objectContaining({ type: 'step.command', exitCode: 0 }),
    ]);
  });

  it('fails the step before changing the host when the program exits non-zero', async () => {
    const sim = await SimDriver.open({
      hostId: 'sim-001',
      stateDir: dir,
      stepMs: NO_WAIT,
      stepCommand: ['/bin/false'],
    });
    const error = await sim.runStep(step('drain'), context([])).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StepFailedError);
    expect((error as StepFailedError).message).toBe('sim: /bin/false exited with 1');
    expect(sim.snapshot().cordoned).toBe(false);
  });
});
