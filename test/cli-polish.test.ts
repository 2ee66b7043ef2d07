import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { until } from '../activities/poll.js';
import { startRollout } from '../workers/control/rollouts.js';
import { startSimFleet, simHostIds, type SimFleetHandle } from '../workers/sim/fleet.js';
import { CLI, cliEnv, drainUndrainPlan, quietLog, runCli, tempDir, waitForOnline } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';

// The CLI as an operator's shell meets it: usage errors, completion, pipes, following things.
const hosts = simHostIds(3, `cp${randomBytes(2).toString('hex')}`);
const suite = useSimFleet({ hosts, speed: 1, stepMs: { drain: 1_500, undrain: 1_000 } });
const extra: SimFleetHandle[] = [];
afterAll(async () => {
  for (const f of extra) await f.stop();
});

/** A `refit` that runs until stopped, its output collected as it comes. */
function follow(args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: cliEnv(suite.config),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (out.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const stop = () =>
    new Promise<number | null>((resolve) => {
      child.once('close', (code) => resolve(code));
      child.kill('SIGINT');
    });
  return { out, stop };
}

describe('usage errors', () => {
  it('exit 2, numeric flags included, with the flag named', async () => {
    const limit = await runCli(suite.config, ['rollout', 'list', '--limit', 'abc']);
    expect(limit.code).toBe(2);
    expect(limit.stderr).toContain("option '--limit <n>' argument 'abc' is invalid");
    const cases = [
      ['hosts', '--watch', '--interval', '0'],
      ['audit', 'log', '--follow', '--interval', 'x'],
      ['nosuch'],
      ['rollout', 'status'],
      ['completion', 'fish'],
    ];
    const results = await Promise.all(cases.map((args) => runCli(suite.config, args)));
    for (const [i, r] of results.entries()) expect(r.code, `${cases[i]?.join(' ')}: ${r.stderr}`).toBe(2);
  });
});

describe('refit completion bash', () => {
  it('registers a completion for refit that offers its subcommands and options', () => {
    const script = path.join(tempDir('completion'), 'refit.bash');
    const made = spawnSync(process.execPath, [CLI, 'completion', 'bash'], { encoding: 'utf8' });
    expect(made.status).toBe(0);
    writeFileSync(script, made.stdout);
    const ask = (words: string[]) =>
      spawnSync(
        'bash',
        [
          '-c',
          `source ${script}; complete -p refit; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _refit; echo "\${COMPREPLY[*]}"`,
        ],
        { encoding: 'utf8' },
      );
    const top = ask(['refit', 'ro']);
    expect(top.stdout).toContain('complete -o default -F _refit refit');
    expect(top.stdout.trim().split('\n').at(-1)).toBe('rollout');
    const sub = ask(['refit', 'rollout', '']).stdout.trim().split('\n').at(-1)?.split(' ');
    expect(sub).toEqual(expect.arrayContaining(['start', 'status', 'watch', 'list', 'plan', 'cancel']));
    expect(ask(['refit', 'rollout', 'list', '--li']).stdout.trim().split('\n').at(-1)).toBe('--limit');
    // After a rollout id, the options of the command it belongs to.
    expect(ask(['refit', 'rollout', 'status', 'r-1', '--']).stdout).toContain('--json');
    const zsh = spawnSync(process.execPath, [CLI, 'completion', 'zsh'], { encoding: 'utf8' });
    expect(zsh.stdout).toContain('bashcompinit');
  });
});

/**
 * stderr without refit's warning about presence entries that fail the schema: the suite's shared stack
 * holds some on purpose (the permission and forgery tests write them), and the warning is right there.
 */
const withoutPresenceWarning = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => !/^skipped \d+ presence entr(y|ies) that fail/.test(l))
    .join('\n');

describe('a reader that stops early', () => {
  it('ends refit quietly, with success: no EPIPE error', async () => {
    // The reading end closed before refit writes: every write fails with EPIPE.
    const child = spawn(process.execPath, [CLI, 'hosts'], {
      env: cliEnv(suite.config),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise((r) => child.once('close', r));
    expect(stderr).not.toMatch(/EPIPE|Error/);
    expect(code).toBe(0);
    // And as an operator writes it, under pipefail.
    const env = { ...cliEnv(suite.config), REFIT: `${process.execPath} ${CLI}` };
    const head = spawnSync('bash', ['-o', 'pipefail', '-c', '$REFIT hosts | head -1'], { env, encoding: 'utf8' });
    expect(head.stdout).toMatch(/^\d+ hosts, \d+ online/);
    expect(withoutPresenceWarning(head.stderr)).toBe('');
    expect(head.status).toBe(0);
    const grep = spawnSync('bash', ['-o', 'pipefail', '-c', `$REFIT hosts --json | grep -q ${hosts[0]}`], {
      env,
      encoding: 'utf8',
    });
    expect(withoutPresenceWarning(grep.stderr)).toBe('');
    expect(grep.status).toBe(0);
  });
});

describe('following', () => {
  it('refit hosts --watch prints the inventory again when it changes', async () => {
    const watch = follow(['hosts', '--watch', '--interval', '0.5']);
    await until(async () => (watch.out.stdout.includes(hosts[0]!) ? true : undefined), {
      what: 'the first table',
      timeoutMs: 20_000,
    });
    const count = () => [...watch.out.stdout.matchAll(/^(\d+) hosts, /gm)].map((m) => Number(m[1]));
    const before = count().at(-1)!;
    const late = simHostIds(1, `cpl${randomBytes(2).toString('hex')}`);
    extra.push(
      await startSimFleet({
        home: suite.stack.home,
        natsUrl: suite.stack.natsUrl,
        hosts: late,
        stateDir: tempDir('late-sim'),
        presenceIntervalMs: 500,
        log: quietLog,
      }),
    );
    await waitForOnline(suite.config, late);
    await until(async () => (watch.out.stdout.includes(late[0]!) ? true : undefined), {
      what: 'the new host',
      timeoutMs: 20_000,
    });
    expect(count().at(-1)).toBe(before + 1);
    await watch.stop();
    expect(withoutPresenceWarning(watch.out.stderr)).toBe('');
  });

  it('refit audit log --follow --json prints the events of a rollout as they are stored', async () => {
    const log = follow(['audit', 'log', '--follow', '--json', '--interval', '0.5', '--type', 'rollout']);
    await new Promise((r) => setTimeout(r, 1500));
    const id = `follow-${randomBytes(3).toString('hex')}`;
    await startRollout(
      suite.controller.client,
      suite.config.taskQueue,
      drainUndrainPlan('follow', [hosts[0]!], ''),
      id,
    );
    const types = () =>
      log.out.stdout
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as { type: string; rolloutId?: string })
        .filter((e) => e.rolloutId === id)
        .map((e) => e.type);
    await until(async () => (types().includes('rollout.completed') ? true : undefined), {
      what: () => `the rollout's events; seen ${types().join(', ')}`,
      timeoutMs: 60_000,
    });
    expect(types()).toEqual(['rollout.started', 'rollout.completed']);
    await log.stop();
  });

  it('refit rollout watch fits a small terminal and shows an ETA, then prints the whole status', async () => {
    const start = async () => {
      const id = `watch-${randomBytes(3).toString('hex')}`;
      const p = drainUndrainPlan('watch', hosts, 'waves: { canary: 0, batchSize: 3, maxInFlight: 1 }');
      await startRollout(suite.controller.client, suite.config.taskQueue, p, id);
      return id;
    };
    /** `refit rollout watch` on a real terminal (a pty from script(1)) of rows × columns. */
    const inTerminal = (id: string, rows: number, columns: number) =>
      new Promise<{ code: number | null; output: string }>((resolve, reject) => {
        const command = `stty rows ${rows} cols ${columns} && exec "$NODE" "$CLI" rollout watch ${id}`;
        const child = spawn('script', ['-qfec', command, '/dev/null'], {
          env: { ...cliEnv(suite.config), NODE: process.execPath, CLI },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        child.stdout.on('data', (d: Buffer) => (output += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, output: output.replaceAll('\r\n', '\n') }));
      });

    const small = await start();
    const { code, output } = await inTerminal(small, 6, 40);
    expect(code, output).toBe(0);
    const [screen, after] = output.split('\x1b[?25h\x1b[?1049l');
    expect(screen?.startsWith('\x1b[?1049h')).toBe(true);
    const frames = (screen ?? '').split('\x1b[H').slice(1);
    expect(frames.length).toBeGreaterThan(2);
    for (const frame of frames) {
      const lines = frame.replace('\x1b[J', '').split('\n');
      expect(lines.length).toBeLessThanOrEqual(5);
      for (const line of lines) expect([...line.replace('\x1b[K', '')].length).toBeLessThanOrEqual(39);
    }
    // Back on the terminal's own screen: the whole final status, taller than this terminal.
    expect(after).toContain(`rollout ${small}  COMPLETED`);
    expect((after ?? '').trim().split('\n').length).toBeGreaterThan(5);

    // Where there is room, the ETA is measured from the hosts that finished.
    const tall = await inTerminal(await start(), 40, 200);
    expect(tall.code).toBe(0);
    expect(tall.output).toMatch(/ETA: about \d+s \(\d\d:\d\d UTC; \d+s a host over the last \d+ done, 1 at a time\)/);
  });
});
