import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { until } from '../activities/poll.js';
import { CommandStatus, resultKey } from '../schemas/command.js';
import { HostPresence } from '../schemas/host.js';
import { BUCKETS, SUBJECTS, inboxPrefix } from '../schemas/names.js';
import { readIdentities } from '../workers/dev/credentials.js';
import { authenticatorFromFile, identityOfHost } from '../workers/nats.js';
import { hostSeedFile } from '../workers/host/agent.js';
import { CLI, tempDir } from './helpers/controller.js';
import { testStack, uniqueHostId } from './helpers/stack.js';

const AGENT = path.resolve('dist/workers/host/agent-main.js');
const stack = testStack();
const dir = tempDir('enroll');
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await stack.closeAll();
  rmSync(dir, { recursive: true, force: true });
});

const env = () => ({
  ...process.env,
  REFIT_HOME: stack.home,
  REFIT_NATS_URL: stack.natsUrl,
  REFIT_LOG_LEVEL: 'warn',
});

function enrollRequest(hostId: string): string {
  const out = spawnSync(
    process.execPath,
    [AGENT, 'enroll-request', '--id', hostId, '--state-dir', path.join(dir, hostId)],
    {
      encoding: 'utf8',
    },
  );
  expect(out.status).toBe(0);
  return out.stdout.trim();
}

function refit(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { env: env(), encoding: 'utf8', timeout: 60_000 });
}

/** One login attempt with the seed the host made, as NATS judges it. */
async function logsIn(hostId: string): Promise<boolean> {
  try {
    const nc = await connect({
      servers: stack.natsUrl,
      authenticator: authenticatorFromFile(hostSeedFile(path.join(dir, hostId))),
      inboxPrefix: inboxPrefix(identityOfHost(hostId)),
      timeout: 3_000,
      reconnect: false,
    });
    await nc.close();
    return true;
  } catch (err) {
    expect(String(err)).toMatch(/authorization/i);
    return false;
  }
}

describe('enrolment by public key: the seed never leaves the host', () => {
  it('admits the hosts of a file only when every line is good; an admitted host runs a step, another is refused', async () => {
    const admitted = uniqueHostId('own');
    const other = uniqueHostId('notyet');
    const request = enrollRequest(admitted);
    const otherRequest = enrollRequest(other);

    // Started before it is admitted, the agent waits for its login to be accepted.
    const agent = spawn(
      process.execPath,
      [
        AGENT,
        '--id',
        admitted,
        '--driver',
        'sim',
        '--state-dir',
        path.join(dir, admitted),
        '--presence-interval',
        '500',
      ],
      { env: { ...env(), REFIT_NATS_URL: stack.natsUrl }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(agent);
    let stderr = '';
    agent.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    await until(() => stderr.includes('refit enroll --pubkey'), {
      what: 'the agent to print its key',
      timeoutMs: 20_000,
    });
    expect(stderr).toContain(`NATS identity ${request.split(' ')[1]}`);

    const before = readFileSync(path.join(stack.home, 'nats', 'identities.json'), 'utf8');
    const bad = path.join(dir, 'bad.txt');
    writeFileSync(bad, `# hypervisors of rack r1\n${request}\n\n${other} not-a-key\nx\n`);
    const refused = refit(['enroll', '--from', bad]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain(`${bad}:4: "not-a-key" is not an nkey user public key`);
    expect(refused.stderr).toContain(`${bad}:5: expected "<hostId> <publicKey>", got 1 word(s)`);
    expect(refused.stderr).toContain('2 bad line(s)');
    expect(readFileSync(path.join(stack.home, 'nats', 'identities.json'), 'utf8')).toBe(before);

    const good = path.join(dir, 'hosts.txt');
    writeFileSync(good, `# hypervisors of rack r1\n${request}\n`);
    const enrolled = refit(['enroll', '--from', good]);
    expect(enrolled.stderr).toBe('');
    expect(enrolled.stdout).toContain('admitted 1 host(s): 1 new');
    expect(enrolled.status).toBe(0);
    // Only the public key is on the controller side, with exactly the host's permissions.
    expect(readIdentities(stack.home)[identityOfHost(admitted)]).toEqual({
      publicKey: request.split(' ')[1],
      kind: 'host',
      hostId: admitted,
      ownKey: true,
    });

    const controller = await stack.controllerConnection();
    const hosts = await new Kvm(controller).open(BUCKETS.hosts);
    await until(async () => (await hosts.get(admitted))?.operation === 'PUT', {
      what: 'the admitted agent to report presence',
      timeoutMs: 30_000,
    });
    expect(HostPresence.parse((await hosts.get(admitted))?.json())).toMatchObject({
      hostId: admitted,
      simulated: true,
    });
    const commandId = `enroll-test/${admitted}/1`;
    await jetstream(controller).publish(
      SUBJECTS.command(admitted),
      JSON.stringify({
        commandId,
        hostId: admitted,
        kind: 'drain',
        mode: 'apply',
        params: {},
        rolloutId: 'enroll-test',
        workflowId: `enroll-test-${admitted}`,
        issuedAt: new Date().toISOString(),
      }),
      { msgID: commandId },
    );
    const results = await new Kvm(controller).open(BUCKETS.results);
    const status = await until(
      async () => {
        const entry = await results.get(resultKey(admitted, commandId));
        const s = entry?.operation === 'PUT' ? CommandStatus.parse(entry.json()) : undefined;
        return s?.state === 'succeeded' ? s : undefined;
      },
      { what: 'the step to succeed on the admitted host', timeoutMs: 30_000 },
    );
    expect(status.outcome?.changed).toBe(true);

    // The other host made its key too, but nobody admitted it: NATS refuses its login.
    expect(await logsIn(other)).toBe(false);
    const one = refit(['enroll', '--pubkey', otherRequest.split(' ')[1]!, '--id', other]);
    expect(one.status).toBe(0);
    expect(await logsIn(other)).toBe(true);
  }, 120_000);
});
