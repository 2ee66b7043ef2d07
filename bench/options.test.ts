import { describe, expect, it } from 'vitest';
import { BenchUsageError, benchOptions } from './options.js';

describe('bench options', () => {
  it('runs every section but scale unless asked', () => {
    const o = benchOptions([], {}, '/repo');
    expect(o.sections).toEqual(['dispatch', 'footprint', 'throughput', 'ansible', 'modelled', 'history', 'carried']);
    expect(o.carriedHosts).toBe(100_000);
    expect(o.scaleHosts).toBe(10_000);
  });

  it('takes the scale run from flags, which win over the environment', () => {
    const o = benchOptions(
      ['--sections', 'scale', '--scale-hosts', '2000'],
      { REFIT_BENCH_SCALE_HOSTS: '500', REFIT_BENCH_SCALE_FLEETS: '3' },
      '/repo',
    );
    expect(o.sections).toEqual(['scale']);
    expect(o.scaleHosts).toBe(2000);
    expect(o.scaleFleets).toBe(3);
  });

  it('takes the controller worker settings and the dev server store', () => {
    const o = benchOptions(
      [
        '--controller-worker',
        'maxConcurrentWorkflowTaskPolls=20, maxCachedWorkflows=0',
        '--temporal-db',
        'memory',
        '--temporal-pragmas',
        'journal_mode=wal,synchronous=normal',
      ],
      {},
      '/repo',
    );
    expect(o.controllerWorker).toEqual({ maxConcurrentWorkflowTaskPolls: 20, maxCachedWorkflows: 0 });
    expect(o.temporalDb).toBe('memory');
    expect(o.temporalPragmas).toEqual({ journal_mode: 'wal', synchronous: 'normal' });
    expect(benchOptions([], {}, '/repo')).toMatchObject({ controllerWorker: {}, temporalDb: 'file' });
  });

  it('refuses what it cannot run, naming the flag', () => {
    expect(() => benchOptions(['--controller-worker', 'pollers=3'], {}, '/repo')).toThrow(/"pollers" is not one of/);
    expect(() => benchOptions(['--controller-worker', 'maxCachedWorkflows=x'], {}, '/repo')).toThrow(
      /maxCachedWorkflows=x needs a whole number/,
    );
    expect(() => benchOptions(['--temporal-db', 'disk'], {}, '/repo')).toThrow(/--temporal-db/);
    expect(() => benchOptions(['--temporal-pragmas', 'journal_mode=wal;drop'], {}, '/repo')).toThrow(
      /"journal_mode=wal;drop" is not PRAGMA=VALUE/,
    );
    expect(() => benchOptions(['--scale-hosts', '0'], {}, '/repo')).toThrow(BenchUsageError);
    expect(() => benchOptions(['--scale-hosts', '0'], {}, '/repo')).toThrow(/--scale-hosts/);
    expect(() => benchOptions(['--sections', 'scal'], {}, '/repo')).toThrow(/unknown section "scal"/);
  });
});
