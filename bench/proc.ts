import { readFileSync } from 'node:fs';
import os from 'node:os';

/** Clock ticks per second of /proc/<pid>/stat times; 100 on every Linux the bench runs on. */
const CLK_TCK = 100;

export interface ProcSample {
  /** CPU seconds of the process itself. */
  cpuSelf: number;
  /** CPU seconds of its children that it has waited for (step commands, Ansible's forks). */
  cpuChildren: number;
  rssMb: number;
  /** Peak RSS so far (VmHWM). */
  peakRssMb: number;
}

/** One reading of /proc/<pid>/stat and /proc/<pid>/status; undefined once the process is gone. */
export function sampleProcess(pid: number): ProcSample | undefined {
  try {
    // Fields after the command name, which may itself hold spaces and parentheses.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /s, '')
      .split(' ');
    const tick = (i: number) => Number(fields[i - 3]) / CLK_TCK;
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return {
      cpuSelf: tick(14) + tick(15),
      cpuChildren: tick(16) + tick(17),
      rssMb: kb('VmRSS') / 1024,
      peakRssMb: kb('VmHWM') / 1024,
    };
  } catch {
    return undefined;
  }
}

/** CPU seconds a process spent between two samples, its waited-for children included. */
export function cpuBetween(before: ProcSample | undefined, after: ProcSample | undefined): number {
  if (before === undefined || after === undefined) return NaN;
  return after.cpuSelf + after.cpuChildren - (before.cpuSelf + before.cpuChildren);
}

/** Samples the RSS of some processes every so often and keeps the largest seen. */
export class RssWatcher {
  private readonly peak = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: Readonly<Record<string, number>>,
    everyMs = 500,
  ) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.sample();
  }

  private sample(): void {
    for (const [name, pid] of Object.entries(this.pids)) {
      const rss = sampleProcess(pid)?.rssMb;
      if (rss !== undefined && !(rss <= (this.peak.get(name) ?? 0))) this.peak.set(name, rss);
    }
  }

  /** Stop sampling; the largest RSS of each process, in MB. */
  stop(): Record<string, number> {
    clearInterval(this.timer);
    this.sample();
    return Object.fromEntries(this.peak);
  }
}

/** CPU seconds (waited-for children included) and peak RSS of named processes, from now until `stop()`. */
export class ProcessMeter<K extends string> {
  private readonly rss: RssWatcher;
  private readonly before: Record<string, ProcSample | undefined>;
  private result: { cpuS: Record<K, number>; peakRssMb: Record<K, number> } | undefined;

  constructor(
    private readonly pids: Readonly<Record<K, number>>,
    everyMs = 500,
  ) {
    this.rss = new RssWatcher(pids, everyMs);
    this.before = this.sampleAll();
  }

  private sampleAll(): Record<string, ProcSample | undefined> {
    return Object.fromEntries(Object.entries<number>(this.pids).map(([k, pid]) => [k, sampleProcess(pid)]));
  }

  /** Stop measuring (a second call returns the same); NaN for a process that could not be read. */
  stop(): { cpuS: Record<K, number>; peakRssMb: Record<K, number> } {
    if (this.result) return this.result;
    const after = this.sampleAll();
    const peak = this.rss.stop();
    const keys = Object.keys(this.pids) as K[];
    this.result = {
      cpuS: Object.fromEntries(keys.map((k) => [k, cpuBetween(this.before[k], after[k])])) as Record<K, number>,
      peakRssMb: Object.fromEntries(keys.map((k) => [k, peak[k] ?? NaN])) as Record<K, number>,
    };
    return this.result;
  }
}

/** The 1-minute load average: how busy the shared machine was around a run. */
export function loadAverage(): number {
  return Math.round((os.loadavg()[0] ?? NaN) * 100) / 100;
}
