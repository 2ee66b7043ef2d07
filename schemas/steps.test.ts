import { describe, expect, it } from 'vitest';
import { stepLabel } from './names.js';
import { PlanStep } from './steps.js';

describe('stepLabel', () => {
  it('names an apply by its kind and a revert as revert:<kind>', () => {
    expect(stepLabel('drain', 'apply')).toBe('drain');
    expect(stepLabel('ovs-convert', 'revert')).toBe('revert:ovs-convert');
  });
});

describe('nic-tuning and net-health params', () => {
  const problems = (kind: 'nic-tuning' | 'net-health', params: unknown) => {
    const r = PlanStep.safeParse({ kind, params });
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('takes offloads, rings, channels, txqueuelen and MTU per named interface', () => {
    const params = {
      interfaces: [
        { name: 'ens6', offloads: { gro: false }, rings: { rx: 4096 }, channels: { combined: 8 }, mtu: 9000 },
      ],
    };
    expect(problems('nic-tuning', params)).toEqual([]);
  });

  it('refuses an interface without settings, one named twice, a hostile name and an unknown offload', () => {
    expect(problems('nic-tuning', { interfaces: [{ name: 'ens6' }] })).toEqual([
      'params.interfaces.0: names no setting to change (offloads, rings, channels, txqueuelen, mtu)',
    ]);
    expect(
      problems('nic-tuning', {
        interfaces: [
          { name: 'ens6', mtu: 9000 },
          { name: 'ens6', mtu: 1500 },
        ],
      }),
    ).toEqual(['params.interfaces: names an interface twice']);
    expect(problems('nic-tuning', { interfaces: [{ name: 'ens6; reboot', mtu: 9000 }] })[0]).toMatch(
      /^params\.interfaces\.0\.name: /,
    );
    expect(problems('nic-tuning', { interfaces: [{ name: 'ens6', offloads: { ufo: true } }] })[0]).toMatch(/ufo/);
    expect(problems('nic-tuning', { interfaces: [{ name: 'ens6', mtu: 67 }] })[0]).toMatch(
      /^params\.interfaces\.0\.mtu/,
    );
  });

  it('net-health watches 10 s by default and allows no errors or overruns unless the plan says', () => {
    const r = PlanStep.parse({ kind: 'net-health' });
    expect(r.params).toEqual({ window: 10_000, max: { rxErrors: 0, txErrors: 0, rxOverruns: 0 } });
    expect(problems('net-health', { window: '2h' })).toEqual(['params.window: must be at most 1h']);
    expect(problems('net-health', { max: { rxDroped: 1 } })[0]).toMatch(/rxDroped/);
  });
});
