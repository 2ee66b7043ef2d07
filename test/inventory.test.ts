import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { PollTimeoutError } from '../activities/poll.js';
import { waitForHostsOnline } from '../workers/control/inventory.js';
import { simHostIds, startSimFleet } from '../workers/sim/fleet.js';
import { quietLog, tempDir } from './helpers/controller.js';
import { testStack } from './helpers/stack.js';

const stack = testStack();
afterAll(() => stack.closeAll());

describe('waitForHostsOnline', () => {
  it('returns once every host reports, telling how many do as that changes', async () => {
    const hosts = simHostIds(3, `wo${randomBytes(2).toString('hex')}`);
    const nc = await stack.connectAsCli();
    const progress: string[] = [];
    const fleet = await startSimFleet({
      home: stack.home,
      natsUrl: stack.natsUrl,
      hosts,
      stateDir: tempDir('wait-online'),
      presenceIntervalMs: 500,
      log: quietLog,
    });
    try {
      await waitForHostsOnline(nc, hosts, {
        timeoutMs: 30_000,
        intervalMs: 100,
        onProgress: (online, of) => progress.push(`${online}/${of}`),
      });
      expect(progress.at(-1)).toBe('3/3');
      expect(new Set(progress).size).toBe(progress.length);
    } finally {
      await fleet.stop();
    }
  });

  it('names the hosts that never reported when the time is up', async () => {
    const nc = await stack.connectAsCli();
    const absent = simHostIds(2, `absent${randomBytes(2).toString('hex')}`);
    const err = await waitForHostsOnline(nc, absent, { timeoutMs: 300, intervalMs: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PollTimeoutError);
    expect((err as Error).message).toBe(
      `timed out after 0.3 s waiting for 2 hosts to report presence; 2 never did: ${absent.join(', ')}`,
    );
  });
});
