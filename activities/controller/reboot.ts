import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { isOnline, type HostPresence } from '../../schemas/host.js';
import type { Logger } from 'pino';
import { WaitTimeoutError, type BucketFollower } from './bucket-follower.js';
import type { AwaitRebootRequest, AwaitRebootResult } from '../../schemas/activities.js';

/**
 * A reboot is proven by a new boot id from a host that reports again, never by silence.
 * The deadline is absolute, so a retried attempt after a controller restart does not wait anew.
 */
export function createAwaitReboot({ presence, log }: { presence: BucketFollower<typeof HostPresence>; log: Logger }) {
  return async function awaitReboot(req: AwaitRebootRequest): Promise<AwaitRebootResult> {
    const ctx = Context.current();
    const started = Date.now();
    const remaining = req.deadlineMs - started;
    const ticker = setInterval(() => ctx.heartbeat({ waitingFor: 'new boot id' }), 3_000);
    try {
      const back = await presence.waitFor(
        req.hostId,
        (p: HostPresence) => p.facts.bootId !== req.bootIdBefore && isOnline(p),
        { timeoutMs: Math.max(0, remaining), signal: ctx.cancellationSignal },
      );
      log.info(
        { hostId: req.hostId, bootIdBefore: req.bootIdBefore, bootIdAfter: back.facts.bootId },
        'host is back with a new boot id',
      );
      return { bootIdAfter: back.facts.bootId, waitedMs: Date.now() - started };
    } catch (err) {
      if (err instanceof WaitTimeoutError) {
        const seen = presence.get(req.hostId);
        const state = !seen
          ? 'never reported'
          : seen.facts.bootId === req.bootIdBefore
            ? 'still reports the old boot id'
            : 'is not reporting';
        throw ApplicationFailure.nonRetryable(
          `host ${req.hostId} did not come back from its reboot in time: it ${state}`,
          'RebootTimeout',
        );
      }
      throw err;
    } finally {
      clearInterval(ticker);
    }
  };
}
