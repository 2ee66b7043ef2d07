import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { RolloutStatus } from '../schemas/rollout.js';
import { startRollout } from '../workers/control/rollouts.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { plan, runCli } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';

// The rollouts take two hosts; the others take their VMs.
const hosts = simHostIds(4, `ls${randomBytes(2).toString('hex')}`);
const targets = hosts.slice(0, 2);
const suite = useSimFleet({ hosts });

const campaign = (name: string) =>
  plan(`apiVersion: refit/v1
kind: Campaign
name: ${name}
targets: { hosts: [${targets.join(', ')}] }
waves: { canary: 0, batchSize: 2, maxInFlight: 1 }
steps:
  - kind: drain
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 3 }
  - kind: undrain
`);

async function rollout(name: string, historyLimit?: number): Promise<{ id: string; end: RolloutStatus }> {
  const { client } = suite.controller;
  const id = `${name}-${randomBytes(4).toString('hex')}`;
  await startRollout(client, suite.config.taskQueue, campaign(name), id, historyLimit ? { historyLimit } : {});
  return { id, end: await rolloutEnd(client.workflow.getHandle(id)) };
}

/** Temporal's runs of a workflow id, oldest first, once it lists `expected` of them. */
async function runStarts(id: string, expected: number): Promise<string[]> {
  let starts: string[] = [];
  for (let i = 0; i < 100 && starts.length !== expected; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    starts = [];
    for await (const wf of suite.controller.client.workflow.list({ query: `WorkflowId = '${id}'` }))
      starts.push(wf.startTime.toISOString());
  }
  return starts.sort();
}

interface Row {
  id: string;
  state: string;
  startedAt: string;
  closedAt: string | null;
}

describe('refit rollout list', () => {
  it('shows a rollout that continued as new as one row: its last state, its first start', async () => {
    // A tiny history limit: the rollout continues as new after each host it finishes.
    const continued = await rollout('continued', 16);
    expect(continued.end.state).toBe('completed');
    expect(continued.end.runs).toBeGreaterThanOrEqual(2);
    const starts = await runStarts(continued.id, continued.end.runs + 1);
    expect(starts).toHaveLength(continued.end.runs + 1);
    const plain = await rollout('plain');

    const table = await runCli(suite.config, ['rollout', 'list']);
    expect(table.code).toBe(0);
    const lines = table.stdout.split('\n').filter((line) => line.startsWith(`${continued.id} `));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^${continued.id} +completed +${starts[0]}$`));

    const json = await runCli(suite.config, ['rollout', 'list', '--json']);
    expect(json.code).toBe(0);
    const rows = JSON.parse(json.stdout) as Row[];
    expect(rows.filter((r) => r.id === continued.id)).toEqual([
      { id: continued.id, state: 'completed', startedAt: starts[0], closedAt: expect.any(String) },
    ]);

    // --limit counts rollouts, whatever their runs: the list up to and including the continued
    // rollout holds each rollout once. (The stack is shared: other files' rollouts may be listed too.)
    const all = rows.map((r) => r.id);
    expect(all).toContain(plain.id);
    const upTo = all.indexOf(continued.id) + 1;
    const limited = await runCli(suite.config, ['rollout', 'list', '--json', '--limit', String(upTo)]);
    const limitedIds = (JSON.parse(limited.stdout) as Row[]).map((r) => r.id);
    expect(limitedIds).toEqual(all.slice(0, upTo));
    expect(limitedIds.at(-1)).toBe(continued.id);
    expect(new Set(limitedIds).size).toBe(upTo);
  });
});
