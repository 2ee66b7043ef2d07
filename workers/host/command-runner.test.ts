import type { JetStreamClient } from '@nats-io/jetstream';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryChainStore } from '../../activities/audit/memory-store.js';
import type { HostDriver } from '../../activities/host/driver.js';
import type { CommandStatus, ReceivedCommand } from '../../schemas/command.js';
import { HostAuditLog } from './audit-spool.js';
import { CommandRunner } from './command-runner.js';
import { CommandJournal } from './journal.js';

const log = pino({ level: 'silent' });
let dir: string;
const opened: HostAuditLog[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'refit-command-runner-'));
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((a) => a.stop(0)));
  await rm(dir, { recursive: true, force: true });
});

/** A journal whose directory flush waits until the test lets it go, as a slow disk would. */
class HeldJournal extends CommandJournal {
  flushed = false;
  release: () => void = () => undefined;
  private readonly held = new Promise<void>((resolve) => (this.release = resolve));
  protected override async sync(): Promise<void> {
    await this.held;
    await super.sync();
    this.flushed = true;
  }
}

const command: ReceivedCommand = {
  commandId: 'refit-host-h1/run-1/1',
  hostId: 'h1',
  kind: 'verify',
  mode: 'apply',
  params: { targets: [{ address: '10.0.0.1' }], count: 1 },
  rolloutId: 'r',
  workflowId: 'refit-host-h1',
  issuedAt: new Date().toISOString(),
};

describe('the command runner', () => {
  it('starts the step only once its journal entry is flushed to disk; the running status may go first', async () => {
    const statuses: CommandStatus[] = [];
    const js = {
      publish: (_subject: string, data: string) => {
        statuses.push(JSON.parse(data) as CommandStatus);
        return Promise.resolve({ seq: statuses.length, duplicate: false, stream: 'x' });
      },
    } as unknown as JetStreamClient;
    const held = (await HeldJournal.open(path.join(dir, 'journal'))) as HeldJournal;
    const stepStartedWith: boolean[] = [];
    const driver: HostDriver = {
      kind: 'sim',
      facts: () => Promise.reject(new Error('not used')),
      runStep: () => {
        stepStartedWith.push(held.flushed);
        return Promise.resolve({ changed: false, summary: 'checked', before: {}, after: {} });
      },
    };
    const audit = await HostAuditLog.open({
      hostId: 'h1',
      dir: path.join(dir, 'audit'),
      store: new MemoryChainStore(),
      log,
    });
    audit.start();
    opened.push(audit);
    const bootId = () => Promise.resolve('b1');
    const runner = new CommandRunner({ hostId: 'h1', js, journal: held, driver, log, bootId, audit });

    const run = runner.run(command);
    await sleep(200);
    // The entry is in place and the running status written, but the step waits for the flush.
    expect((await held.read(command.commandId))?.starts).toBe(1);
    expect(statuses.map((s) => s.state)).toEqual(['running']);
    expect(stepStartedWith).toEqual([]);
    held.release();
    const result = await run;
    expect(result).toMatchObject({ kind: 'finished', status: { state: 'succeeded' } });
    expect(stepStartedWith).toEqual([true]);
  });
});
