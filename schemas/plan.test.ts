import { readFileSync, readdirSync } from 'node:fs';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseDuration } from './common.js';
import { parsePlan, planJsonSchema, planProblemText, type PlanParse } from './plan.js';
import { RebootParams, STEP_KINDS, STEP_PARAMS } from './steps.js';

const example = readFileSync(new URL('../examples/ovs-sriov.yaml', import.meta.url), 'utf8');

/** A plan whose lines are numbered in the tests below. */
const numbered = [
  'apiVersion: refit/v1', // 1
  'kind: Campaign', // 2
  'name: numbered', // 3
  'targets: { selector: { role: hypervisor } }', // 4
  'steps:', // 5
  '  - kind: drain', // 6
  '  - kind: ovs-convert', // 7
  '  - kind: sriov-enable', // 8
  '    params:', // 9
  '      nic: ens6', // 10
  '      vfs: 7', // 11
  '  - kind: reboot', // 12
  '    params: { timeout: 10m }', // 13
  '  - kind: verify', // 14
  '    params: { targets: [{ address: 10.0.0.1 }] }', // 15
  '  - kind: undrain', // 16
  '',
].join('\n');

const problemsOf = (parsed: PlanParse) => (parsed.ok ? [] : parsed.problems);

describe('parsePlan', () => {
  it('accepts the example plan and fills in defaults', () => {
    const parsed = parsePlan(example);
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
    expect(parsed.plan.steps.map((s) => s.kind)).toEqual([
      'drain',
      'ovs-convert',
      'sriov-enable',
      'reboot',
      'verify',
      'undrain',
    ]);
    const reboot = parsed.plan.steps[3];
    expect(reboot?.kind === 'reboot' && reboot.params.timeout).toBe(600_000);
    const ovs = parsed.plan.steps[1];
    expect(ovs?.kind === 'ovs-convert' && ovs.params.confirmWithin).toBe(60_000);
  });

  it('gives each change the targets of the later verify steps sent from the host, to measure before it', () => {
    const text = example.replace(
      '  - kind: undrain',
      '  - kind: verify\n    params:\n      targets: [{ address: 10.77.0.2 }, { address: 10.77.0.1, port: 80 }]\n  - kind: verify\n    params:\n      fromVm: vm101\n      targets: [{ address: 10.77.0.3 }]\n  - kind: undrain',
    );
    const parsed = parsePlan(text);
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
    const wanted = [{ address: '10.77.0.1', port: 80 }, { address: '10.77.0.2' }];
    for (const step of parsed.plan.steps.filter((s) => s.kind === 'ovs-convert' || s.kind === 'sriov-enable'))
      expect(step.params, step.kind).toMatchObject({ baselineTargets: wanted });
  });

  it('names every bad field by its path', () => {
    const bad = example
      .replace('vfs: 7', 'vfs: 0')
      .replace('bridge: vmbr0', 'bridge: "vmbr0; reboot"')
      .replace('maxInFlight: 4', 'maxInFlight: -1')
      .replace('port: 80', 'port: 80\n          colour: red');
    const parsed = parsePlan(bad);
    expect(parsed.ok).toBe(false);
    const paths = parsed.ok ? [] : parsed.problems.map((p) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'steps[2].params.vfs',
        'steps[1].params.bridge',
        'waves.maxInFlight',
        'steps[4].params.targets[0]',
      ]),
    );
  });

  it('refuses an unknown step kind and says which kinds exist', () => {
    const parsed = parsePlan(example.replace('kind: undrain', 'kind: unplug'));
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problems[0]?.path).toBe('steps[5].kind');
  });

  it('refuses a hostile interface name before anything can run', () => {
    const parsed = parsePlan(example.replace('nic: ens6', 'nic: "ens6 && rm -rf /"'));
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problems).toContainEqual(expect.objectContaining({ path: 'steps[2].params.nic' }));
  });

  it('reports YAML syntax errors with their line and column', () => {
    expect(problemsOf(parsePlan('apiVersion: refit/v1\nname: a: b\n'))).toEqual([
      { path: '(syntax)', line: 2, column: 7, message: 'Nested mappings are not allowed in compact mappings' },
    ]);
  });

  it('accepts a $schema key for editors and leaves it out of the plan', () => {
    const parsed = parsePlan(`$schema: ../schemas/plan.schema.json\n${numbered}`);
    expect(problemsOf(parsed)).toEqual([]);
    expect(parsed.ok && Object.keys(parsed.plan)).not.toContain('$schema');
  });

  it('reports a bad value deep in a step at its line and column', () => {
    expect(problemsOf(parsePlan(numbered.replace('vfs: 7', 'vfs: 0')))).toEqual([
      { path: 'steps[2].params.vfs', line: 11, column: 12, message: 'Too small: expected number to be >=1' },
    ]);
  });

  it('points a missing key at the map it is missing from', () => {
    expect(problemsOf(parsePlan(numbered.replace('      nic: ens6\n', '')))).toEqual([
      { path: 'steps[2].params.nic', line: 10, column: 7, message: 'required: expected string' },
    ]);
  });

  it("refuses a vxlan-tunnel with ends per host that has none for a host the plan names, at the step's hosts", () => {
    const plan = [
      'apiVersion: refit/v1',
      'kind: Campaign',
      'name: vx',
      'targets:',
      '  hosts: [h1, h2]',
      'steps:',
      '  - kind: vxlan-tunnel',
      '    params:',
      '      name: vx100',
      '      vni: 100',
      '      hosts:',
      '        h1: { type: linux, remote: 10.0.0.2, underlay: eth0 }',
      '',
    ].join('\n');
    expect(problemsOf(parsePlan(plan))).toEqual([
      {
        path: 'steps[0].params.hosts',
        line: 12,
        column: 9,
        message: 'no entry for h2, a target of this plan: each host needs its own end of the tunnel',
      },
    ]);
    const both = plan + '        h2: { type: linux, remote: 10.0.0.1, underlay: eth0 }\n';
    expect(problemsOf(parsePlan(both))).toEqual([]);
  });

  it('points an unknown key at that key', () => {
    expect(problemsOf(parsePlan(numbered.replace('      vfs: 7', '      vfs: 7\n      colour: red')))).toEqual([
      { path: 'steps[2].params', line: 12, column: 7, message: 'Unrecognized key: "colour"' },
    ]);
  });

  it('refuses a duration without a unit and says which units there are', () => {
    expect(problemsOf(parsePlan(numbered.replace('timeout: 10m', 'timeout: 600')))).toEqual([
      {
        path: 'steps[3].params.timeout',
        line: 13,
        column: 24,
        message: 'a duration needs a unit: 600s, 10m, 1h30m or 1d (units: ms, s, m, h, d)',
      },
    ]);
  });

  it('names the part of a window that is wrong rather than the whole window', () => {
    const parsed = parsePlan(`${numbered}windows: [{ every: 1d, open: 240 }]\n`);
    expect(problemsOf(parsed)).toEqual([
      expect.objectContaining({
        path: 'windows[0].open',
        line: 17,
        column: 30,
        message: expect.stringMatching(/^a duration needs a unit/),
      }),
    ]);
  });

  it('prints a problem as path, line and column, and reason', () => {
    const [problem] = problemsOf(parsePlan(numbered.replace('vfs: 7', 'vfs: 0')));
    expect(problem && planProblemText(problem)).toBe(
      'steps[2].params.vfs (line 11, column 12): Too small: expected number to be >=1',
    );
  });

  it('needs hosts or a selector', () => {
    const parsed = parsePlan(example.replace(/targets:\n {2}selector:\n {4}role: hypervisor\n/, 'targets: {}\n'));
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problems.map((p) => p.path)).toContain('targets');
  });
});

describe('the example plans', () => {
  const dir = new URL('../examples/', import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  it.each(files)('%s is valid', (file) => {
    const parsed = parsePlan(readFileSync(new URL(file, dir), 'utf8'));
    expect(parsed.ok ? [] : parsed.problems).toEqual([]);
  });

  it('show every step kind, each in a plan that is valid (docs/plans.md points to them)', () => {
    const shown = new Set(
      files.flatMap((file) => {
        const parsed = parsePlan(readFileSync(new URL(file, dir), 'utf8'));
        return parsed.ok ? parsed.plan.steps.map((s) => s.kind) : [];
      }),
    );
    expect(STEP_KINDS.filter((k) => !shown.has(k))).toEqual([]);
  });

  it.each(files)('%s names its schema for editors on its first line', (file) => {
    const [first] = readFileSync(new URL(file, dir), 'utf8').split('\n');
    expect(first).toBe('# yaml-language-server: $schema=../schemas/plan.schema.json');
  });

  it('refuses a host duration longer than every window', () => {
    const parsed = parsePlan(
      readFileSync(new URL('saturday-window.yaml', dir), 'utf8').replace('hostDuration: 45m', 'hostDuration: 5h'),
    );
    expect(parsed.ok ? [] : parsed.problems).toEqual([
      {
        path: 'hostDuration',
        line: 15,
        column: 15,
        message: 'longer than every maintenance window: no host could ever start',
      },
    ]);
  });

  it('refuses an unknown time zone', () => {
    const parsed = parsePlan(
      readFileSync(new URL('saturday-window.yaml', dir), 'utf8').replace('Europe/Berlin', 'Europe/Atlantis'),
    );
    expect(parsed.ok ? [] : parsed.problems.map((p) => p.path)).toEqual(['windows[0].timeZone']);
  });
});

describe('durations', () => {
  it('are milliseconds in a step command, where a loaded plan has already read their units', () => {
    expect(STEP_PARAMS.reboot.parse({ timeout: 600_000 })).toEqual({ timeout: 600_000 });
    expect(STEP_PARAMS.reboot.parse({ timeout: '10m' })).toEqual({ timeout: 600_000 });
    expect(STEP_PARAMS['ovs-convert'].parse({})).toMatchObject({ confirmWithin: 60_000 });
    expect(RebootParams.safeParse({ timeout: 600_000 }).success).toBe(false);
  });
});

describe('the plan JSON Schema', () => {
  const committed: unknown = JSON.parse(readFileSync(new URL('./plan.schema.json', import.meta.url), 'utf8'));
  const generated = planJsonSchema();

  it('is what the zod schema generates now (after changing the schema, run `npm run plan-schema`)', () => {
    expect(committed).toEqual(generated);
  });

  it('accepts every example plan and refuses what refit refuses, checked as an editor checks it (draft 7)', () => {
    const validate = new Ajv({ strict: false, allErrors: true, validateFormats: false }).compile(committed as object);
    const dir = new URL('../examples/', import.meta.url);
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
      const doc: unknown = parseYaml(readFileSync(new URL(file, dir), 'utf8'));
      expect(validate(doc) ? [] : validate.errors, file).toEqual([]);
    }
    expect(validate(parseYaml(`$schema: ../schemas/plan.schema.json\n${example}`))).toBe(true);
    // The plan docs/plans.md shows refused: no nic, vfs: 0, a duration without a unit.
    const bad = example
      .replace('      nic: ens6\n', '')
      .replace('vfs: 7', 'vfs: 0')
      .replace('timeout: 10m', 'timeout: 600');
    expect(validate(parseYaml(bad))).toBe(false);
    const flagged = new Set((validate.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''}`));
    expect(flagged).toContain("/steps/2/params must have required property 'nic'");
    expect(flagged).toContain('/steps/2/params/vfs must be >= 1');
    expect(flagged).toContain('/steps/3/params/timeout must be string');
    const parsed = parsePlan(bad);
    expect(parsed.ok ? [] : parsed.problems.map((p) => p.path)).toEqual([
      'steps[2].params.nic',
      'steps[2].params.vfs',
      'steps[3].params.timeout',
    ]);
  });

  it("takes ovs-convert's vmVlan from 1 to 4094, as the zod schema does", () => {
    const validate = new Ajv({ strict: false, allErrors: true, validateFormats: false }).compile(committed as object);
    const withVlan = (vlan: string) =>
      parseYaml(example.replace('hostVlan: 1', `hostVlan: 1\n      vmVlan: ${vlan}`)) as unknown;
    expect(example).toContain('hostVlan: 1');
    expect(validate(withVlan('30'))).toBe(true);
    for (const vlan of ['0', '4095', 'thirty']) {
      expect(validate(withVlan(vlan)), vlan).toBe(false);
      const parsed = parsePlan(example.replace('hostVlan: 1', `hostVlan: 1\n      vmVlan: ${vlan}`));
      expect(problemsOf(parsed).map((p) => p.path)).toEqual(['steps[1].params.vmVlan']);
    }
    expect(STEP_PARAMS['ovs-convert'].parse({ vmVlan: 30 })).toMatchObject({ hostVlan: 1, vmVlan: 30 });
    expect(STEP_PARAMS['ovs-convert'].parse({})).not.toHaveProperty('vmVlan');
  });

  it('tells an editor that a duration is text with a unit', () => {
    const { properties } = generated as { properties: Record<string, { type?: string; pattern?: string }> };
    const hostDuration = properties.hostDuration;
    expect(hostDuration?.type).toBe('string');
    const pattern = new RegExp(hostDuration?.pattern ?? '(?!)');
    expect(['45m', '1h30m', '250ms', '1d'].filter((d) => pattern.test(d))).toHaveLength(4);
    expect(['600', '10 min', ''].filter((d) => pattern.test(d))).toEqual([]);
  });
});

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['10m', 600_000],
    ['1h30m', 5_400_000],
    ['250ms', 250],
  ])('reads %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', '10', '600', 'ten minutes', '5x', '1h 30m'])('refuses %j', (text) =>
    expect(parseDuration(text)).toBeUndefined(),
  );
});
