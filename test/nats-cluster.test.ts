import { readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../activities/poll.js';
import { readStreamState, readTrail } from '../activities/audit/read.js';
import { verifyTrail } from '../activities/audit/verify.js';
import { BUCKETS, STREAMS } from '../schemas/names.js';
import { CommandStatus } from '../schemas/command.js';
import { loadConfig, natsNodes, readStackFile, type NatsNode, type RefitConfig } from '../workers/config.js';
import { withNats } from '../workers/clients.js';
import { bucketKeys, READ_RETRY_BUDGET_MS, SHORT_REQUEST_MS } from '../activities/controller/bucket-keys.js';
import { readInventory } from '../workers/control/inventory.js';
import { startRollout } from '../workers/control/rollouts.js';
import { startControllerWorker, type ControllerWorker } from '../workers/controller.js';
import { CLUSTER_SETTINGS, natsConfigFile } from '../workers/dev/credentials.js';
import { controllerIdentity, freePorts, stackStatus, startStack, stopStack } from '../workers/dev/stack.js';
import { connectNats } from '../workers/nats.js';
import { simHostIds, startSimFleet, type SimFleetHandle } from '../workers/sim/fleet.js';
import { CAMPAIGN_STEPS, campaignStepsYaml, plan, quietLog, tempDir, temporalClient } from './helpers/controller.js';
import { getRolloutStatus, rolloutEnd } from '../workers/control/rollout-status.js';
import type { RolloutStatus } from '../schemas/rollout.js';

/**
 * `refit dev up --nats-cluster 3` in a home of this file's own (its own Temporal dev server too), a
 * rollout over a simulated fleet, and the node leading the most streams killed in the middle of it.
 */
const home = tempDir('cluster');
let config: RefitConfig;
let nodes: NatsNode[];

beforeAll(async () => {
  const [temporalPort, temporalUiPort, ...p] = await freePorts(11);
  const natsNodePorts = [0, 1, 2].map((i) => ({
    nats: p[i * 3] as number,
    monitor: p[i * 3 + 1] as number,
    route: p[i * 3 + 2] as number,
  }));
  await startStack({ home, temporalPort, temporalUiPort, natsCluster: 3, natsNodePorts });
  config = loadConfig({ home, taskQueue: `refit-cluster-${randomBytes(3).toString('hex')}` }, {});
  nodes = natsNodes(readStackFile(home) ?? expect.fail('no stack.json'));
});

afterAll(async () => {
  await stopStack(home);
  rmSync(home, { recursive: true, force: true });
});

/** The streams each live node says it leads, from its monitoring endpoint. */
async function streamLeaders(live: readonly NatsNode[]): Promise<Map<string, string>> {
  const leaders = new Map<string, string>();
  for (const node of live) {
    const res = await fetch(`${node.monitorUrl}/jsz?accounts=true&streams=true`, {
      signal: AbortSignal.timeout(2_000),
    });
    const jsz = (await res.json()) as {
      account_details?: { stream_detail?: { name: string; cluster?: { leader?: string } }[] }[];
    };
    for (const stream of jsz.account_details?.flatMap((a) => a.stream_detail ?? []) ?? []) {
      if (stream.cluster?.leader !== undefined) leaders.set(stream.name, stream.cluster.leader);
    }
  }
  return leaders;
}

/** A setting of deploy/nats/cluster.conf, as written there. */
function composeSetting(text: string, key: string): string | undefined {
  return new RegExp(`^\\s*${key}:\\s*"?([^"\\s]+)"?`, 'm').exec(text)?.[1];
}

describe('refit dev up --nats-cluster 3', () => {
  it('runs three clustered nodes with the compose cluster settings, every URL recorded', async () => {
    expect(config.natsUrl.split(',')).toEqual(nodes.map((n) => n.url));
    expect(config.natsReplicas).toBe(3);
    const status = await stackStatus(home);
    expect(status.healthy).toBe(true);
    expect(status.nats?.nodes.map((n) => [n.name, n.answering])).toEqual([
      ['nats-1', true],
      ['nats-2', true],
      ['nats-3', true],
    ]);

    const compose = readFileSync('deploy/nats/cluster.conf', 'utf8');
    const fromCompose = {
      name: composeSetting(compose, 'name'),
      maxPayload: composeSetting(compose, 'max_payload'),
      lameDuckDuration: composeSetting(compose, 'lame_duck_duration'),
      lameDuckGracePeriod: composeSetting(compose, 'lame_duck_grace_period'),
      maxFileStore: composeSetting(compose, 'max_file_store'),
      maxMemoryStore: composeSetting(compose, 'max_memory_store'),
    };
    expect(fromCompose).toEqual(CLUSTER_SETTINGS);
    const configs = [1, 2, 3].map((n) => readFileSync(natsConfigFile(home, n), 'utf8'));
    for (const text of configs) {
      expect(text).toContain('no_advertise: true');
      expect(text).toContain('include "users.conf"');
      expect(text).toContain(`max_payload: ${CLUSTER_SETTINGS.maxPayload}`);
    }
    // Distinct stores, one route list.
    expect(new Set(configs.map((t) => /store_dir: "([^"]+)"/.exec(t)?.[1])).size).toBe(3);
    expect(new Set(configs.map((t) => /routes: (\[.*\])/.exec(t)?.[1])).size).toBe(1);

    const nc = await connectNats(controllerIdentity(home, config.natsUrl));
    try {
      const jsm = await jetstreamManager(nc);
      for (const name of [STREAMS.commands, STREAMS.audit, ...Object.values(BUCKETS).map((b) => `KV_${b}`)]) {
        const info = await jsm.streams.info(name);
        expect([name, info.config.num_replicas, info.cluster?.replicas?.length]).toEqual([name, 3, 2]);
      }
    } finally {
      await nc.close();
    }
  });
});

describe('losing the NATS node that leads the most streams, mid-rollout', () => {
  let controller: ControllerWorker | undefined;
  let fleet: SimFleetHandle | undefined;
  const simDir = tempDir('cluster-sim');
  afterAll(async () => {
    await fleet?.stop();
    rmSync(simDir, { recursive: true, force: true });
    await controller?.shutdown();
  });

  it('completes the rollout n/n with nothing lost, and inventory reads answer during the outage', async () => {
    const hosts = simHostIds(6, `nc${randomBytes(2).toString('hex')}`);
    controller = await startControllerWorker(config, quietLog);
    // Every host enrolled: users.conf reloaded on all three nodes.
    fleet = await startSimFleet({
      home,
      natsUrl: config.natsUrl,
      hosts,
      stateDir: simDir,
      speed: 0.5,
      rebootPauseMs: 500,
      presenceIntervalMs: 500,
      log: quietLog,
    });
    await withNats(config, async (nc) => {
      await until(async () => (await readInventory(nc)).hosts.filter((h) => h.online).length === hosts.length, {
        what: 'every simulated host online',
        timeoutMs: 60_000,
      });
    });

    const temporal = await temporalClient(config);
    try {
      const id = `cluster-${randomBytes(4).toString('hex')}`;
      await startRollout(
        temporal.client,
        config.taskQueue,
        plan(`
apiVersion: refit/v1
kind: Campaign
name: cluster
targets: { hosts: [${hosts.join(', ')}] }
waves: { canary: 0, batchSize: 2, maxInFlight: 2 }
${campaignStepsYaml()}
`),
        id,
      );
      const handle = temporal.client.workflow.getHandle(id);

      // Step progress as `refit rollout status` shows it: each change of a host's state or current step.
      const changes: number[] = [];
      const seen: string[] = [];
      const startedAt = Date.now();
      let latest: RolloutStatus | undefined;
      let done = false;
      const following = (async () => {
        let last = '';
        while (!done) {
          latest = await getRolloutStatus(temporal.client, id).catch(() => latest);
          const now = latest === undefined ? last : JSON.stringify(latest.hosts.map((h) => [h.state, h.step]));
          if (now !== last) {
            changes.push(Date.now());
            seen.push(`${((Date.now() - startedAt) / 1000).toFixed(1)} s ${now}`);
          }
          last = now;
          await sleep(100);
        }
      })();
      // The kill comes once the first wave has succeeded, so the other two waves run through the outage.
      await until(() => (latest?.counts.succeeded ?? 0) >= 2, {
        what: () => `the first wave to succeed; the hosts as they changed:\n${seen.join('\n')}`,
        timeoutMs: 60_000,
      });
      expect(
        latest?.hosts.filter((h) => h.state === 'pending').length,
        'hosts not yet started when the node is killed',
      ).toBeGreaterThanOrEqual(2);

      const leaders = await streamLeaders(nodes);
      const leading = new Map<string, number>();
      for (const leader of leaders.values()) leading.set(leader, (leading.get(leader) ?? 0) + 1);
      const [victimName, led] = [...leading].sort((a, b) => b[1] - a[1])[0] ?? expect.fail('no stream leaders');
      const victim = nodes.find((n) => `refit-dev-${n.name.split('-')[1]}` === victimName) ?? expect.fail(victimName);
      const killedAt = Date.now();
      process.kill(victim.pid, 'SIGKILL');

      // The CLI's inventory read (`refit hosts`: a connection of its own, then readInventory) while the node is gone.
      const reads: { at: number; ms: number; ok: boolean; answer?: unknown }[] = [];
      const survivors = nodes.filter((n) => n !== victim);
      while (Date.now() - killedAt < 20_000) {
        const at = Date.now();
        const answer = await Promise.race([
          withNats(config, async (nc) => (await readInventory(nc)).hosts.length).catch((err: unknown) => String(err)),
          sleep(30_000).then(() => 'no answer within 30 s'),
        ]);
        const ok = answer === hosts.length;
        reads.push({ at: at - killedAt, ms: Date.now() - at, ok, ...(ok ? {} : { answer }) });
        await sleep(250);
      }

      const result = await rolloutEnd(handle);
      done = true;
      await following;

      const firstChange = changes.find((t) => t > killedAt);
      const stalledMs = (firstChange ?? Date.now()) - killedAt;
      const before = changes.filter((t) => t <= killedAt);
      const usualGapMs = Math.max(...before.slice(1).map((t, i) => t - (before[i] as number)));
      const failedReads = reads.filter((r) => !r.ok);
      const unansweredMs = failedReads.length === 0 ? 0 : Math.max(...failedReads.map((r) => r.at + r.ms));
      const longestReadMs = Math.max(...reads.map((r) => r.ms));
      console.log(
        `NATS node loss: killed ${victim.name} (leader of ${led} of ${leaders.size} streams); ` +
          `step progress stalled ${(stalledMs / 1000).toFixed(1)} s (longest gap before the kill ${(usualGapMs / 1000).toFixed(1)} s); ` +
          `inventory reads failed until ${(unansweredMs / 1000).toFixed(1)} s after the kill (${failedReads.length} of ${reads.length} failed), ` +
          `longest read ${(longestReadMs / 1000).toFixed(1)} s; the hosts as they changed (kill at ${((killedAt - startedAt) / 1000).toFixed(1)} s):\n${seen.join('\n')}`,
        ...failedReads,
      );

      // Completed n/n, every step of every host done once and its result kept.
      expect(result.state, JSON.stringify(result.hosts)).toBe('completed');
      expect(result.counts.succeeded).toBe(hosts.length);
      const nc = await connectNats(controllerIdentity(home, survivors.map((n) => n.url).join(',')));
      try {
        const results = await new Kvm(nc).open(BUCKETS.results);
        const keys = await bucketKeys(nc, BUCKETS.results);
        for (const hostId of hosts) {
          const kinds: string[] = [];
          for (const key of keys.filter((k) => k.startsWith(`${hostId}.`))) {
            const entry = await results.get(key);
            if (entry?.operation === 'PUT') {
              const status = CommandStatus.parse(entry.json());
              expect(status.state, `${hostId} ${status.kind}`).toBe('succeeded');
              kinds.push(status.kind);
            }
          }
          expect(kinds.sort(), hostId).toEqual([...CAMPAIGN_STEPS].sort());
          const effects = fleet.hosts.get(hostId)?.snapshot().effects ?? {};
          for (const step of ['drain', 'ovs-convert', 'sriov-enable', 'reboot', 'undrain'])
            expect(effects[step], `${hostId} ${step}`).toBe(1);
        }
        // `refit audit verify` reads the trail through a consumer of its own (see docs/RELIABILITY.md).
        const trail = await until(() => readTrail(nc).catch(() => undefined), {
          what: 'the audit trail',
          timeoutMs: 60_000,
        });
        const report = verifyTrail(trail, { stream: await readStreamState(nc) });
        expect(report.problems).toEqual([]);
        expect(report.ok).toBe(true);
        for (const hostId of hosts)
          expect(
            trail.some((r) => r.subject.endsWith(`.${hostId}`)),
            hostId,
          ).toBe(true);
      } finally {
        await nc.close();
      }

      // Every inventory read answered, and none took long.
      expect(failedReads, JSON.stringify(reads)).toEqual([]);
      // The read's retry budget and one more short request at most (bucket-keys.ts), with room for a loaded machine.
      expect(longestReadMs).toBeLessThan(READ_RETRY_BUDGET_MS + SHORT_REQUEST_MS + 3_000);
      // The minute the issue saw would fail this; docs/RELIABILITY.md has what it measures.
      expect(stalledMs).toBeLessThan(45_000);
    } finally {
      await temporal.close();
    }
  });
});
