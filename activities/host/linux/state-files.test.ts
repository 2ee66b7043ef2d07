import { mkdtempSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CorruptStateFileError } from '../../files.js';
import { prepareStep } from '../driver.js';
import type { CommandRunner } from './command.js';
import { createLinuxDriver } from './driver.js';
import { applyCommand, captured, quietCtx } from './fixtures.js';

const ctx = quietCtx;
const command = applyCommand;

/** Answers virsh with real captured output and hping3 with nothing: the steps here fail before probing. */
const run: CommandRunner = async (argv) => {
  const stdout = argv.includes('list') ? captured('virsh-list-all.stdout') : '';
  return { argv, stdout, stderr: '', exitCode: 0 };
};

async function hostWithCorrupt(name: string, text: string) {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'refit-linux-state-'));
  await writeFile(path.join(stateDir, name), text);
  return { stateDir, driver: createLinuxDriver({ hostId: 'hv1', stateDir, run, libvirtUri: 'test:///default' }) };
}

describe('a corrupt state file of the linux driver', () => {
  it.each([
    ['drained-vms.json', '{"test": ', command('undrain', {})],
    ['drained-vms.json', '["test"]', command('drain', { destinations: { test: 'hv2' } })],
    ['reboot-pending.json', '{"commandId":', command('reboot', {})],
    ['reboot-pending.json', '{"commandId": 1}', command('reboot', {})],
    ['traffic-baselines.json', 'nul', command('verify', { targets: [{ address: '10.0.0.1' }] })],
  ])('%s holding %j fails the step with the file named and moves it aside', async (name, text, received) => {
    const { stateDir, driver } = await hostWithCorrupt(name, text);
    const err = await driver.runStep(prepareStep(received), ctx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptStateFileError);
    const corrupt = err as CorruptStateFileError;
    expect(corrupt.file).toBe(path.join(stateDir, name));
    expect(corrupt.message).toContain(`${path.join(stateDir, name)} is corrupt`);
    expect(corrupt.message).toContain(`moved aside to ${corrupt.movedTo}`);
    expect(await readFile(corrupt.movedTo, 'utf8')).toBe(text);
    expect(await readdir(stateDir)).not.toContain(name);
  });
});
