import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { until } from '../../activities/poll.js';
import {
  ensureCoreIdentities,
  ensureHostIdentities,
  natsConfigFile,
  writeNatsConfig,
  writeUsersConfig,
} from '../../workers/dev/credentials.js';
import { freePorts } from '../../workers/dev/stack.js';
import { findTool } from '../../workers/dev/tools.js';
import { tempDir } from './controller.js';

/** A nats-server of a test's own, to stop and start at will; its home holds config, store and credentials. */
export interface OwnNatsServer {
  home: string;
  url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stop it and remove its home. */
  remove(): Promise<void>;
}

export async function ownNatsServer(hostIds: string[] = []): Promise<OwnNatsServer> {
  const home = tempDir('nats');
  ensureCoreIdentities(home);
  ensureHostIdentities(home, hostIds);
  writeUsersConfig(home);
  const [nats, monitor] = (await freePorts(2)) as [number, number];
  writeNatsConfig(home, { nats, monitor });
  let child: ChildProcess | undefined;
  const stop = async () => {
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  };
  return {
    home,
    url: `nats://127.0.0.1:${nats}`,
    async start() {
      child = spawn(findTool('nats-server'), ['-c', natsConfigFile(home)], { stdio: 'ignore' });
      await until(
        async () => (await fetch(`http://127.0.0.1:${monitor}/healthz`).catch(() => undefined))?.ok === true,
        {
          what: 'nats-server to answer',
          timeoutMs: 30_000,
          intervalMs: 100,
        },
      );
    },
    stop,
    async remove() {
      await stop();
      rmSync(home, { recursive: true, force: true });
    },
  };
}
