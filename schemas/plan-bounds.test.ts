import { describe, expect, it } from 'vitest';
import { parsePlan, type PlanParse } from './plan.js';
import { STEP_PARAMS } from './steps.js';
import { stepOrderProblems } from './step-order.js';

const problemsOf = (parsed: PlanParse) => (parsed.ok ? [] : parsed.problems);

/** A plan whose lines are numbered in the tests below; `steps` replaces its steps. */
function planWith(steps: string, extra = ''): string {
  return [
    'apiVersion: refit/v1', // 1
    'kind: Campaign', // 2
    'name: bounds', // 3
    'targets: { selector: { role: hypervisor } }', // 4
    'steps:', // 5
    steps, // 6 …
    extra,
  ].join('\n');
}

const FULL = [
  '  - kind: drain', // 6
  '  - kind: ovs-convert', // 7
  '    params: { confirmWithin: 60s }', // 8
  '  - kind: sriov-enable', // 9
  '    params: { nic: ens6, vfs: 7 }', // 10
  '  - kind: reboot', // 11
  '    params: { timeout: 10m }', // 12
  '  - kind: verify', // 13
  '    params: { targets: [{ address: 10.0.0.1 }] }', // 14
  '  - kind: undrain', // 15
].join('\n');

describe('plan bounds', () => {
  it('accepts the whole campaign with its bounds respected', () => {
    expect(problemsOf(parsePlan(planWith(FULL)))).toEqual([]);
  });

  it('refuses a confirmation wait of ten years, and one too short for the controller to answer', () => {
    expect(problemsOf(parsePlan(planWith(FULL.replace('confirmWithin: 60s', 'confirmWithin: 3650d'))))).toEqual([
      { path: 'steps[1].params.confirmWithin', line: 8, column: 30, message: 'must be at most 366d' },
    ]);
    expect(problemsOf(parsePlan(planWith(FULL.replace('confirmWithin: 60s', 'confirmWithin: 1h'))))).toEqual([
      { path: 'steps[1].params.confirmWithin', line: 8, column: 30, message: 'must be at most 15m' },
    ]);
    expect(problemsOf(parsePlan(planWith(FULL.replace('confirmWithin: 60s', 'confirmWithin: 1s'))))).toEqual([
      { path: 'steps[1].params.confirmWithin', line: 8, column: 30, message: 'must be at least 5s' },
    ]);
  });

  it('refuses a zero timeout and a timeout beyond its bound', () => {
    expect(problemsOf(parsePlan(planWith(FULL.replace('timeout: 10m', 'timeout: 0s'))))).toEqual([
      { path: 'steps[3].params.timeout', line: 12, column: 24, message: 'must be at least 10s' },
    ]);
    expect(problemsOf(parsePlan(planWith(FULL.replace('timeout: 10m', 'timeout: 3h'))))).toEqual([
      { path: 'steps[3].params.timeout', line: 12, column: 24, message: 'must be at most 2h' },
    ]);
    const stepTimeout = FULL.replace('  - kind: undrain', '  - kind: undrain\n    timeout: 0ms');
    expect(problemsOf(parsePlan(planWith(stepTimeout)))).toEqual([
      { path: 'steps[5].timeout', line: 16, column: 14, message: 'must be at least 1s' },
    ]);
  });

  it('refuses durations beyond a year anywhere, however they are written', () => {
    const extra =
      'hostDuration: 99999999999999999999d\nwaves: { pauseBetweenWaves: 8d }\nwindows: [{ every: 400d, open: 1h }]';
    expect(problemsOf(parsePlan(planWith(FULL, extra)))).toEqual([
      { path: 'hostDuration', line: 16, column: 15, message: 'must be at most 366d' },
      expect.objectContaining({ path: 'waves.pauseBetweenWaves', line: 17, message: expect.stringMatching(/7d/) }),
      { path: 'windows[0].every', line: 18, column: 20, message: 'must be at most 366d' },
    ]);
  });

  it('refuses host counts no fleet has', () => {
    const extra =
      'waves: { canary: 1e12, batchSize: 5000000 }\nlimits: { fleetWide: 1e9 }\nfailureBudget: { maxFailedHosts: 200000 }';
    expect(problemsOf(parsePlan(planWith(FULL, extra))).map((p) => [p.path, p.message])).toEqual([
      ['waves.canary', 'Too big: expected number to be <=100000'],
      ['waves.batchSize', 'Too big: expected number to be <=100000'],
      ['limits.fleetWide', 'Too big: expected number to be <=100000'],
      ['failureBudget.maxFailedHosts', 'Too big: expected number to be <=100000'],
    ]);
  });

  it('bounds the same durations in a step command, so a host never waits without end', () => {
    expect(STEP_PARAMS['ovs-convert'].safeParse({ confirmWithin: 3650 * 86_400_000 }).success).toBe(false);
    expect(STEP_PARAMS['ovs-convert'].safeParse({ confirmWithin: 0 }).success).toBe(false);
    expect(STEP_PARAMS['ovs-convert'].parse({ confirmWithin: 2_000 }).confirmWithin).toBe(2_000);
    expect(STEP_PARAMS.reboot.safeParse({ timeout: 0 }).success).toBe(false);
  });
});

describe('step order', () => {
  const steps = (...kinds: string[]) =>
    kinds
      .map((k) =>
        k === 'sriov-enable'
          ? '  - kind: sriov-enable\n    params: { nic: ens6, vfs: 7 }'
          : k === 'verify'
            ? '  - kind: verify\n    params: { targets: [{ address: 10.0.0.1 }] }'
            : `  - kind: ${k}`,
      )
      .join('\n');

  it('refuses a reboot of a host whose VMs still run: [verify, reboot]', () => {
    expect(problemsOf(parsePlan(planWith(steps('verify', 'reboot'))))).toEqual([
      {
        path: 'steps[1]',
        line: 8,
        column: 5,
        message: "reboot needs a drain before it (and no undrain between): it would cut off the host's running VMs",
      },
    ]);
  });

  it('refuses ovs-convert without a drain, and after the VMs came back', () => {
    expect(problemsOf(parsePlan(planWith(steps('ovs-convert', 'verify')))).map((p) => p.path)).toEqual(['steps[0]']);
    expect(
      problemsOf(parsePlan(planWith(steps('drain', 'undrain', 'ovs-convert', 'verify')))).map((p) => p.message),
    ).toEqual([expect.stringMatching(/^ovs-convert needs a drain before it/)]);
  });

  it('refuses sriov-enable without a later reboot', () => {
    expect(problemsOf(parsePlan(planWith(steps('drain', 'reboot', 'sriov-enable', 'verify', 'undrain'))))).toEqual([
      expect.objectContaining({
        path: 'steps[2]',
        message: 'sriov-enable needs a reboot after it: the VFs and IOMMU come up only then',
      }),
    ]);
  });

  it('refuses a network change that no verify follows', () => {
    expect(problemsOf(parsePlan(planWith(steps('drain', 'verify', 'ovs-convert', 'undrain'))))).toEqual([
      expect.objectContaining({
        path: 'steps[2]',
        message: 'ovs-convert needs a verify after it: nothing would prove the network still works',
      }),
    ]);
  });

  it('refuses an undrain without a drain and a drain without an undrain', () => {
    expect(stepOrderProblems(['undrain'])).toEqual([{ index: 0, message: expect.stringMatching(/needs a drain/) }]);
    expect(stepOrderProblems(['drain', 'verify'])).toEqual([
      { index: 0, message: expect.stringMatching(/needs an undrain after it/) },
    ]);
  });

  it('accepts what needs no order: a verify alone, a drain and undrain, a reboot of a drained host', () => {
    expect(stepOrderProblems(['verify'])).toEqual([]);
    expect(stepOrderProblems(['drain', 'undrain'])).toEqual([]);
    expect(stepOrderProblems(['drain', 'reboot', 'undrain'])).toEqual([]);
    expect(stepOrderProblems(['drain', 'ovs-convert', 'sriov-enable', 'reboot', 'verify', 'undrain'])).toEqual([]);
  });
});
