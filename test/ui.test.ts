import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RolloutStatus } from '../schemas/rollout.js';
import { operatorUpdates } from '../workflows/messages.js';
import { startRollout } from '../workers/control/rollouts.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { findChromium, launchChromium, type Browser, type BrowserPage } from './helpers/chromium.js';
import { CLI, cliEnv, plan, runCli } from './helpers/controller.js';
import { useSimFleet } from './helpers/fleet.js';

const chromium = findChromium();
if (chromium === undefined)
  console.info(
    'test/ui.test.ts: the browser tests skip: no chromium on PATH, or none at REFIT_CHROMIUM (scripts/setup.sh installs it as root)',
  );
/** `npm run ui-screenshots` sets this to docs/img: the pages are saved there as PNG as they are checked. */
const shots = process.env.REFIT_UI_SCREENSHOTS;

const hosts = simHostIds(4, `ui${randomBytes(2).toString('hex')}`);
const targets = hosts.slice(0, 3);
// Steps slow enough to be seen changing through a 2 s poll, quick enough for the whole rollout to end in ~20 s.
const suite = useSimFleet({
  hosts,
  stepMs: { drain: 1_500, 'ovs-convert': 1_500, verify: 1_500, undrain: 1_000 },
});

const campaign = plan(`apiVersion: refit/v1
kind: Campaign
name: ui-demo
targets: { hosts: [${targets.join(', ')}] }
waves: { canary: 1, batchSize: 2, maxInFlight: 2 }
failureBudget: { maxFailedHosts: 1 }
approvals: { afterCanary: true }
steps:
  - kind: drain
  - kind: ovs-convert
  - kind: reboot
    params: { timeout: 1m }
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 3 }
  - kind: undrain
`);

/** A hostile text: were it markup, it would add an image and set the page's title. */
const HOSTILE = `<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>`;

/** `refit ui --port 0` against the test stack; its URL from what it prints. */
async function startUi(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [CLI, 'ui', '--port', '0'], {
    env: cliEnv(suite.config),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`refit ui did not say where it serves: ${out}${err}`)), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /serving (http:\/\/\S+)/.exec(out);
      if (m?.[1] === undefined) return;
      clearTimeout(timer);
      resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`refit ui exited ${code}: ${out}${err}`)));
  });
  return { url, child };
}

/** A raw request, so that the Host header and method can be anything. */
function request(
  url: string,
  opts: { method?: string; host?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: opts.method ?? 'GET', headers: opts.host ? { host: opts.host } : {} },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('refit ui refuses what it must', () => {
  it('refuses to listen beyond loopback without --allow-remote, and says why', async () => {
    const out = await runCli(suite.config, ['ui', '--bind', '0.0.0.0', '--port', '0']);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('refusing to serve the web view on 0.0.0.0: it has no login of its own');
    expect(out.stderr).toContain('--allow-remote');
  });
});

describe.skipIf(chromium === undefined)(
  `refit ui in headless Chromium${chromium === undefined ? ' (skipped: no chromium on PATH, or none at REFIT_CHROMIUM; scripts/setup.sh installs it as root)' : ''}`,
  () => {
    let ui: { url: string; child: ChildProcess } | undefined;
    let browser: Browser | undefined;
    let page: BrowserPage;
    const rolloutId = `ui-demo-${randomBytes(3).toString('hex')}`;
    const server = () => (ui ?? { url: '' }).url;
    const shoot = async (name: string) => {
      if (shots === undefined) return;
      mkdirSync(shots, { recursive: true });
      await page.screenshot(path.join(shots, name));
    };

    beforeAll(async () => {
      ui = await startUi();
      browser = await launchChromium(chromium as string);
      page = await browser.newPage(1280, 760);
    });
    afterAll(async () => {
      await browser?.close();
      ui?.child.kill('SIGTERM');
    });

    it('answers only GET, and only to a loopback Host header', async () => {
      expect((await request(`${server()}api/rollouts`)).status).toBe(200);
      const post = await request(`${server()}api/rollouts`, { method: 'POST' });
      expect(post.status).toBe(405);
      expect(post.body).toContain('read-only');
      // A page elsewhere whose name resolves to 127.0.0.1 (DNS rebinding) gets nothing.
      const rebound = await request(`${server()}api/rollouts`, { host: 'attacker.example' });
      expect(rebound.status).toBe(421);
      expect((await request(`${server()}api/hosts/${encodeURIComponent('../x')}`)).status).toBe(400);
    });

    it('shows a running rollout: in the list, its hosts and steps changing, a host with its audit events and diffs', async () => {
      const { client } = suite.controller;
      await startRollout(client, suite.config.taskQueue, campaign, rolloutId);

      // The list has it.
      await page.goto(server());
      await page.waitFor(`document.querySelector('[data-rollout="${rolloutId}"]')`, 'the rollout in the list');
      expect(
        await page.evaluate(`document.querySelector('[data-rollout="${rolloutId}"] a').getAttribute('href')`),
      ).toBe(`#/rollouts/${rolloutId}`);
      await shoot('ui-rollouts.png');

      // Its page: every host in its wave, and a host's step changing while the page polls by itself. A
      // host shows the first step of the run of steps it is in (decision 0037): the reboot ends a run.
      await page.goto(`${server()}#/rollouts/${rolloutId}`);
      await page.waitFor(`document.querySelectorAll('[data-host]').length === ${targets.length}`, 'three host rows');
      expect(await page.evaluate(`[...document.querySelectorAll('[data-wave]')].map((w) => w.dataset.wave)`)).toEqual([
        '0',
        '1',
      ]);
      expect(await page.evaluate(`document.querySelector('[data-budget]').textContent`)).toBe('0 of 1 failed hosts');
      // Sim hosts: the page says so above everything else, and marks each of them. Which hosts are
      // simulated comes from their presence, read with each poll: a host whose presence lapsed under a
      // loaded test run is missing from one drawing and back in the next (seen once in a full run).
      const banner = `SIMULATED: ${targets.length} of ${targets.length} hosts run the sim driver`;
      await page.waitFor(
        `document.querySelector('[data-simulated]')?.textContent.includes(${JSON.stringify(banner)}) && document.querySelectorAll('[data-host] [data-sim]').length === ${targets.length}`,
        `the banner "${banner}" and every host marked SIMULATED`,
      );
      expect(await page.evaluate(`document.querySelector('[data-simulated]')?.textContent`)).toContain(banner);
      const canary = targets[0] as string;
      const stepOf = `document.querySelector('[data-host="${canary}"] [data-step]').textContent`;
      const firstStep = await page.waitFor<string>(`(${stepOf}) !== '-' && ${stepOf}`, 'the canary on a step');
      // The step, and its wave's state, read together from one drawing of the page.
      const [nextStep, canaryWave] = await page.waitFor<[string, string]>(
        `(() => { const s = ${stepOf}; return s !== ${JSON.stringify(firstStep)} && s !== '-' && [s, document.querySelector('[data-wave="0"] h2 [data-state]').dataset.state]; })()`,
        `the canary's step to change from ${firstStep}`,
      );
      expect(new Set([firstStep, nextStep]).size).toBe(2);
      expect(canaryWave).toBe('running');
      await shoot('ui-rollout.png');

      // The host page: its step timeline from the host workflow and its audit events, with a diff.
      await page.goto(`${server()}#/rollouts/${rolloutId}/hosts/${canary}`);
      await page.waitFor(`document.querySelector('[data-event="step.succeeded"]')`, 'a step.succeeded event');
      await page.waitFor(
        `document.querySelector('[data-step="ovs-convert"][data-step-state="succeeded"]')`,
        'ovs-convert done',
      );
      await page.waitFor(`document.querySelector('pre.diff')`, 'a diff of a step');
      await page.waitFor(
        `document.querySelector('[data-simulated]')?.textContent.includes('SIMULATED host: its agent runs the sim driver')`,
        'the SIMULATED host banner',
      );
      const events = await page.evaluate<string[]>(
        `[...document.querySelectorAll('[data-event]')].map((e) => e.dataset.event)`,
      );
      expect(events).toEqual(expect.arrayContaining(['host.started', 'step.started', 'step.succeeded']));
      expect(await page.evaluate(`document.querySelector('pre.diff').textContent`)).toMatch(/→|^[+-]/m);
      await shoot('ui-host.png');
      expect(page.errors).toEqual([]);
    });

    it('shows the approval the rollout waits for after its canary, with the command that gives it', async () => {
      await page.goto(`${server()}#/rollouts/${rolloutId}`);
      const approval = await page.waitFor<string>(
        `(() => { const t = document.querySelector('[data-approval]')?.textContent ?? ''; return t.includes('before wave 1') && t; })()`,
        'the pending approval',
      );
      expect(approval).toContain(`refit rollout approve ${rolloutId}`);
      expect(
        await page.evaluate(`document.querySelector('[data-wave="1"] [data-host] [data-state]').dataset.state`),
      ).toBe('pending');
      await suite.controller.client.workflow
        .getHandle(rolloutId)
        .executeUpdate(operatorUpdates.approve, { args: [{ by: 'tester' }] });
      await page.waitFor(
        `document.querySelector('[data-approval]')?.textContent.endsWith('none')`,
        'the approval to be given',
      );
    });

    it('renders hostile text as text', async () => {
      const { client } = suite.controller;
      const handle = client.workflow.getHandle(rolloutId);
      await handle.executeUpdate(operatorUpdates.pause, { args: [{ by: 'tester', reason: HOSTILE }] });
      await page.goto(`${server()}#/rollouts/${rolloutId}`);
      const shown = await page.waitFor<string>(`document.querySelector('[data-paused]')?.textContent`, 'the pause');
      expect(shown).toContain(HOSTILE);
      expect(await page.evaluate(`document.querySelectorAll('main img, main script').length`)).toBe(0);
      expect(await page.evaluate(`document.title`)).toBe('refit');
      await handle.executeUpdate(operatorUpdates.resume, { args: [{ by: 'tester' }] });
      expect(page.errors).toEqual([]);
    });

    it('follows the rollout to its end without a reload', async () => {
      const end = (await suite.controller.client.workflow.getHandle(rolloutId).result()) as RolloutStatus;
      expect(end.state).toBe('completed');
      // Still the rollout's page, loaded while it was paused: it polled its way to the end.
      const states = await page.waitFor<string[]>(
        `(() => { const s = [...document.querySelectorAll('[data-host] [data-state]')].map((e) => e.dataset.state); return s.length === 3 && s.every((x) => x === 'done') && s; })()`,
        'every host done',
      );
      expect(states).toEqual(['done', 'done', 'done']);
      expect(await page.evaluate(`document.querySelector('.cards [data-state]').dataset.state`)).toBe('completed');
      await page.goto(server());
      await page.waitFor(
        `document.querySelector('[data-rollout="${rolloutId}"] [data-state]')?.dataset.state === 'completed'`,
        'the rollout listed as completed',
      );
    });
  },
);
