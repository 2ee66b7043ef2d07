import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { agentSettings } from '../workers/host/agent-cli.js';
import { defaultAgentStateDir, defaultHostId } from '../workers/host/agent.js';
import { tempDir } from './helpers/controller.js';
import { until } from '../activities/poll.js';
import { ensureSeed } from '../workers/nkey.js';

const AGENT = path.resolve('dist/workers/host/agent-main.js');
const dir = tempDir('agent-main');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** Credentials given: the agent does not wait to be admitted, it gives up after REFIT_CONNECT_TIMEOUT. */
const seedFile = path.join(dir, 'creds.nk');
ensureSeed(seedFile);

/** Run the built agent entry point; every module it loads is reported on stderr as LOADED <url>. */
function agent(args: string[], env: NodeJS.ProcessEnv = {}) {
  const hooks = path.join(dir, 'hooks.mjs');
  writeFileSync(
    hooks,
    `export async function resolve(s, c, next) { const r = await next(s, c); process.stderr.write('LOADED ' + r.url + '\\n'); return r; }\n`,
  );
  const register = path.join(dir, 'register.mjs');
  writeFileSync(
    register,
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
  );
  return spawnSync(process.execPath, [AGENT, ...args], {
    env: { ...agentEnv(), NODE_OPTIONS: `--import=${pathToFileURL(register).href}`, ...env },
    cwd: dir,
    encoding: 'utf8',
    timeout: 60_000,
  });
}

/** Nothing listens on the NATS URL: an agent that gets past its start fails after a second. */
function agentEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: dir,
    REFIT_HOME: path.join(dir, 'home'),
    REFIT_NATS_URL: 'nats://127.0.0.1:1',
    REFIT_CONNECT_TIMEOUT: '1s',
    REFIT_NATS_CREDS: seedFile,
    REFIT_LOG_LEVEL: 'error',
  };
}

describe('the host agent entry point (refit-host)', () => {
  it('takes its configuration from flags over the environment, with defaults never under the working directory', () => {
    const env = {
      REFIT_NATS_URL: 'nats://a:4222,nats://b:4222',
      REFIT_NATS_CREDS: '/etc/refit/host.nk',
      REFIT_HOST_ID: 'pve-07',
      REFIT_HOST_LABELS: 'rack=r1',
      REFIT_DRIVER: 'sim',
      REFIT_STATE_DIR: '/srv/refit',
    };
    expect(agentSettings([], env)).toMatchObject({
      command: 'run',
      natsUrl: 'nats://a:4222,nats://b:4222',
      credsFile: '/etc/refit/host.nk',
      hostId: 'pve-07',
      labels: 'rack=r1',
      driver: 'sim',
      stateDir: '/srv/refit',
    });
    expect(agentSettings(['enroll-request', '--id', 'pve-08', '--state-dir', '/x'], env)).toMatchObject({
      command: 'enroll-request',
      hostId: 'pve-08',
      stateDir: '/x',
    });
    const defaults = agentSettings([], { HOME: '/home/op' });
    expect(defaults).toMatchObject({
      driver: 'linux',
      hostId: defaultHostId(),
      linux: { vmBackend: 'auto', pveNodes: {} },
    });
    expect(defaults).not.toHaveProperty('linux.pveNode');
    expect(defaults).not.toHaveProperty('credsFile');
    expect(defaultAgentStateDir({}, 0, '/home/op')).toBe('/var/lib/refit');
    expect(defaultAgentStateDir({}, 1000, '/home/op')).toBe('/home/op/.local/state/refit');
    expect(defaultAgentStateDir({ XDG_STATE_HOME: '/xdg' }, 1000, '/home/op')).toBe('/xdg/refit');
    expect(defaultAgentStateDir({ XDG_STATE_HOME: 'relative' }, 1000, '/home/op')).toBe('/home/op/.local/state/refit');
    expect(defaultHostId('PVE-01.example.net')).toBe('pve-01');
  });

  it("takes the linux driver's VM backend and Proxmox node names from host.env, a flag over its variable", () => {
    const env = { REFIT_VM_BACKEND: 'proxmox', REFIT_PVE_NODE: 'pve1', REFIT_PVE_NODES: 'hv2=pve2, hv3=pve3' };
    expect(agentSettings([], env)).toMatchObject({
      linux: { vmBackend: 'proxmox', pveNode: 'pve1', pveNodes: { hv2: 'pve2', hv3: 'pve3' } },
    });
    expect(agentSettings(['--vm-backend', 'libvirt', '--pve-nodes', 'hv4=pve4'], env)).toMatchObject({
      linux: { vmBackend: 'libvirt', pveNode: 'pve1', pveNodes: { hv4: 'pve4' } },
    });
  });

  it('refuses a bad setting with where it came from, and exits 2', () => {
    for (const [args, env, message] of [
      [[], { REFIT_DRIVER: 'xen' }, 'REFIT_DRIVER "xen"'],
      [['--id', 'Not_A_Label'], {}, '--id "Not_A_Label"'],
      [[], { REFIT_STATE_DIR: 'relative/dir' }, 'REFIT_STATE_DIR "relative/dir" must be an absolute path'],
      [['frobnicate'], {}, 'unknown command "frobnicate"'],
      [[], { REFIT_HOST_LABELS: 'rack' }, 'label "rack" is not key=value'],
      [[], { REFIT_VM_BACKEND: 'xen' }, 'REFIT_VM_BACKEND "xen"'],
      [
        [],
        { REFIT_PVE_NODES: 'hv2=pve2;reboot' },
        'REFIT_PVE_NODES "pve2;reboot": REFIT_PVE_NODES: must be a Proxmox node name',
      ],
      [['--pve-nodes', 'hv2'], {}, '--pve-nodes "hv2": must be hostId=node'],
      [[], { REFIT_PVE_NODE: '-pve1' }, 'REFIT_PVE_NODE "-pve1"'],
    ] as const) {
      const out = agent([...args], { ...env, REFIT_STATE_DIR: env.REFIT_STATE_DIR ?? path.join(dir, 'bad') });
      expect(out.stderr).toContain(message);
      expect(out.status).toBe(2);
    }
  });

  it('enroll-request prints "<hostId> <publicKey>" of a seed it keeps, private, in its state dir', () => {
    const stateDir = path.join(dir, 'state-enroll');
    const first = agent(['enroll-request', '--id', 'pve-01', '--state-dir', stateDir]);
    expect(first.status).toBe(0);
    const [hostId, publicKey] = first.stdout.trim().split(' ');
    expect(hostId).toBe('pve-01');
    expect(publicKey).toMatch(/^U[A-Z2-7]{55}$/);
    const seedFile = path.join(stateDir, 'nats.nk');
    expect(statSync(seedFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(seedFile, 'utf8')).toMatch(/^SU/);
    expect(readFileSync(seedFile, 'utf8')).not.toContain(publicKey);
    const again = agent(['enroll-request', '--id', 'pve-01', '--state-dir', stateDir]);
    expect(again.stdout).toBe(first.stdout);
  });

  it('refuses to start a second agent on the same state directory, naming the process that holds it', async () => {
    const stateDir = path.join(dir, 'state-twice');
    // No credentials: it makes its own key and waits, however long, to be admitted.
    const { REFIT_NATS_CREDS: _, ...env } = agentEnv();
    // The first agent holds its lock while it waits for a NATS server that is not there.
    const first = spawn(process.execPath, [AGENT, '--id', 'pve-09', '--driver', 'sim', '--state-dir', stateDir], {
      env,
      stdio: 'ignore',
    });
    try {
      await until(() => existsSync(path.join(stateDir, 'agent.lock')), {
        what: 'the first agent to hold the lock',
        timeoutMs: 20_000,
      });
      const second = agent(['--id', 'pve-09', '--driver', 'sim', '--state-dir', stateDir]);
      expect(second.stderr).toContain(
        `refit-host: state directory ${stateDir} is locked by another refit host agent: pid ${first.pid} (host id pve-09`,
      );
      expect(second.stderr).not.toMatch(/\n\s+at /);
      expect(second.status).toBe(1);
    } finally {
      first.kill('SIGKILL');
    }
  });

  it.each(['linux', 'lab', 'sim'])(
    'loads nothing of Temporal, the build tools, the CLI or the controller with the %s driver',
    (driver) => {
      const out = agent(['--id', 'agent-1', '--driver', driver, '--state-dir', path.join(dir, `state-${driver}`)]);
      const loaded = out.stderr.split('\n').filter((line) => line.startsWith('LOADED '));
      // It got as far as its driver: the driver's own module was loaded.
      expect(loaded.some((line) => line.includes(`/activities/host/${driver}/driver.js`))).toBe(true);
      const forbidden = loaded.filter((line) =>
        /@temporalio|webpack|@swc|\/dist\/cli\/|\/workers\/control\/|\/workers\/dev\//.test(line),
      );
      expect(forbidden).toEqual([]);
      expect(out.status).not.toBe(0);
    },
  );
});
