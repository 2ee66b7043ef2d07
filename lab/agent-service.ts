import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { rebootHost } from '../activities/host/lab/boot.js';
import { takeRebootRequest } from '../activities/host/lab/power.js';
import type { LabHost, LabState } from '../activities/host/lab/state.js';
import { RefitError } from '../schemas/errors.js';
import type { UnpackedHostPackage } from './host-package.js';
import {
  environmentFiles,
  execStartArgv,
  parseEnvironmentFile,
  serviceSetting,
  timeSpanMs,
  UnitFileError,
} from './systemd-unit.js';

export class AgentStartError extends RefitError {}

/** The PATH systemd gives a system service. */
export const SYSTEMD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface AgentServiceOptions {
  lab: LabState;
  host: LabHost;
  pkg: UnpackedHostPackage;
  /** Where the unit's StateDirectory= lives for this host (systemd: /var/lib/<StateDirectory>). */
  stateDir: string;
  log: Logger;
  /** How long to wait for the agent's start line (it prints it once connected to NATS). */
  startTimeoutMs?: number;
}

export interface AgentService {
  /** The agent's output, as the journal would hold it. */
  readonly logFile: string;
  /** The running agent's process id (systemd's MainPID); undefined while it is not running. */
  readonly mainPid: number | undefined;
  /** Stop the agent (as `systemctl stop`), reboot the host, start the agent again (as at boot). */
  reboot(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A lab host's agent run as refit-host.service would run it: the unit's own ExecStart= (its path
 * inside the unpacked package), its EnvironmentFile= read from the host's /etc at every start, no
 * other environment than systemd's PATH and STATE_DIRECTORY, restarted after it exits as
 * Restart=/RestartSec=/RestartPreventExitStatus= say, stopped with SIGTERM and after TimeoutStopSec=
 * with SIGKILL to its group (KillMode=mixed). A reboot the agent asks for (lab/power) is done here:
 * stop, reboot the host, start.
 */
export async function startAgentService(o: AgentServiceOptions): Promise<AgentService> {
  const { unit, unitFile } = o.pkg;
  const argv = execStartArgv(unit, unitFile);
  const program = path.join(o.pkg.root, argv[0] as string);
  if (!existsSync(program)) throw new UnitFileError(`${unitFile}: ExecStart= names ${argv[0]}, not in the package`);
  const restart = serviceSetting(unit, 'Restart') ?? 'no';
  const restartSecMs = timeSpanMs(serviceSetting(unit, 'RestartSec') ?? '100ms', `${unitFile} RestartSec=`);
  const stopTimeoutMs = timeSpanMs(serviceSetting(unit, 'TimeoutStopSec') ?? '90s', `${unitFile} TimeoutStopSec=`);
  const noRestartCodes = (serviceSetting(unit, 'RestartPreventExitStatus') ?? '').split(/\s+/).filter(Boolean);
  const stateMode = Number.parseInt(serviceSetting(unit, 'StateDirectoryMode') ?? '0755', 8);
  const envFiles = environmentFiles(unit);
  const logFile = path.join(o.host.root, 'var/log/refit-host.log');
  await mkdir(path.dirname(logFile), { recursive: true });
  const journal: WriteStream = createWriteStream(logFile, { flags: 'a' });
  const log = o.log.child({ hostId: o.host.id, unit: path.basename(unitFile) });

  let child: ChildProcess | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  let wanted = true;
  let busy: Promise<void> = Promise.resolve();

  const environment = async (): Promise<Record<string, string>> => {
    const env: Record<string, string> = { PATH: SYSTEMD_PATH, STATE_DIRECTORY: o.stateDir };
    for (const f of envFiles) {
      const file = path.join(o.host.root, f.path);
      const text = await readFile(file, 'utf8').catch((err: unknown) => {
        if (f.optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return '';
        throw new AgentStartError(`${o.host.id}: EnvironmentFile ${f.path} (${file}) cannot be read`, { cause: err });
      });
      Object.assign(env, parseEnvironmentFile(text, file));
    }
    return env;
  };

  /** Start the agent and wait for its start line; it exiting first is an error that quotes its output. */
  const start = async (): Promise<void> => {
    await mkdir(o.stateDir, { recursive: true, mode: stateMode });
    const env = await environment();
    const proc = spawn(program, argv.slice(1), { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let seen = '';
    let started = false;
    // Its start line once connected ("refit-host <version> <id>: …"), or with a key of its own
    // that may not be admitted yet, the line naming that key ("refit-host <id>: NATS identity …").
    const startLine = new RegExp(`^refit-host (\\S+ )?${o.host.id}: `, 'm');
    let onStarted: () => void = () => undefined;
    const startedNow = new Promise<void>((resolve) => (onStarted = resolve));
    const take = (chunk: Buffer) => {
      journal.write(chunk);
      if (started) return;
      seen = (seen + chunk.toString('utf8')).slice(-8_000);
      if (startLine.test(seen)) {
        started = true;
        onStarted();
      }
    };
    proc.stdout?.on('data', take);
    proc.stderr?.on('data', take);
    exited = new Promise((resolve) => {
      proc.once('exit', (code) => resolve(code));
      // A program that cannot be started (gone, not executable) never exits: count it as exited.
      proc.once('error', (err) => {
        journal.write(`refit-host.service: cannot start ${program}: ${err.message}\n`);
        seen += `cannot start ${program}: ${err.message}\n`;
        resolve(null);
      });
    });
    void exited.then((code) => {
      if (child === proc) child = undefined;
      if (!wanted) return;
      const prevented = code !== null && noRestartCodes.includes(String(code));
      log.warn({ code, restart, prevented }, 'lab: the host agent exited');
      if (restart === 'always' && !prevented)
        busy = busy.then(async () => {
          await sleep(restartSecMs);
          if (wanted && child === undefined)
            await start().catch((err: unknown) => log.error({ err }, 'lab: restart failed'));
        });
    });
    const timeoutMs = o.startTimeoutMs ?? 120_000;
    const outcome = await Promise.race([
      startedNow.then(() => 'started' as const),
      exited.then((code) => ({ code })),
      sleep(timeoutMs).then(() => 'timeout' as const),
    ]);
    if (outcome === 'started') return;
    const tail = seen.trim().split('\n').slice(-5).join('\n');
    throw new AgentStartError(
      outcome === 'timeout'
        ? `${o.host.id}: the host agent did not report its start within ${timeoutMs / 1000} s; its output:\n${tail}`
        : `${o.host.id}: the host agent exited with ${String(outcome.code)} before it started; its output:\n${tail}`,
    );
  };

  const stopAgent = async (): Promise<void> => {
    const proc = child;
    if (proc?.pid === undefined) return;
    const gone = exited;
    proc.kill('SIGTERM');
    const code = await Promise.race([gone, sleep(stopTimeoutMs).then(() => 'timeout' as const)]);
    if (code === 'timeout') {
      log.warn({ stopTimeoutMs }, 'lab: the host agent did not stop in time; killing its process group');
      try {
        process.kill(-proc.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await gone;
    }
  };

  const reboot = async (): Promise<void> => {
    const done = busy.then(async () => {
      wanted = false;
      await stopAgent();
      const booted = await rebootHost(o.lab, o.host);
      log.info({ bootId: booted.bootId }, 'lab: host rebooted; starting its agent from the unit');
      wanted = true;
      await start();
    });
    busy = done.catch(() => undefined);
    return done;
  };

  const watcher = setInterval(() => {
    void takeRebootRequest(o.host).then(
      async (asked) => {
        if (asked) await reboot().catch((err: unknown) => log.error({ err }, 'lab: reboot failed'));
      },
      () => undefined,
    );
  }, 250);

  try {
    await start();
  } catch (err) {
    clearInterval(watcher);
    wanted = false;
    await stopAgent();
    journal.end();
    throw err;
  }
  return {
    logFile,
    get mainPid() {
      return child?.pid;
    },
    reboot,
    async stop() {
      clearInterval(watcher);
      wanted = false;
      await busy;
      await stopAgent();
      await new Promise<void>((resolve) => journal.end(resolve));
    },
  };
}
