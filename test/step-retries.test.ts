import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { STEP_ATTEMPTS } from '../workflows/host-maintenance.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { useSimFleet } from './helpers/fleet.js';

const hosts = simHostIds(1, `try${randomBytes(2).toString('hex')}`);
const [host] = hosts as [string];
// A verify that takes ten minutes on the host: every attempt of a 2 s step runs out of time.
const suite = useSimFleet({ hosts, stepMs: { verify: 600_000 } });

describe('a step whose host never answers in time', () => {
  it(`fails after ${STEP_ATTEMPTS} attempts, saying so, instead of being retried without end`, async () => {
    const started = Date.now();
    const { result } = await suite.controller.runRollout(`apiVersion: refit/v1
kind: Campaign
name: never-answers
targets: { hosts: [${host}] }
waves: { canary: 0 }
failureBudget: { maxFailedHosts: 1 }
steps:
  - kind: verify
    timeout: 2s
    params: { targets: [{ address: 10.77.0.1 }], count: 3 }
`);
    const status = result.hosts.find((h) => h.hostId === host);
    expect(status?.state).toMatch(/^(failed|rolled-back)$/);
    // Each attempt runs out of its 2 s while the host goes on with the same command. Since decision
    // 0040 a step alone is a run of one (dispatchRun).
    expect(status?.error).toMatch(
      new RegExp(`^dispatch(Step|Run) gave up after ${STEP_ATTEMPTS} attempts; the last failed: .*time`, 'i'),
    );
    // 5 attempts of 2 s and the backoff between them (1 + 2 + 4 + 8 s): well under a minute.
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 90_000);
});
