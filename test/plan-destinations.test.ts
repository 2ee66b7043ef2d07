import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { simHostIds } from '../workers/sim/fleet.js';
import { runCli, tempDir } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';
import { rolloutEnd } from '../workers/control/rollout-status.js';

const hosts = simHostIds(2, `dst${randomBytes(2).toString('hex')}`);
const [h1, h2] = hosts as [string, string];
const suite = useSimFleet({ hosts, speed: 4 });
const dir = tempDir('destinations');

/** A drain of `target` whose first VM the plan sends to `destination`. */
const planText = (name: string, target: string, destination: string) => `apiVersion: refit/v1
kind: Campaign
name: ${name}
targets: { hosts: [${target}] }
waves: { canary: 0 }
steps:
  - kind: drain
    params: { destinations: { ${target}-vm1: ${destination} } }
  - kind: undrain
`;

describe('drain destinations a plan names', () => {
  it('are refused by refit rollout start, naming each unknown host, before anything starts', async () => {
    const file = path.join(dir, 'ghost.yaml');
    writeFileSync(file, planText('ghost', h1, 'pve-999'));
    const id = `ghost-${randomBytes(4).toString('hex')}`;
    const out = await runCli(suite.config, ['rollout', 'start', file, '--id', id]);
    expect(out.stderr).toBe(
      `refit: plan ${file} drains VMs to unknown hosts; nothing was started:\n` +
        `  steps[0].params.destinations.${h1}-vm1: pve-999 is not a host of the inventory\n`,
    );
    expect(out.code).toBe(2);
    await expect(suite.controller.client.workflow.getHandle(id).describe()).rejects.toThrow(/not found/i);
    expect(suite.fleet.hosts.get(h1)?.snapshot().effects.drain ?? 0).toBe(0);
  });

  it('are taken by refit rollout start when every one is a host of the inventory', async () => {
    const file = path.join(dir, 'known.yaml');
    writeFileSync(file, planText('known', h1, h2));
    const id = `known-${randomBytes(4).toString('hex')}`;
    const out = await runCli(suite.config, ['rollout', 'start', file, '--id', id]);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const end = await rolloutEnd(suite.controller.client.workflow.getHandle(id));
    expect(end).toMatchObject({ state: 'completed' });
  });

  it('are checked again when the drain is sent: a plan started without the CLI fails there, no VM moved', async () => {
    const { result } = await suite.controller.runRollout(planText('ghost-direct', h2, 'pve-999'));
    const host = result.hosts.find((h) => h.hostId === h2);
    expect(host?.state).toMatch(/^(failed|rolled-back)$/);
    expect(host?.error).toBe(
      `drain of ${h2}: the plan sends VMs to hosts that are not in the inventory: ${h2}-vm1 → pve-999`,
    );
    expect(suite.fleet.hosts.get(h2)?.snapshot().effects.drain ?? 0).toBe(0);
  });
});
