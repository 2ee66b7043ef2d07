import { z } from 'zod';
import { IPv4 } from '../../../schemas/common.js';
import type { TrafficStats } from '../../../schemas/steps.js';
import { RefitError } from '../../../schemas/errors.js';

export interface HpingProbe {
  address: string;
  /** With a port: TCP SYN to it (a closed port answers RST, which counts as a reply). Without: ICMP echo. */
  port?: number | undefined;
  count: number;
  /** Microseconds between packets. */
  intervalUs?: number;
}

/** The hping3 argument list for a probe. The address is checked as IPv4 before it reaches the command line. */
export function hpingArgv(probe: HpingProbe): string[] {
  const address = IPv4.parse(probe.address);
  const count = z.number().int().min(1).max(100_000).parse(probe.count);
  const interval = `u${z
    .number()
    .int()
    .min(1_000)
    .max(10_000_000)
    .parse(probe.intervalUs ?? 10_000)}`;
  const mode =
    probe.port === undefined ? ['-1'] : ['-S', '-p', String(z.number().int().min(1).max(65535).parse(probe.port))];
  return ['hping3', ...mode, '-c', String(count), '-i', interval, address];
}

export type HpingStats = Omit<TrafficStats, 'target'>;

export class HpingOutputError extends RefitError {}

// Some hping3 builds print "tramitted" (sic); both spellings are in the wild.
const COUNTS = /(\d+) packets (?:transmitted|tramitted), (\d+) packets received, (\d+(?:\.\d+)?)% packet loss/;
const RTT = /round-trip min\/avg\/max = ([\d.]+)\/([\d.]+)\/([\d.]+) ms/;

/** Parse hping3's closing statistics, which it prints on stderr. Round-trip times only when something came back. */
export function parseHpingStats(stderr: string): HpingStats {
  const counts = COUNTS.exec(stderr);
  if (counts === null)
    throw new HpingOutputError(`no hping3 statistics in: ${stderr.trim().slice(0, 200) || '(empty)'}`);
  const [, sent, got, loss] = counts;
  const transmitted = Number(sent);
  const received = Number(got);
  const stats: HpingStats = { transmitted, received, lossPct: Number(loss) };
  const rtt = RTT.exec(stderr);
  if (rtt !== null && received > 0) {
    stats.rttMinMs = Number(rtt[1]);
    stats.rttAvgMs = Number(rtt[2]);
    stats.rttMaxMs = Number(rtt[3]);
  }
  return stats;
}
