import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDuration } from './common.js';
import { parsePlan } from './plan.js';

const example = readFileSync(new URL('../examples/ovs-sriov.yaml', import.meta.url), 'utf8');

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

  it('reports YAML syntax errors with their line', () => {
    const parsed = parsePlan('apiVersion: refit/v1\nsteps: [drain\n');
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problems[0]?.path).toMatch(/^line \d+/);
  });

  it('needs hosts or a selector', () => {
    const parsed = parsePlan(example.replace(/targets:\n {2}selector:\n {4}role: hypervisor\n/, 'targets: {}\n'));
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problems.map((p) => p.path)).toContain('targets');
  });
});

describe('the example plans', () => {
  const dir = new URL('../examples/', import.meta.url);
  it.each(readdirSync(dir).filter((f) => f.endsWith('.yaml')))('%s is valid', (file) => {
    const parsed = parsePlan(readFileSync(new URL(file, dir), 'utf8'));
    expect(parsed.ok ? [] : parsed.problems).toEqual([]);
  });

  it('refuses a host duration longer than every window', () => {
    const parsed = parsePlan(
      readFileSync(new URL('saturday-window.yaml', dir), 'utf8').replace('hostDuration: 45m', 'hostDuration: 5h'),
    );
    expect(parsed.ok ? [] : parsed.problems).toEqual([
      { path: 'hostDuration', message: 'longer than every maintenance window: no host could ever start' },
    ]);
  });

  it('refuses an unknown time zone', () => {
    const parsed = parsePlan(
      readFileSync(new URL('saturday-window.yaml', dir), 'utf8').replace('Europe/Berlin', 'Europe/Atlantis'),
    );
    expect(parsed.ok ? [] : parsed.problems.map((p) => p.path)).toEqual(['windows[0].timeZone']);
  });
});

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['10m', 600_000],
    ['1h30m', 5_400_000],
    ['250ms', 250],
  ])('reads %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', '10', 'ten minutes', '5x', '1h 30m'])('refuses %j', (text) =>
    expect(parseDuration(text)).toBeUndefined(),
  );
});
