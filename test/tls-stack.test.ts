import { rmSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, temporalTlsOptions, type RefitConfig, type StackFile } from '../workers/config.js';
import { enrollHosts } from '../workers/dev/enroll.js';
import { freePorts, stackStatus, startStack, stopStack } from '../workers/dev/stack.js';
import { startSimFleet, type SimFleetHandle } from '../workers/sim/fleet.js';
import { startTestController, type TestController } from './helpers/fleet.js';
import { quietLog, tempDir, waitForOnline } from './helpers/controller.js';

// A stack of its own, over TLS with client certificates: `refit dev up --tls`.
const home = tempDir('tls-home');
const simDir = tempDir('tls-sim');
const hosts = ['tls-001', 'tls-002'];
let stack: StackFile;
let config: RefitConfig;
let controller: TestController | undefined;
let fleet: SimFleetHandle | undefined;

beforeAll(async () => {
  const [temporalPort, temporalUiPort, natsPort, natsMonitorPort] = await freePorts(4);
  stack = await startStack({ home, temporalPort, temporalUiPort, natsPort, natsMonitorPort, tls: true });
  await enrollHosts(home, hosts);
  config = loadConfig({ home, taskQueue: 'refit-tls-test' }, {});
}, 120_000);

afterAll(async () => {
  await fleet?.stop();
  await controller?.stop();
  await stopStack(home);
  for (const dir of [home, simDir]) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('refit dev up --tls', () => {
  it('records the TLS settings every command of the home then uses, and reports the stack healthy over TLS', async () => {
    expect(stack.nats.url).toMatch(/^tls:\/\/127\.0\.0\.1:/);
    expect(config.natsTls).toEqual({
      caFile: `${home}/tls/ca.pem`,
      certFile: `${home}/tls/client.pem`,
      keyFile: `${home}/tls/client.key`,
    });
    expect(config.temporalTls).toMatchObject({ caFile: `${home}/tls/ca.pem`, serverName: 'localhost' });
    expect(await stackStatus(home)).toMatchObject({ healthy: true });
  });

  it('refuses NATS clients without TLS, and with TLS but no client certificate', async () => {
    const port = Number(new URL(stack.nats.url).port);
    await expect(connect({ servers: `nats://127.0.0.1:${port}`, reconnect: false, timeout: 3_000 })).rejects.toThrow();
    await expect(
      connect({
        servers: `tls://127.0.0.1:${port}`,
        reconnect: false,
        timeout: 3_000,
        tls: { caFile: config.natsTls?.caFile as string },
      }),
    ).rejects.toThrow();
  });

  it('refuses Temporal clients without TLS, and with TLS but no client certificate', async () => {
    const describeDefault = (c: Connection) =>
      c.workflowService.describeNamespace({ namespace: 'default' }).finally(() => c.close());
    await expect(
      Connection.connect({ address: stack.temporal.address, connectTimeout: 3_000 }).then(describeDefault),
    ).rejects.toThrow();
    const caOnly = { caFile: config.temporalTls?.caFile as string, serverName: 'localhost' };
    await expect(
      Connection.connect({
        address: stack.temporal.address,
        connectTimeout: 3_000,
        ...temporalTlsOptions(caOnly),
      }).then(describeDefault),
    ).rejects.toThrow();
    const full = await Connection.connect({
      address: stack.temporal.address,
      ...temporalTlsOptions(config.temporalTls),
    });
    expect((await describeDefault(full)).namespaceInfo?.name).toBe('default');
  });

  it('runs a simulated rollout with every connection over TLS', async () => {
    controller = await startTestController(config);
    fleet = await startSimFleet({
      home,
      natsUrl: stack.nats.url,
      natsTls: config.natsTls,
      hosts,
      stateDir: simDir,
      presenceIntervalMs: 500,
      log: quietLog,
    });
    await waitForOnline(config, hosts);
    // ovs-convert waits for the controller's confirmation: the controller-to-host path over TLS too.
    const { result } = await controller.runRollout(`
apiVersion: refit/v1
kind: Campaign
name: tls-campaign
targets:
  hosts: [${hosts.join(', ')}]
waves: { canary: 0, batchSize: 1, maxInFlight: 1 }
steps:
  - kind: drain
  - kind: ovs-convert
  - kind: verify
    params: { targets: [{ address: 10.77.0.1 }], count: 3 }
  - kind: undrain
`);
    expect(result.state, JSON.stringify(result)).toBe('completed');
    expect(temporalTlsOptions(config.temporalTls)).toHaveProperty('tls.clientCertPair');
  });
});
