import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { STATE_LOCK_FILE, StateDirLockedError, lockStateDir } from './state-lock.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'refit-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A pid that ran and is gone. */
function deadPid(): string {
  return spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
}

describe('the lock on an agent state directory', () => {
  it('refuses a second holder while the first holds it, then lets it in once released', () => {
    const first = lockStateDir(dir, 'pve-01');
    expect(() => lockStateDir(dir, 'pve-01')).toThrow(StateDirLockedError);
    expect(() => lockStateDir(dir, 'pve-01')).toThrow(`pid ${process.pid} (host id pve-01`);
    first.release();
    expect(existsSync(path.join(dir, STATE_LOCK_FILE))).toBe(false);
    const second = lockStateDir(dir, 'pve-01');
    expect(second.holder.instanceId).not.toBe(first.holder.instanceId);
    second.release();
  });

  it('refuses an agent in another process, naming the pid that holds it', async () => {
    const holder = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      const file = path.join(dir, STATE_LOCK_FILE);
      const since = new Date().toISOString();
      writeFileSync(file, JSON.stringify({ pid: holder.pid, hostId: 'pve-02', instanceId: 'x', machine: 'm', since }));
      expect(() => lockStateDir(dir, 'pve-02')).toThrow(
        `state directory ${dir} is locked by another refit host agent: pid ${holder.pid} (host id pve-02, since ${since})`,
      );
      expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ pid: holder.pid });
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('takes over a lock whose process is gone, and one left unreadable long ago', () => {
    const file = path.join(dir, STATE_LOCK_FILE);
    const pid = Number(deadPid());
    writeFileSync(file, JSON.stringify({ pid, hostId: 'pve-03', instanceId: 'old', machine: 'm', since: 'then' }));
    const lock = lockStateDir(dir, 'pve-03');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ pid: process.pid, hostId: 'pve-03' });
    lock.release();

    writeFileSync(file, '');
    const old = new Date(Date.now() - 60_000);
    spawnSync('touch', ['-d', old.toISOString(), file]);
    lockStateDir(dir, 'pve-03').release();
  });

  it('does not remove a lock another agent took after its own was taken over', () => {
    const lock = lockStateDir(dir, 'pve-04');
    const file = path.join(dir, STATE_LOCK_FILE);
    const other = { pid: Number(deadPid()), hostId: 'pve-04', instanceId: 'other', machine: 'm', since: 'now' };
    writeFileSync(file, JSON.stringify(other));
    lock.release();
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(other);
  });

  it('says so when the state directory is a file', () => {
    const file = path.join(dir, 'file');
    writeFileSync(file, 'x');
    expect(() => lockStateDir(file, 'pve-05')).toThrow(`state directory ${file} is not a directory`);
  });
});
