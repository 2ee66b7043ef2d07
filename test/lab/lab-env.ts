import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import type { StepAuditNote, StepContext } from '../../activities/host/driver.js';
import { createLabDriver, type LabDriver } from '../../activities/host/lab/driver.js';
import type { LabShape } from '../../activities/host/lab/layout.js';
import type { LabState } from '../../activities/host/lab/state.js';
import { labDown } from '../../lab/down.js';
import { labPrerequisitesMissing, qemuMissing } from '../../lab/tools.js';
import { labUp } from '../../lab/up.js';
import { startLabWorkers, type LabWorkers } from '../../lab/workers.js';
import type { ReceivedCommand } from '../../schemas/command.js';
import type { StepKind } from '../../schemas/steps.js';
import { buildHostPackage } from '../../scripts/package-host.js';
import { quietLog } from '../helpers/controller.js';
import type { ProvidedStack } from '../setup/global-stack.js';

/** Why the lab tests cannot run here ('' when they can). Printed once, so a skip is never silent. */
export function labSkipReason(): string {
  const missing = labPrerequisitesMissing();
  if (missing.length === 0) return '';
  const reason = `lab tests skipped: need ${missing.join(', ')} (run as root after scripts/setup.sh)`;
  console.warn(reason);
  return reason;
}

/** Why the lab's QEMU guests cannot run here ('' when they can): qemu-system-x86 and the guest of scripts/setup-guest.sh. */
export function qemuSkipReason(): string {
  const missing = qemuMissing();
  if (missing.length === 0) return '';
  const reason = `lab QEMU tests skipped: need ${missing.join(', ')} (run scripts/setup-guest.sh as root)`;
  console.warn(reason);
  return reason;
}

/**
 * A lab of its own for one test file: its own dir and a namespace prefix unique to this run, so it
 * never meets a lab made by hand or by another test run on the same machine (labDown works by prefix).
 */
export function testLabDir(tag: string): { labDir: string; prefix: string } {
  return {
    labDir: path.join(mkdtempSync(path.join(os.tmpdir(), `refit-lab-${tag}-`)), 'lab'),
    prefix: `rf-${tag}${randomBytes(2).toString('hex')}-`,
  };
}

/**
 * A lab with a lab driver on each host, for the describe it is called in: `labUp(shape)` and a driver per
 * host (own state dir under the lab's temp dir, confirmation by probe) before all its tests; `labDown` and
 * the temp dir removed after them. `lab` is the running lab (read it inside tests and hooks).
 */
export function useLabDrivers(shape: LabShape, log: Logger) {
  const stateRoot = path.join(path.dirname(shape.labDir), 'state');
  const drivers = new Map<string, LabDriver>();
  let state: LabState | undefined;
  const lab = (): LabState => {
    if (state === undefined) throw new Error('the lab is not up (useLabDrivers: read it inside tests and hooks)');
    return state;
  };
  const stateDir = (id: string) => path.join(stateRoot, id);

  beforeAll(async () => {
    state = await labUp(shape);
    mkdirSync(stateRoot);
    for (const h of state.hosts)
      drivers.set(
        h.id,
        await createLabDriver({ hostId: h.id, labDir: shape.labDir, stateDir: stateDir(h.id), log, confirm: 'probe' }),
      );
  });

  afterAll(async () => {
    await labDown(shape);
    rmSync(path.dirname(shape.labDir), { recursive: true, force: true });
  });

  return {
    lab,
    host: (id: string) => lab().hosts.find((h) => h.id === id) as LabState['hosts'][number],
    driver: (id: string) => drivers.get(id) as LabDriver,
    stateDir,
  };
}

/**
 * A host agent on each of the lab's hosts, on the test stack: the host package built from this tree
 * (into the lab's temp dir), run as refit-host.service runs it; ovs-convert waits for the controller's
 * own confirmation over NATS (not the lab's probe).
 */
export async function startLabAgents(lab: LabState, stack: ProvidedStack): Promise<LabWorkers> {
  const built = await buildHostPackage({ outDir: path.join(path.dirname(lab.labDir), 'package') });
  return startLabWorkers({
    lab,
    home: stack.home,
    natsUrl: stack.natsUrl,
    log: quietLog,
    confirm: 'controller',
    hostPackage: built.deb,
  });
}

/**
 * For calling a lab driver's steps directly: `command` makes a step command as the controller would
 * send it (`<rollout>/<kind>/<mode>/<n>` ids), `ctx` a step context with a silent log whose audit
 * notes collect in `notes`.
 */
export function directSteps(rolloutId: string) {
  let seq = 0;
  const notes: StepAuditNote[] = [];
  const log = pino({ level: 'silent' });
  const command = (
    hostId: string,
    kind: StepKind,
    params: Record<string, unknown> = {},
    mode: 'apply' | 'revert' = 'apply',
  ): ReceivedCommand => ({
    commandId: `${rolloutId}/${kind}/${mode}/${++seq}`,
    hostId,
    kind,
    mode,
    params,
    rolloutId,
    workflowId: `wf-${hostId}`,
    issuedAt: new Date().toISOString(),
  });
  const ctx = (): StepContext => ({
    signal: new AbortController().signal,
    progress: () => undefined,
    log,
    recovering: false,
    audit: (n) => notes.push(n),
  });
  return { command, ctx, notes, log };
}
