import { describe, expect, it } from 'vitest';
import { InvalidFailSpecError, parseFailSpec, simHostIds, simLabels } from './fleet.js';

describe('parseFailSpec', () => {
  it('reads host=step as a step that fails every time', () => {
    expect(parseFailSpec('sim-003=ovs-convert')).toEqual({ 'sim-003': { 'ovs-convert': 'always' } });
  });

  it('reads host=step:once, several hosts, and several steps of one host', () => {
    expect(parseFailSpec('sim-003=ovs-convert, sim-007=reboot:once,sim-003=verify:always')).toEqual({
      'sim-003': { 'ovs-convert': 'always', verify: 'always' },
      'sim-007': { reboot: 'once' },
    });
  });

  it('reads an empty spec as no failures', () => {
    expect(parseFailSpec('')).toEqual({});
  });

  it.each([
    ['sim-003', /not host=step/],
    ['=drain', /not host=step/],
    ['Sim_3=drain', /not a host id/],
    ['sim-003=defrag', /not a step \(drain, ovs-convert/],
    ['sim-003=drain:sometimes', /neither always nor once/],
  ])('refuses "%s" and says why', (text, reason) => {
    expect(() => parseFailSpec(text)).toThrow(InvalidFailSpecError);
    expect(() => parseFailSpec(text)).toThrow(reason);
  });
});

describe('the simulated fleet', () => {
  it('names hosts with a zero-padded number', () => {
    expect(simHostIds(3)).toEqual(['sim-001', 'sim-002', 'sim-003']);
    expect(simHostIds(1000, 'lab').slice(998)).toEqual(['lab-999', 'lab-1000']);
  });

  it('puts twenty hosts in each rack', () => {
    expect(simLabels(0)).toEqual({ rack: 'r1', role: 'hypervisor', driver: 'sim' });
    expect(simLabels(20).rack).toBe('r2');
  });
});
