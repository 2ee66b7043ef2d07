import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { toolCacheDir } from '../workers/dev/tools.js';
import { simHostIds } from '../workers/sim/fleet.js';
import { FIVE_STEPS } from './plans.js';
import { cpuBetween, loadAverage, sampleProcess } from './proc.js';
import { round } from './stats.js';
import { RefitError } from '../schemas/errors.js';

/** `command` is what operators write; `raw` skips Ansible's module system and is its floor. */
export type AnsibleModule = 'command' | 'raw';

export interface AnsibleRun {
  module: AnsibleModule;
  hosts: number;
  forks: number;
  hostSteps: number;
  /** False when the run was skipped for time and its wall time projected from a smaller N. */
  measured: boolean;
  /** 1-minute load average of the machine when the run started and when it ended. */
  loadAverage: [number, number];
  wallS: number;
  hostStepsPerS: number;
  wallMsPerHostStep: number;
  /** CPU seconds of ansible-playbook and everything it ran. */
  cpuS: number;
  cpuMsPerHostStep: number;
  okHosts: number;
}

export class AnsibleError extends RefitError {}

export function ansiblePlaybookBin(): string {
  const bin = path.join(toolCacheDir(), 'bin', 'ansible-playbook');
  if (!existsSync(bin)) throw new AnsibleError(`${bin} not found: run \`bash scripts/setup-bench.sh\``);
  return bin;
}

/**
 * 3. The same five trivial command tasks on the same N hosts with Ansible: local connection, no
 * fact gathering, forks and serial = refit's hosts in flight and wave size. Settings that only make
 * Ansible faster are on (pipelining, the free strategy, a fixed interpreter instead of discovery on
 * every host).
 */
export async function runAnsible(dir: string, n: number, forks: number, module: AnsibleModule): Promise<AnsibleRun> {
  mkdirSync(dir, { recursive: true });
  const hostIds = simHostIds(n, `a${n}`);
  writeFileSync(
    path.join(dir, 'inventory.ini'),
    [
      '[fleet]',
      ...hostIds,
      '',
      '[fleet:vars]',
      'ansible_connection=local',
      'ansible_python_interpreter={{ ansible_playbook_python }}',
      '',
    ].join('\n'),
  );
  const tasks = FIVE_STEPS.map(
    (kind) => `    - name: ${kind}\n      ansible.builtin.${module}: /bin/true\n      changed_when: false\n`,
  );
  writeFileSync(
    path.join(dir, 'playbook.yml'),
    // serial = refit's waves: a batch of `forks` hosts, then the next.
    `- name: five trivial steps\n  hosts: fleet\n  gather_facts: false\n  strategy: free\n  serial: ${forks}\n  tasks:\n${tasks.join('')}`,
  );
  writeFileSync(
    path.join(dir, 'ansible.cfg'),
    [
      '[defaults]',
      `forks = ${forks}`,
      'host_key_checking = False',
      'retry_files_enabled = False',
      `local_tmp = ${path.join(dir, 'tmp')}`,
      '[connection]',
      'pipelining = True',
      '',
    ].join('\n'),
  );
  const logFile = path.join(dir, `ansible-${module}.log`);
  const fd = openSync(logFile, 'w', 0o600);
  // Ansible's children are reaped by ansible-playbook, and it by this process: this process's
  // children's CPU time grows by exactly Ansible's total while nothing else of ours exits.
  const before = sampleProcess(process.pid);
  const loadAtStart = loadAverage();
  const started = performance.now();
  const child = spawn(ansiblePlaybookBin(), ['-i', 'inventory.ini', 'playbook.yml'], {
    cwd: dir,
    env: {
      ...process.env,
      ANSIBLE_CONFIG: path.join(dir, 'ansible.cfg'),
      ANSIBLE_HOME: path.join(dir, 'home'),
      LC_ALL: 'C.UTF-8',
      LANG: 'C.UTF-8',
    },
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  closeSync(fd);
  const stopGroup = () => {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  };
  process.once('exit', stopGroup);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => resolve(c));
  }).finally(() => process.off('exit', stopGroup));
  const wallS = (performance.now() - started) / 1000;
  const loadAtEnd = loadAverage();
  const cpuS = cpuBetween(before, sampleProcess(process.pid));
  const recap = readFileSync(logFile, 'utf8');
  const okHosts = [...recap.matchAll(/^\S+\s+: ok=(\d+)\s+changed=\d+\s+unreachable=0\s+failed=0/gm)].filter(
    (m) => Number(m[1]) === FIVE_STEPS.length,
  ).length;
  if (code !== 0 || okHosts !== n) {
    throw new AnsibleError(
      `ansible-playbook (${module}) exited ${code} with ${okHosts} of ${n} hosts ok; see ${logFile}`,
    );
  }
  const hostSteps = n * FIVE_STEPS.length;
  return {
    module,
    hosts: n,
    forks,
    hostSteps,
    measured: true,
    loadAverage: [loadAtStart, loadAtEnd],
    wallS: round(wallS),
    hostStepsPerS: round(hostSteps / wallS, 1),
    wallMsPerHostStep: round((wallS * 1000) / hostSteps),
    cpuS: round(cpuS),
    cpuMsPerHostStep: round((cpuS * 1000) / hostSteps),
    okHosts,
  };
}

/** A run not made for lack of time: the largest measured run's cost per host-step, times N × 5. */
export function projectAnsible(from: AnsibleRun, n: number, forks: number): AnsibleRun {
  const hostSteps = n * FIVE_STEPS.length;
  const wallS = (from.wallMsPerHostStep * hostSteps) / 1000;
  return {
    ...from,
    hosts: n,
    forks,
    hostSteps,
    measured: false,
    loadAverage: [NaN, NaN],
    wallS: round(wallS),
    hostStepsPerS: from.hostStepsPerS,
    cpuS: round((from.cpuMsPerHostStep * hostSteps) / 1000),
    okHosts: 0,
  };
}
