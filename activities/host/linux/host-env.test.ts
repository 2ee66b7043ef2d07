import { describe, expect, it } from 'vitest';
import type { StepAuditNote } from '../driver.js';
import { CommandFailedError, type CommandRunner } from './command.js';
import { withAudit } from './host-env.js';

const ok: CommandRunner = async (argv) => ({ argv, stdout: 'Bridge vmbr0\n', stderr: '', exitCode: 0 });
const failing: CommandRunner = async (argv) => {
  throw new CommandFailedError({ argv, stdout: '', stderr: 'ovs-vsctl: no bridge named vmbr9\n', exitCode: 2 });
};

describe('a host env with an audit trail', () => {
  it('reports every command a step runs, as run, with its exit status and duration', async () => {
    const notes: StepAuditNote[] = [];
    const env = withAudit({ run: ok }, { audit: (n) => notes.push(n) });
    await env.run(['ovs-vsctl', 'show']);
    expect(notes).toEqual([
      { type: 'step.command', argv: ['ovs-vsctl', 'show'], exitCode: 0, durationMs: expect.any(Number) },
    ]);
  });

  it('reports a failed command with the end of its stderr, and still fails', async () => {
    const notes: StepAuditNote[] = [];
    const env = withAudit({ run: failing }, { audit: (n) => notes.push(n) });
    await expect(env.run(['ovs-vsctl', 'br-exists', 'vmbr9'])).rejects.toThrow(CommandFailedError);
    expect(notes).toEqual([
      {
        type: 'step.command',
        argv: ['ovs-vsctl', 'br-exists', 'vmbr9'],
        exitCode: 2,
        durationMs: expect.any(Number),
        stderr: 'ovs-vsctl: no bridge named vmbr9\n',
      },
    ]);
  });

  it('keeps only the last 2,000 characters of a long stderr', async () => {
    const notes: StepAuditNote[] = [];
    const noisy: CommandRunner = async (argv) => {
      throw new CommandFailedError({ argv, stdout: '', stderr: `${'x'.repeat(5_000)}END`, exitCode: 1 });
    };
    await withAudit({ run: noisy }, { audit: (n) => notes.push(n) })
      .run(['update-grub'])
      .catch(() => undefined);
    const stderr = notes[0]?.type === 'step.command' ? notes[0].stderr : undefined;
    expect(stderr).toHaveLength(2_000);
    expect(stderr?.endsWith('END')).toBe(true);
  });

  it('reports the commands run inside a VM too', async () => {
    const notes: StepAuditNote[] = [];
    const env = withAudit({ run: ok, runInVm: (_vm: string) => ok }, { audit: (n) => notes.push(n) });
    await env.runInVm?.('vm101')(['hping3', '-c', '1', '10.77.0.1']);
    expect(notes.map((n) => (n.type === 'step.command' ? n.argv : []))).toEqual([['hping3', '-c', '1', '10.77.0.1']]);
  });

  it('leaves the env as it is outside a host worker, where there is no trail', () => {
    const env = { run: ok };
    expect(withAudit(env, {})).toBe(env);
  });
});
