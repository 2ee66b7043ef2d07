import { describe, expect, it } from 'vitest';
import { ProcessMeter } from './proc.js';

describe('ProcessMeter', () => {
  it('reports the CPU a process used and its peak RSS, the same on every stop', () => {
    const meter = new ProcessMeter({ self: process.pid, gone: 2 ** 22 + 1 });
    let x = 0;
    for (const end = process.cpuUsage().user + 200_000; process.cpuUsage().user < end;) x += Math.sqrt(x + 1);
    const first = meter.stop();
    // 0.2 s of user time were spent between start and stop; /proc counts whole ticks of 10 ms.
    expect(first.cpuS.self).toBeGreaterThanOrEqual(0.15);
    expect(first.peakRssMb.self).toBeGreaterThan(10);
    expect(first.cpuS.gone).toBeNaN();
    expect(first.peakRssMb.gone).toBeNaN();
    expect(meter.stop()).toBe(first);
  });
});
