import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simHostIds, type SimFleetHandle } from '../workers/sim/fleet.js';
import type { PlanPreview } from '../workers/control/plan-preview.js';
import { readInventory } from '../workers/control/inventory.js';
import { withNats } from '../workers/clients.js';
import { until } from '../activities/poll.js';
import { runCli, tempDir } from './helpers/controller.js';
import { startOnlineSimFleet, useSimFleet } from './helpers/fleet.js';

const tag = `pl${randomBytes(2).toString('hex')}`;
const hosts = simHostIds(4, tag);
const [h1, h2, h3, h4] = hosts as [string, string, string, string];
const [away] = simHostIds(5, tag).slice(4) as [string];
const labels = { campaign: tag };
const suite = useSimFleet({ hosts, speed: 4, labels, controller: false });
const { config, stack } = suite;
const dir = tempDir('plan');
let gone: SimFleetHandle | undefined;

beforeAll(async () => {
  gone = await startOnlineSimFleet(stack, config, { hosts: [away], labels });
  await gone.stop();
  await until(async () => (await withNats(config, readInventory)).hosts.some((h) => h.hostId === away && !h.online), {
    what: () => `${away} to be offline`,
    timeoutMs: 10_000,
    intervalMs: 200,
  });
});
afterAll(async () => {
  await gone?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function planFile(name: string, yaml: string): Promise<string> {
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(file, yaml);
  return file;
}

const campaign = (extra: string) => `apiVersion: refit/v1
kind: Campaign
name: plan-dry-run
targets:
  selector: { campaign: ${tag} }
waves: { canary: 1, batchSize: 2, maxInFlight: 2 }
limits: { perLabel: { rack: 1 } }
windows:
  - { days: [sat], start: '02:00', end: '06:00', timeZone: Europe/Berlin }
hostDuration: 1h
${extra}
steps:
  - kind: drain
  - kind: ovs-convert
  - kind: sriov-enable
    params: { nic: ens6, vfs: 4 }
  - kind: reboot
  - kind: verify
    params: { targets: [{ address: 10.0.0.1 }] }
  - kind: undrain
`;

describe('refit rollout plan', () => {
  it('resolves the targets against the live inventory and asks each host what would change, changing nothing', async () => {
    const before = hosts.map((h) => suite.fleet.hosts.get(h)?.snapshot());
    const started = Date.now();
    const out = await runCli(config, ['rollout', 'plan', await planFile('ok', campaign('')), '--json']);
    const tookMs = Date.now() - started;
    expect(out.code, out.stderr + out.stdout).toBe(0);
    const p = JSON.parse(out.stdout) as PlanPreview;
    expect(p.canRun).toBe(true);
    expect(p.targets.matched).toEqual(hosts);
    // The offline host is listed with its fate under onOffline: wait (the default); it is still a target.
    expect(p.targets.offline).toEqual([
      {
        hostId: away,
        lastReportedAt: expect.any(String),
        fate: expect.stringMatching(/^waits at the end of the waves; .* up to 30m/),
      },
    ]);
    expect(p.targets.leftOut).toEqual([]);
    // The offline host waits at the end (onOffline: wait by default).
    expect(p.waves.map((w) => w.hosts)).toEqual([[h1], [h2, h3], [h4, away]]);
    expect(p.failureDomains).toEqual([{ label: 'rack', max: 1, domains: { r1: [...hosts, away] } }]);
    expect(p.windows).toHaveLength(3);
    for (const w of p.windows) {
      expect(new Date(w.opensAt).getUTCDay()).toBe(6);
      expect(w.local[0]?.opensAt).toMatch(/^Sat \d{4}-\d\d-\d\d 02:00 (CET|CEST|GMT\+1|GMT\+2)$/);
    }
    // Each drain sends VMs outside its wave, to hosts with free slots.
    for (const d of p.drains) {
      expect(d.error).toBeUndefined();
      const wave = p.waves.find((w) => w.hosts.includes(d.hostId))?.hosts ?? [];
      for (const to of Object.values(d.vms)) expect(wave).not.toContain(to);
      for (const x of d.destinations) expect(x.freeAfter).toBeGreaterThanOrEqual(0);
    }
    // Every host answered its own dry run, as a simulation says it is.
    expect(p.hosts.map((h) => [h.hostId, h.driver, h.simulated])).toEqual(hosts.map((h) => [h, 'sim', true]));
    for (const h of p.hosts) {
      expect(h.steps.map((s) => s.kind)).toEqual([
        'drain',
        'ovs-convert',
        'sriov-enable',
        'reboot',
        'verify',
        'undrain',
      ]);
      for (const s of h.steps) expect(s.summary).toMatch(/^simulated: /);
    }
    // Nothing changed on any host.
    expect(hosts.map((h) => suite.fleet.hosts.get(h)?.snapshot())).toEqual(before);
    expect(tookMs).toBeLessThan(15_000);
  });

  it('prints the same for a person, within 80 columns', async () => {
    const out = await runCli(config, ['rollout', 'plan', await planFile('ok-text', campaign(''))]);
    expect(out.code, out.stderr).toBe(0);
    // For the README's operator guide: REFIT_PLAN_OUTPUT=<file> keeps what was printed.
    if (process.env.REFIT_PLAN_OUTPUT) await writeFile(process.env.REFIT_PLAN_OUTPUT, out.stdout);
    for (const line of out.stdout.split('\n')) expect(line.length, line).toBeLessThanOrEqual(80);
    expect(out.stdout).toContain('offline targets (onOffline: wait):');
    expect(out.stdout).toMatch(new RegExp(`  ${away}, last reported [0-9-]+ [0-9:]+: waits at the end`));
    expect(out.stdout).toContain('(Europe/Berlin)');
    expect(out.stdout).toContain('the plan can run');
  });

  it('leaves an offline host out with onOffline: skip, saying what becomes of it', async () => {
    const out = await runCli(config, [
      'rollout',
      'plan',
      await planFile('skip', campaign('onOffline: skip')),
      '--json',
    ]);
    expect(out.code, out.stderr).toBe(0);
    const p = JSON.parse(out.stdout) as PlanPreview;
    expect(p.targets.offline.map((o) => [o.hostId, o.fate])).toEqual([
      [away, 'skipped at start, counted as skipped (onOffline: skip)'],
    ]);
    expect(p.targets.leftOut).toEqual([
      { hostId: away, reason: 'offline', detail: expect.stringContaining('skipped at start') },
    ]);
    expect(p.waves.flatMap((w) => w.hosts)).toEqual(hosts);
  });

  it('exits 2 naming every reason the plan cannot run', async () => {
    const yaml = campaign('').replace(`selector: { campaign: ${tag} }`, `hosts: [${h1}, ${tag}-nobody]`);
    const out = await runCli(config, [
      'rollout',
      'plan',
      await planFile(
        'bad',
        yaml.replace('- kind: drain', `- kind: drain\n    params: { destinations: { vm1: ${tag}-ghost } }`),
      ),
    ]);
    expect(out.code).toBe(2);
    expect(out.stdout).toContain('the plan cannot run (2):');
    expect(out.stdout).toContain(`${tag}-nobody is named but`);
    // As rollout start refuses it: a drain to a host the inventory does not know.
    expect(out.stdout).toContain(`steps[0].params.destinations.vm1: ${tag}-ghost is not a host of the inventory`);
  });

  it('says a four-eyes plan cannot start without an operator key, as start would refuse it', async () => {
    const file = await planFile('four-eyes', campaign('approvals: { afterCanary: true, distinctFrom: starter }'));
    const unsigned = await runCli(config, ['rollout', 'plan', file], { REFIT_OPERATOR_KEY: '' });
    expect(unsigned.code, unsigned.stderr).toBe(2);
    expect(unsigned.stdout).toContain('the plan cannot run (1):');
    expect(unsigned.stdout).toContain('requires four eyes (approvals.distinctFrom: starter)');
    // With the operator's key, as start would sign it, it can run.
    const keys = path.join(dir, 'config');
    expect((await runCli(config, ['operator', 'keygen'], { XDG_CONFIG_HOME: keys })).code).toBe(0);
    const signed = await runCli(config, ['rollout', 'plan', file], {
      REFIT_OPERATOR_KEY: path.join(keys, 'refit', 'operator.nk'),
    });
    expect(signed.code, signed.stdout + signed.stderr).toBe(0);
  });

  it('refuses an invalid plan as start does, with line and column', async () => {
    const out = await runCli(config, ['rollout', 'plan', await planFile('invalid', campaign('onOffline: later'))]);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/onOffline \(line 11, column 12\): /);
  });
});
