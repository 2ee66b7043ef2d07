import { beforeAll, describe, expect, it } from 'vitest';
import { WorkflowNotFoundError } from '@temporalio/client';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { hostWorkflowId } from '../schemas/names.js';
import type { RolloutStatus } from '../schemas/rollout.js';
import { RolloutStatusJson } from '../schemas/rollout-json.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { startRollout } from '../workers/control/rollouts.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';
import { runCli, tempDir, campaignStepsYaml, plan, rolloutReaches } from './helpers/controller.js';
import { recordHistory } from './helpers/history.js';
import { useSimFleet } from './helpers/fleet.js';

const hosts = simHostIds(6, `ro${randomBytes(2).toString('hex')}`);
const [canaryHost, , , , failingHost, spareHost] = hosts as [string, string, string, string, string, string];
const suite = useSimFleet({ hosts, speed: 4, rebootPauseMs: 400, fail: { [failingHost]: { verify: 'always' } } });
const { config } = suite;
const bootIdsAtStart = new Map<string, string>();
beforeAll(() => {
  for (const h of hosts) bootIdsAtStart.set(h, suite.fleet.hosts.get(h)?.snapshot().bootId ?? '');
});

const planYaml = (targets: string[], extra = '') => `
apiVersion: refit/v1
kind: Campaign
name: test-rollout
targets:
  hosts: [${targets.join(', ')}]
waves:
  canary: 1
  batchSize: 2
  maxInFlight: 2
${extra}
${campaignStepsYaml()}
`;

const runToEnd = async (yaml: string) => (await suite.controller.runRollout(yaml)).result;

describe('a rollout across a simulated fleet', () => {
  let result: RolloutStatus;
  const targets = hosts.slice(0, 4);

  it('runs every step on every host and ends completed', async () => {
    result = await runToEnd(planYaml(targets));
    expect(result.state, JSON.stringify({ message: result.message, hosts: result.hosts })).toBe('completed');
    expect(result.counts.succeeded).toBe(4);
    for (const hostId of targets) {
      const s = suite.fleet.hosts.get(hostId)?.snapshot();
      expect(s?.bridge.type, hostId).toBe('ovs');
      expect(s?.running).toEqual({ iommu: true, numVfs: 7 });
      expect(s?.bootId, hostId).not.toBe(bootIdsAtStart.get(hostId));
      expect(s?.cordoned).toBe(false);
      expect(s?.away).toEqual({});
      for (const kind of ['drain', 'ovs-convert', 'sriov-enable', 'undrain'])
        expect(s?.effects[kind], `${hostId} ${kind}`).toBe(1);
    }
    // Hosts outside the plan are untouched.
    expect(suite.fleet.hosts.get(spareHost)?.snapshot().bridge.type).toBe('linux');
  });

  it('finishes the canary before any other host starts, and never has more hosts in flight than allowed', async () => {
    const spans = await Promise.all(
      targets.map(async (hostId) => {
        const d = await suite.controller.client.workflow.getHandle(hostWorkflowId(hostId)).describe();
        return { hostId, start: d.startTime.getTime(), end: d.closeTime?.getTime() ?? Infinity };
      }),
    );
    const canary = spans.find((s) => s.hostId === canaryHost);
    expect(canary?.end).toBeLessThan(Infinity);
    for (const s of spans) if (s !== canary) expect(s.start).toBeGreaterThanOrEqual(canary?.end ?? Infinity);
    const most = Math.max(...spans.map((s) => spans.filter((o) => o.start <= s.start && o.end > s.start).length));
    expect(most).toBeLessThanOrEqual(2);
    expect(most).toBeGreaterThan(1); // waves of two really ran two at once
  });

  it('answers `refit rollout status --json` with the hosts and their last step', async () => {
    const out = await runCli(config, ['rollout', 'status', result.id, '--json']);
    expect(out.code, out.stderr).toBe(0);
    const status = RolloutStatusJson.parse(JSON.parse(out.stdout));
    expect(status.state).toBe('completed');
    expect(status.hosts.map((h) => [h.hostId, h.state, h.step])).toEqual(
      targets.map((h) => [h, 'succeeded', 'undrain']),
    );
  });

  it('shows a wave running while its hosts run, the later waves pending, and every wave done at the end', async () => {
    const { client } = suite.controller;
    const id = `waves-${randomBytes(4).toString('hex')}`;
    await startRollout(client, config.taskQueue, plan(planYaml(targets.slice(0, 3))), id);
    const wavesWhen = async (what: string, ok: (s: RolloutStatus) => boolean) =>
      (await rolloutReaches(client, id, what, ok)).waves.map((w) => w.state);
    const runs = (s: RolloutStatus, hostId: string) => s.hosts.find((h) => h.hostId === hostId)?.state === 'running';
    expect(await wavesWhen('the canary running', (s) => runs(s, canaryHost))).toEqual(['running', 'pending']);
    expect(
      await wavesWhen('a host of wave 1 running', (s) => s.hosts.some((h) => h.wave === 1 && runs(s, h.hostId))),
    ).toEqual(['done', 'running']);
    const end = await rolloutEnd(client.workflow.getHandle(id));
    expect(end.state).toBe('completed');
    expect(end.waves.map((w) => w.state)).toEqual(['done', 'done']);
    await recordHistory(config, id, 'wave-running');
  });

  it('rolls back a host whose verify fails and reports the rollout failed', async () => {
    const failed = await runToEnd(
      planYaml([failingHost], 'onHostFailure: rollback\nfailureBudget: { maxFailedHosts: 0 }'),
    );
    expect(failed.state).toBe('failed');
    expect(failed.hosts[0]).toMatchObject({ hostId: failingHost, state: 'rolled-back' });
    const s = suite.fleet.hosts.get(failingHost)?.snapshot();
    expect(s?.bridge.type).toBe('linux');
    expect(s?.bootConfig.iommu).toBeNull();
    expect(s?.cordoned).toBe(false);
    expect(s?.away).toEqual({});
  });

  it('reports named hosts that are not present instead of dropping them', async () => {
    const r = await runToEnd(planYaml([spareHost, 'no-such-host']));
    expect(r.missingHosts).toEqual(['no-such-host']);
    expect(r.state).toBe('failed');
    expect(r.hosts.map((h) => h.hostId)).toEqual([spareHost]);
  });
});

describe('refit rollout start', () => {
  it('refuses a malformed plan before any workflow starts, naming every bad field', async () => {
    const file = path.join(tempDir('plan'), 'bad.yaml');
    await writeFile(
      file,
      planYaml([canaryHost])
        .replace('vfs: 7', 'vfs: 0')
        .replace('maxInFlight: 2', 'maxInFlight: lots')
        .replace('address: 10.77.0.1', 'address: "10.77.0.1; reboot"'),
    );
    const id = `refused-${randomBytes(4).toString('hex')}`;
    const out = await runCli(config, ['rollout', 'start', file, '--id', id]);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('steps[2].params.vfs');
    expect(out.stderr).toContain('waves.maxInFlight');
    expect(out.stderr).toContain('steps[4].params.targets[0].address');
    expect(out.stderr).toContain('nothing was started');
    await expect(suite.controller.client.workflow.getHandle(id).describe()).rejects.toBeInstanceOf(
      WorkflowNotFoundError,
    );
  });
});
