import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readInventory } from '../workers/control/inventory.js';
import { withNats } from '../workers/clients.js';
import { simHostIds, type SimFleetHandle } from '../workers/sim/fleet.js';
import { RolloutStatusJson } from '../schemas/rollout-json.js';
import { until } from '../activities/poll.js';
import { plan, rolloutReaches, runCli } from './helpers/controller.js';
import { startOnlineSimFleet, useSimFleet } from './helpers/fleet.js';
import { recordHistory } from './helpers/history.js';
import { startRollout } from '../workers/control/rollouts.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';

const tag = `off${randomBytes(2).toString('hex')}`;
const [up1, up2, comesBack, staysAway] = simHostIds(4, tag) as [string, string, string, string];
const labels = { campaign: tag };
const suite = useSimFleet({ hosts: [up1, up2], speed: 4, labels });
const { config, stack } = suite;
const away: SimFleetHandle[] = [];

/** The hosts report once (so the inventory knows them and their labels), then fall silent. */
async function reportOnceThenStop(hosts: string[]): Promise<SimFleetHandle> {
  const fleet = await startOnlineSimFleet(stack, config, { hosts, labels });
  await fleet.stop();
  await until(
    async () => {
      const rows = (await withNats(config, readInventory)).hosts.filter((h) => hosts.includes(h.hostId));
      return rows.length === hosts.length && rows.every((h) => !h.online);
    },
    { what: () => `${hosts.join(', ')} to be offline`, timeoutMs: 10_000, intervalMs: 200 },
  );
  return fleet;
}

beforeAll(async () => {
  away.push(await reportOnceThenStop([comesBack, staysAway]));
});
afterAll(async () => {
  await Promise.all(away.map((f) => f.stop()));
});

const planYaml = (name: string, extra: string) => `
apiVersion: refit/v1
kind: Campaign
name: ${name}
targets:
  selector: { campaign: ${tag} }
waves: { canary: 0, batchSize: 4, maxInFlight: 1 }
${extra}
steps:
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 5 }
`;

const effectsOf = (fleet: SimFleetHandle, hostId: string) => fleet.hosts.get(hostId)?.snapshot().effects ?? {};

describe('hosts a selector matches that are offline', () => {
  it('are skipped with onOffline: skip, counted as skipped, and the rollout completes naming them', async () => {
    const { id, result } = await suite.controller.runRollout(planYaml('offline-skip', 'onOffline: skip'));
    await recordHistory(config, id, 'offline-skip');
    expect(result.state, JSON.stringify(result)).toBe('completed');
    expect(result.counts).toMatchObject({ succeeded: 2, skipped: 2, failed: 0 });
    expect(result.failureBudget.failed).toBe(0);
    expect(result.message).toBe(`skipped as the plan says, being offline: ${comesBack}, ${staysAway}`);
    // Left untouched: nothing ran on them.
    for (const h of [comesBack, staysAway]) expect(effectsOf(away[0] as SimFleetHandle, h)).toEqual({});

    const json = await runCli(config, ['rollout', 'status', id, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const status = RolloutStatusJson.parse(JSON.parse(json.stdout));
    expect(Object.fromEntries(status.hosts.map((h) => [h.hostId, h.fate]))).toEqual({
      [up1]: 'done',
      [up2]: 'done',
      [comesBack]: 'skipped-offline',
      [staysAway]: 'skipped-offline',
    });
    const text = await runCli(config, ['rollout', 'status', id]);
    expect(text.stdout).toContain(`done (2): ${up1} ${up2}`);
    expect(text.stdout).toContain(`skipped-offline (2): ${comesBack} ${staysAway}`);
  });

  it('are waited for with onOffline: wait: one that comes back is done, one that does not fails after offlineWait', async () => {
    const p = plan(planYaml('offline-wait', 'onOffline: wait\nofflineWait: 6s\nfailureBudget: { maxFailedHosts: 1 }'));
    const id = `offline-wait-${randomBytes(3).toString('hex')}`;
    await startRollout(suite.controller.client, config.taskQueue, p, id);
    const waiting = await rolloutReaches(suite.controller.client, id, `${comesBack} waiting for being offline`, (s) =>
      s.hosts.some((h) => h.hostId === comesBack && h.offline?.waitUntil !== undefined),
    );
    expect(waiting.hosts.find((h) => h.hostId === comesBack)?.waitingFor).toMatch(/^offline; waiting for it until /);
    const back = await startOnlineSimFleet(stack, config, { hosts: [comesBack], labels });
    away.push(back);
    const result = await rolloutEnd(suite.controller.client.workflow.getHandle(id));
    await recordHistory(config, id, 'offline-wait');

    const byId = new Map(result.hosts.map((h) => [h.hostId, h]));
    expect(byId.get(comesBack)).toMatchObject({ state: 'succeeded' });
    expect(byId.get(comesBack)?.offline?.back).toBeDefined();
    expect(byId.get(staysAway)).toMatchObject({
      state: 'failed',
      error: expect.stringMatching(/^offline since .*; waited 6s for it, then failed as the plan says/),
    });
    expect(result.state).toBe('failed');
    expect(effectsOf(back, comesBack)).toMatchObject({ verify: 1 });

    const out = await runCli(config, ['rollout', 'status', id]);
    expect(out.stdout).toContain(`done-after-offline (1): ${comesBack}`);
    expect(out.stdout).toContain(`waited-then-failed (1): ${staysAway}`);
  });
});
