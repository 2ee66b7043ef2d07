import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliEnv, tempDir, testConfig } from './helpers/controller.js';
import { testStack } from './helpers/stack.js';
import {
  extractDocCommands,
  isSynopsis,
  synopsisChecks,
  withoutComment,
  type DocCommand,
} from './helpers/doc-commands.js';

/**
 * Every command README.md and docs/*.md show is run here, exactly as written, from the built repo
 * (`npm run build` first), with the environment a reader has after `refit dev up`: the test's stack.
 * A command exits 0 unless its rule says otherwise. A synopsis (`<id>`, `[--json]`, `a|b`, `…`) cannot
 * run as written: its program is asked for `--help`, which must succeed and list every flag it shows.
 * What cannot run here is listed below with the reason, and nothing else: a new command in the docs
 * runs unless someone adds it here.
 */
type Rule =
  | { how: 'skip'; reason: string }
  /** Shown with a particular state (a tampered trail, an id of the sample): its --help is checked. */
  | { how: 'help'; reason: string }
  /** Runs until stopped: it must still be running after `seconds`, then it is stopped. */
  | { how: 'daemon'; seconds: number; reason: string }
  /** Runs, and must exit with `exit`; with `output`, print the lines the docs show after it. */
  | { how: 'run'; exit: number; output?: boolean; reason: string };

/**
 * Not run yet: the lab blocks assume a stack of their own on the default ports with its home in ./.refit
 * and no other hosts (a rollout would wait for the simulated hosts the blocks above leave offline), as
 * root, for minutes. Their synopses are checked like any other.
 */
const LAB =
  'they need root, a stack of their own at the default ports with ./.refit as home, and minutes (test/lab/ runs the lab)';

export const RULES: Record<string, Rule> = {
  'README.md: npm run demo': { how: 'skip', reason: 'a whole rollout on a fresh stack, minutes (npm run demo)' },
  'README.md: npm test': { how: 'skip', reason: 'the suite this test is part of' },
  'README.md: npx refit dev down': { how: 'skip', reason: 'would stop the stack every test of the run shares' },
  'README.md: npx refit worker': {
    how: 'daemon',
    seconds: 5,
    reason: 'the controller runs until stopped',
  },
  'README.md: npx refit host --id pve-01 --driver linux --labels rack=r1,role=hypervisor': {
    how: 'skip',
    reason: "the linux driver's agent, as root on a hypervisor: not on a development machine",
  },
  'docs/proxmox.md: npx refit host --id hv1 --driver linux --vm-backend proxmox --pve-node pve1 --pve-nodes hv2=pve2,hv3=pve3':
    {
      how: 'skip',
      reason: "the linux driver's agent on a Proxmox node, as root: not on a development machine",
    },
  'README.md: npx refit sim-fleet --hosts 100 --fail sim-007=verify': {
    how: 'daemon',
    seconds: 6,
    reason: 'the simulated fleet runs until stopped',
  },
  'README.md: npx refit rollout start test/fixtures/plans/ovs-sriov-invalid.yaml': {
    how: 'run',
    exit: 2,
    output: true,
    reason: 'an invalid plan: exit 2 and every problem, as shown',
  },
  'docs/plans.md: npx refit rollout start test/fixtures/plans/ovs-sriov-invalid.yaml': {
    how: 'run',
    exit: 2,
    output: true,
    reason: 'an invalid plan: exit 2 and every problem, as shown',
  },
  'README.md: npx refit ui': { how: 'daemon', seconds: 5, reason: 'the web view runs until stopped' },
  'docs/ui.md: npx refit ui': { how: 'daemon', seconds: 5, reason: 'the web view runs until stopped' },
  'docs/ui.md: npx refit ui --bind 0.0.0.0': {
    how: 'run',
    exit: 2,
    output: true,
    reason: 'refused beyond loopback: exit 2 and the reason, as shown',
  },
  'docs/ui.md: npm run ui-screenshots': {
    how: 'skip',
    reason: 'test/ui.test.ts in Chromium, rewriting docs/img: that test runs in npm test',
  },
  'README.md: npm run package': { how: 'skip', reason: 'builds the .deb, ~1 min: test/package.test.ts does' },
  "README.md: dpkg-deb --contents dist/package/refit-host_0.1.0_all.deb | awk '{print $6}' | grep -v '/$'": {
    how: 'skip',
    reason: 'reads the .deb npm run package makes: test/package.test.ts checks its contents',
  },
  'README.md: node dist/package/refit-host.mjs --help | head -1': {
    how: 'skip',
    reason: 'the bundle npm run package makes: test/package.test.ts runs it',
  },
  'README.md: ~/.cache/refit/bin/ansible-playbook -i deploy/ansible/inventory.yml deploy/ansible/refit-host.yml -e refit_package=$PWD/dist/package/refit-host_0.1.0_all.deb':
    { how: 'skip', reason: 'installs on the nodes of an inventory over SSH: test/ansible.test.ts plays it locally' },
  'docs/audit.md: npx refit audit show 5d3ebefee8c7': { how: 'help', reason: 'an event id of the sample trail above' },
  'docs/audit.md: npx refit audit verify': {
    how: 'help',
    reason: 'shown on an intact and on a tampered trail; test/audit.test.ts makes both',
  },
  'docs/plans.md: npx refit rollout plan examples/saturday-window.yaml': {
    how: 'help',
    reason: 'shown on the fleet above it, one host offline; test/rollout-plan.test.ts makes one',
  },
  'docs/audit.md: echo $?': { how: 'skip', reason: 'the exit status of the audit verify shown before it' },
  'docs/audit.md: npx refit audit verify --host sim-001': {
    how: 'help',
    reason: 'shown on a trail with a forged event; test/audit-signatures.test.ts makes it',
  },
  'docs/BENCHMARKS.md: npm run bench': { how: 'skip', reason: 'the benchmarks: 15 minutes to hours' },
  'docs/BENCHMARKS.md: npm run bench -- --sections scale': { how: 'skip', reason: 'the benchmarks: ~45 minutes' },
  'docs/BENCHMARKS.md: npm run bench -- --sizes 10,100 --sections dispatch,throughput': {
    how: 'skip',
    reason: 'the benchmarks: minutes',
  },
  'docs/BENCHMARKS.md: REFIT_BENCH_ANSIBLE_MAX=1000 REFIT_BENCH_SECTIONS=dispatch,footprint,throughput,ansible,modelled,scale npm run bench':
    { how: 'skip', reason: 'the recorded benchmark run: 74 minutes' },
  'docs/BENCHMARKS.md: node dist/workers/sim/run-host.js --id footprint-002 --url nats://… --creds <home>/creds/hosts/footprint-002.nk --state-dir … --presence-interval 3000':
    { how: 'skip', reason: 'the benchmark starts this entry itself, with no --help of its own' },
  'docs/RELIABILITY.md: npx vitest run test/nats-cluster.test.ts': {
    how: 'skip',
    reason: 'a test file of its own, part of npm test',
  },
  'docs/upgrading.md: npm run build': { how: 'skip', reason: 'done before this test: it runs the built repo' },
  'docs/upgrading.md: npx vitest run test/replay.test.ts': {
    how: 'skip',
    reason: 'a test file of its own, part of npm test',
  },
  'docs/upgrading.md: npx refit dev up': { how: 'skip', reason: 'recording a history: writes test/fixtures' },
  'docs/upgrading.md: npx refit worker 2> worker.log &': {
    how: 'skip',
    reason: 'recording a history: writes test/fixtures',
  },
  'docs/upgrading.md: npx refit sim-fleet --hosts 6 --speed 4 2> fleet.log &': {
    how: 'skip',
    reason: 'recording a history: writes test/fixtures',
  },
  'docs/upgrading.md: npx refit hosts': { how: 'skip', reason: 'recording a history: writes test/fixtures' },
  'docs/upgrading.md: npx refit rollout start examples/ovs-sriov.yaml --id skip-empty-waves --watch': {
    how: 'skip',
    reason: 'recording a history: writes test/fixtures',
  },
  'docs/upgrading.md: ~/.cache/refit/bin/temporal workflow show --workflow-id skip-empty-waves --output json > test/fixtures/histories/skip-empty-waves.json':
    { how: 'skip', reason: 'recording a history: writes test/fixtures' },
  'docs/upgrading.md: kill %1 %2': { how: 'skip', reason: 'recording a history: stops what it started' },
  'docs/upgrading.md: rm test/fixtures/histories/live-*.json': {
    how: 'skip',
    reason: 'removes the live histories the commands before it wrote',
  },
};

const ROOT = path.resolve('.');
const DOCS = [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const key = (c: DocCommand) => `${c.file}: ${withoutComment(c.text)}`;
const commands = DOCS.flatMap((file) => extractDocCommands(file, readFileSync(path.join(ROOT, file), 'utf8')));
const where = (c: DocCommand) => `${c.file}:${c.line}`;

type Classified = DocCommand & { rule: Rule | { how: 'lab' } };
function classify(c: DocCommand): Classified {
  const rule = RULES[key(c)];
  if (rule) return { ...c, rule };
  if (isSynopsis(c.text)) return { ...c, rule: { how: 'help', reason: 'a synopsis' } };
  if (c.prompt === '#') return { ...c, rule: { how: 'lab' } };
  return { ...c, rule: { how: 'run', exit: 0, reason: '' } };
}
const classified = commands.map(classify);

const stack = testStack();
const config = testConfig(stack);
const home = tempDir('docs-home');
/** What a reader has after `refit dev up`: the test's stack; their own config dir (operator keys). */
const env = {
  ...cliEnv(config),
  TEMPORAL_ADDRESS: config.temporalAddress,
  XDG_CONFIG_HOME: path.join(home, 'config'),
  REFIT_LOG_LEVEL: 'warn',
};
afterAll(() => rmSync(home, { recursive: true, force: true }));

interface Ran {
  status: number | null;
  output: string;
}

/** Run `script` in bash from the repo root, in its own process group, killed after `timeoutMs`. */
function bash(script: string, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      out += `\n(killed after ${timeoutMs / 1000}s)`;
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/**
 * The commands of one block in one shell, in order, as a reader pastes them: each one's output and
 * exit status are told apart by markers; `$?` is its own again for the next command (`echo $?`).
 */
async function runBlock(block: Classified[], timeoutMs: number): Promise<Map<Classified, Ran>> {
  const lines = ['__s=0'];
  block.forEach((c, i) => {
    lines.push(`echo "@@start ${i}"`);
    if (c.rule.how === 'daemon') {
      lines.push(
        `setsid bash -c ${shellQuote(c.text)} 2>&1 & __p=$!`,
        `sleep ${c.rule.seconds}`,
        `if kill -0 $__p 2>/dev/null; then __s=0; kill -TERM -- -$__p; wait $__p; else wait $__p; __s=$?; [ $__s -eq 0 ] && __s=100; fi`,
      );
    } else lines.push(`(exit $__s)`, `${c.text} 2>&1`, '__s=$?');
    lines.push(`echo "@@status ${i} $__s"`);
  });
  const { out } = await bash(lines.join('\n'), timeoutMs);
  const ran = new Map<Classified, Ran>();
  const parts = out.split(/^@@start (\d+)\n/m);
  for (let p = 1; p < parts.length; p += 2) {
    const c = block[Number(parts[p])] as Classified;
    const body = parts[p + 1] ?? '';
    const status = /^@@status \d+ (\d+)$/m.exec(body);
    ran.set(c, { status: status ? Number(status[1]) : null, output: body.replace(/^@@status.*$/m, '').trimEnd() });
  }
  return ran;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

describe('the commands README.md and docs/*.md show', () => {
  it('finds them, and every rule names a command the docs still show', () => {
    expect(commands.length).toBeGreaterThan(50);
    const shown = new Set(commands.map(key));
    expect(Object.keys(RULES).filter((k) => !shown.has(k))).toEqual([]);
    for (const c of classified)
      if (c.rule.how === 'skip') console.info(`skipped ${where(c)} $ ${c.text}: ${c.rule.reason}`);
  });

  const byBlock = new Map<string, Classified[]>();
  for (const c of classified)
    if (c.rule.how === 'run' || c.rule.how === 'daemon') {
      const id = `${c.file} block ${c.block}`;
      byBlock.set(id, [...(byBlock.get(id) ?? []), c]);
    }
  it.each([...byBlock.values()].map((block) => [where(block[0] as Classified), block] as const))(
    'run as written: the block at %s',
    async (_at, block) => {
      const ran = await runBlock(block, 60_000);
      for (const c of block) {
        const r = ran.get(c);
        const want = c.rule.how === 'run' ? c.rule.exit : 0;
        expect(r?.status, `${where(c)} $ ${c.text}\n${r?.output ?? '(never ran)'}`).toBe(want);
        if (c.rule.how === 'run' && c.rule.output)
          expect(r?.output.split('\n'), `${where(c)}: what it printed is what the docs show`).toEqual(c.output);
      }
    },
  );

  const synopses = classified.filter((c) => c.rule.how === 'help');
  it.each(synopses.map((c) => [where(c), c] as const))('shows a command that exists: %s', async (_at, c) => {
    for (const { help, flags } of synopsisChecks(c.text)) {
      // The program `npx refit` runs, without npm's start-up for each --help.
      const { code, out } = await bash(help.replace(/^npx refit /, 'node dist/cli/main.js '), 30_000);
      expect(code, `${where(c)}: ${help}\n${out}`).toBe(0);
      for (const flag of flags) expect(out, `${where(c)}: ${help} does not list ${flag}`).toContain(flag);
    }
  });

  const lab = classified.filter((c) => c.rule.how === 'lab');
  it('lists the lab commands it does not run, saying why', () => {
    expect(lab.every((c) => c.prompt === '#')).toBe(true);
    console.warn(`${lab.length} lab commands (# prompt) not run: ${LAB}`);
  });
});
