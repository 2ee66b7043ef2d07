import { z } from 'zod';
import { IpOutputError } from './ip.js';

/**
 * The kernel's per-interface counters as `ip -s -s -j link` prints them (the same numbers as
 * /sys/class/net/<dev>/statistics, read inside the host's network namespace), and the host's TCP
 * retransmissions from `nstat` (iproute2), absolute and without touching nstat's history file.
 */
export const ipStatsArgv = () => ['ip', '-s', '-s', '-j', 'link', 'show'];
export const nstatArgv = () => ['nstat', '--ignore', '--noupdate', '--zeros', '--json'];

export interface InterfaceCounters {
  rxDropped: number;
  txDropped: number;
  rxErrors: number;
  txErrors: number;
  /** Receive overruns: the NIC had no buffer for a frame (`overrun` in `ip -s link`, rx_over_errors). */
  rxOverruns: number;
}

const n = z.number().int().nonnegative().default(0);
const Stats = z.looseObject({
  ifname: z.string(),
  stats64: z.looseObject({
    rx: z.looseObject({ errors: n, dropped: n, over_errors: n }),
    tx: z.looseObject({ errors: n, dropped: n }),
  }),
});

function json(stdout: string, what: string): unknown {
  try {
    return JSON.parse(stdout);
  } catch (cause) {
    throw new IpOutputError(`${what}: not JSON`, { cause });
  }
}

/** `ip -s -s -j link show`: the counters of every interface, by name. */
export function parseIpStats(stdout: string): Map<string, InterfaceCounters> {
  const parsed = z.array(Stats).safeParse(json(stdout, 'ip -s -j link'));
  if (!parsed.success)
    throw new IpOutputError(`ip -s -j link: ${parsed.error.issues[0]?.message ?? 'unexpected shape'}`);
  return new Map(
    parsed.data.map((l) => [
      l.ifname,
      {
        rxDropped: l.stats64.rx.dropped,
        txDropped: l.stats64.tx.dropped,
        rxErrors: l.stats64.rx.errors,
        txErrors: l.stats64.tx.errors,
        rxOverruns: l.stats64.rx.over_errors,
      },
    ]),
  );
}

/** `nstat --ignore --noupdate --zeros --json` (absolute values, nstat's history file neither read nor written): the TCP segments retransmitted since boot (TcpRetransSegs). */
export function parseNstatRetransmits(stdout: string): number {
  const parsed = z
    .object({ kernel: z.looseObject({ TcpRetransSegs: z.number().int().nonnegative() }) })
    .safeParse(json(stdout, 'nstat --json'));
  if (!parsed.success) throw new IpOutputError('nstat --json: no kernel.TcpRetransSegs');
  return parsed.data.kernel.TcpRetransSegs;
}

/** How much a counter grew; one that went down was reset (the device was re-created) and counts from zero. */
export const counterDelta = (before: number, after: number) => (after >= before ? after - before : after);
