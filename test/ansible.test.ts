import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { buildHostPackage, PACKAGE_PATHS, type HostPackage } from '../scripts/package-host.js';
import { parseEnvironmentFile } from '../lab/systemd-unit.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const playbook = path.join(root, 'deploy/ansible/refit-host.yml');
const cacheBin = path.join(
  process.env.REFIT_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'refit'),
  'bin',
);
/** The ansible-playbook scripts/setup.sh installs (pinned ansible-core), else one on PATH. */
const ansible = [path.join(cacheBin, 'ansible-playbook')].find((p) => existsSync(p)) ?? 'ansible-playbook';
const have = (cmd: string) => spawnSync(cmd, ['--version']).status === 0;
const missing = [ansible, 'dpkg', 'dpkg-deb'].filter((t) => !have(t));
const skip =
  missing.length > 0
    ? `Ansible tests skipped: need ${missing.join(', ')} (scripts/setup.sh installs ansible-core)`
    : '';
if (skip) console.warn(skip);

describe.skipIf(skip !== '')(`deploy/ansible/refit-host.yml${skip ? ` — ${skip}` : ''}`, () => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'refit-ansible-test-'));
  const nodes = ['pve-01', 'pve-02', 'pve-03'];
  const nodeRoot = (n: string) => path.join(work, 'nodes', n);
  const enrollFile = path.join(work, 'refit-hosts.txt');
  let pkg: HostPackage;

  const play = (args: string[]) =>
    spawnSync(ansible, args, {
      encoding: 'utf8',
      env: { ...process.env, ANSIBLE_HOME: path.join(work, 'ansible-home'), ANSIBLE_NOCOLOR: '1' },
    });

  beforeAll(async () => {
    pkg = await buildHostPackage({ outDir: path.join(work, 'package') });
    for (const n of nodes) {
      // A scratch root per node: an empty dpkg database, nothing of this machine.
      for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'var/lib/dpkg/triggers'])
        mkdirSync(path.join(nodeRoot(n), d), { recursive: true });
      writeFileSync(path.join(nodeRoot(n), 'var/lib/dpkg/status'), '');
    }
  }, 60_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('passes ansible-playbook --syntax-check with the example inventory', () => {
    const checked = play(['--syntax-check', '-i', path.join(root, 'deploy/ansible/inventory.example.yml'), playbook]);
    expect(checked.status, checked.stderr + checked.stdout).toBe(0);
  });

  it(
    'installs the package on three nodes, writes their env files and collects their public keys (service start skipped: no systemd in a scratch root)',
    { timeout: 180_000 },
    () => {
      const inventory = path.join(work, 'inventory.yml');
      writeFileSync(
        inventory,
        stringify({
          refit_hosts: {
            hosts: Object.fromEntries(
              nodes.map((n, i) => [
                n,
                { refit_host_root: nodeRoot(n), refit_host_labels: `role=hypervisor,rack=r${i + 1}` },
              ]),
            ),
            vars: {
              ansible_connection: 'local',
              ansible_become: false,
              ansible_python_interpreter: '{{ ansible_playbook_python }}',
              refit_package: pkg.deb,
              refit_nats_url: 'nats://10.77.0.1:4222,nats://10.77.0.2:4222',
              refit_enroll_file: enrollFile,
              refit_start_service: false,
              refit_pve_nodes: 'pve-03=pve3',
            },
          },
        }),
      );
      const ran = play(['-i', inventory, playbook]);
      expect(ran.status, ran.stdout.slice(-3000)).toBe(0);
      expect(ran.stdout).toMatch(/Enable and start refit-host.service[\s\S]*skipping: \[pve-01\]/);

      const lines = readFileSync(enrollFile, 'utf8').trimEnd().split('\n');
      expect(lines.map((l) => l.split(' ')[0])).toEqual(nodes);
      nodes.forEach((n, i) => {
        const r = nodeRoot(n);
        const status = spawnSync('dpkg-query', [`--admindir=${r}/var/lib/dpkg`, '-W', '-f=${Status}', 'refit-host'], {
          encoding: 'utf8',
        });
        expect(status.stdout, n).toBe('install ok installed');
        expect(existsSync(path.join(r, PACKAGE_PATHS.unit)), n).toBe(true);
        const env = parseEnvironmentFile(readFileSync(path.join(r, PACKAGE_PATHS.env), 'utf8'), n);
        expect(env).toEqual({
          REFIT_NATS_URL: 'nats://10.77.0.1:4222,nats://10.77.0.2:4222',
          REFIT_HOST_ID: n,
          REFIT_HOST_LABELS: `role=hypervisor,rack=r${i + 1}`,
          REFIT_DRIVER: 'linux',
          REFIT_STATE_DIR: '/var/lib/refit',
          REFIT_PVE_NODES: 'pve-03=pve3',
        });
        // The key the controller gets is the one the node keeps (made on the node, never copied out).
        expect(statSync(path.join(r, 'var/lib/refit/nats.nk')).mode & 0o777, n).toBe(0o600);
        const asked = spawnSync(path.join(r, PACKAGE_PATHS.wrapper), ['enroll-request'], {
          encoding: 'utf8',
          env: { ...process.env, REFIT_HOST_ID: n, REFIT_STATE_DIR: path.join(r, 'var/lib/refit') },
        });
        expect(lines[i]).toBe(asked.stdout.trim());
        expect(lines[i]).toMatch(new RegExp(`^${n} U[A-Z2-7]{55}$`));
      });
    },
  );
});
