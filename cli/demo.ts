import { rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { loadPlan, newRolloutId, startRollout } from '../workers/control/rollouts.js';
import { watchRollout } from './rollout.js';
import { summaryLine } from './render.js';
import { freePorts, startStack, stopStack } from '../workers/dev/stack.js';
import { loadConfig } from '../workers/config.js';
import { withNats } from '../workers/clients.js';
import { waitForHostsOnline } from '../workers/control/inventory.js';
import { startControllerWorker } from '../workers/controller.js';
import { startSimFleet } from '../workers/sim/fleet.js';
import { createLogger } from '../workers/log.js';
import { labPrerequisitesMissing, qemuMissing } from '../lab/tools.js';
import { labUp } from '../lab/up.js';
import { labDown } from '../lab/down.js';
import { mixedFlavours, startLabWorkers } from '../lab/workers.js';

/**
 * `npm run demo`: the embedded stack, the controller worker and a fleet — the network-namespace lab
 * when this runs as root with the lab's tools, a simulated fleet otherwise — and the example
 * campaign across it with live progress. Everything it starts, it stops.
 */
const labMissing = process.env.REFIT_DEMO_FLEET === 'sim' ? ['REFIT_DEMO_FLEET=sim'] : labPrerequisitesMissing();
const useLab = labMissing.length === 0;
const HOSTS = Number(process.env.REFIT_DEMO_HOSTS ?? (useLab ? 4 : 12));
const root = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
const home = path.join(root, '.refit', 'demo');
const say = (line: string) => process.stderr.write(`demo: ${line}\n`);
process.env.REFIT_LOG_LEVEL ??= 'warn';
const log = createLogger('refit-demo');

const [temporalPort, temporalUiPort, natsPort, natsMonitorPort] = (await freePorts(4)) as [
  number,
  number,
  number,
  number,
];
// Each demo starts from a clean slate: a fresh fleet, an empty history.
await stopStack(home);
await rm(home, { recursive: true, force: true });
say('starting the embedded stack (Temporal dev server, nats-server with JetStream)');
const stack = await startStack({ home, temporalPort, temporalUiPort, natsPort, natsMonitorPort });
const stops: (() => Promise<unknown>)[] = [() => stopStack(home)];
let exitCode = 1;
let summary = '';
let hostIds: readonly string[] = [];
// Ctrl-C stops everything the demo started, lab namespaces included.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    say(`${signal}: stopping what the demo started`);
    void (async () => {
      for (const stop of stops) await stop().catch(() => undefined);
      process.exit(130);
    })();
  });
}
try {
  say(`Temporal ${stack.temporal.address} (web UI ${stack.temporal.uiAddress}), NATS ${stack.nats.url}`);
  const config = loadConfig({ home });
  const controller = await startControllerWorker(config, log);
  stops.unshift(() => controller.shutdown());
  if (useLab) {
    // Mixed, as a Proxmox fleet moving over is: half the hosts Proxmox-like, the rest Debian.
    const flavours = mixedFlavours(HOSTS);
    const guestsMissing = process.env.REFIT_DEMO_VMS === 'netns' ? ['REFIT_DEMO_VMS=netns'] : qemuMissing();
    const vmKind = guestsMissing.length === 0 ? ('qemu' as const) : ('netns' as const);
    say(
      `building the LAB: ${HOSTS} hosts as network namespaces (${Object.entries(flavours)
        .map(([h, f]) => `${h} ${f}`)
        .join(
          ', ',
        )}) with Linux bridges, VMs, Open vSwitch, real ip/ovs-vsctl/ifup/ifreload/hping3 (10.77.0.0/16, inside the lab only)`,
    );
    say(
      vmKind === 'qemu'
        ? 'its VMs are real QEMU guests (TCG), one per host: drain and undrain live-migrate them with QMP under a ping stream'
        : `its VMs are network namespaces (QEMU guests need: ${guestsMissing.join(', ')})`,
    );
    const labDir = path.join(home, 'lab');
    stops.unshift(() => labDown({ labDir }));
    const lab = await labUp({ labDir, hosts: HOSTS, vmsPerHost: 1, vmKind, flavours }, log);
    const workers = await startLabWorkers({ lab, home, natsUrl: stack.nats.url, log });
    stops.unshift(() => workers.stop());
    hostIds = lab.hosts.map((h) => h.id);
  } else {
    say(
      `starting a SIMULATED fleet of ${HOSTS} hosts (sim driver: no commands run, no packets sent), each with its own NATS identity`,
    );
    say(`(the lab needs: ${labMissing.join(', ')})`);
    const fleet = await startSimFleet({
      home,
      natsUrl: stack.nats.url,
      hosts: HOSTS,
      stateDir: path.join(home, 'sim'),
      log,
    });
    stops.unshift(() => fleet.stop());
    hostIds = fleet.hostIds;
  }

  const plan = await loadPlan(path.join(root, 'examples', useLab ? 'lab-ovs-sriov.yaml' : 'ovs-sriov.yaml'));
  if (useLab)
    say(
      'plan examples/lab-ovs-sriov.yaml: verify allows 100 ms more latency in the lab (userspace datapath); loss is checked as on real hosts',
    );
  const connection = await Connection.connect({ address: stack.temporal.address });
  stops.unshift(() => connection.close());
  const client = new Client({ connection });
  // The rollout selects hosts that report presence; it starts once the whole fleet does.
  await withNats(config, (nc) =>
    waitForHostsOnline(nc, hostIds, {
      timeoutMs: 90_000,
      onProgress: (online, of) => say(`${online}/${of} hosts report presence`),
    }),
  );
  const id = newRolloutId(plan.name);
  await startRollout(client, config.taskQueue, plan, id);
  say(`rollout ${id} started: ${plan.steps.map((s) => s.kind).join(' → ')}`);
  // A demo stops where an operator would step in (a paused rollout), and says so.
  const final = await watchRollout(client, id, process.stdout, {
    stopAt: new Set(['completed', 'failed', 'cancelled', 'paused']),
  });
  summary = summaryLine(final);
  exitCode = final.state === 'completed' ? 0 : 1;
} finally {
  say('stopping what the demo started');
  for (const stop of stops) await stop().catch((err: unknown) => say(`while stopping: ${String(err)}`));
}
if (summary) process.stdout.write(`${summary}\n`);
process.exit(exitCode);
