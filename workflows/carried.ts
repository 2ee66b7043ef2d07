import type { Plan } from '../schemas/plan.js';
import {
  HOST_STATES,
  type CompactCarried,
  type HostState,
  type HostStatus,
  type RolloutCarried,
  type RolloutStatus,
} from '../schemas/rollout.js';
import { stepLabel } from '../schemas/names.js';

/**
 * What a rollout carries through continue-as-new, in a compact encoding (decision 0024): every host id
 * once (runs of numbered names as ranges), each host's state as runs of one letter, the fields a host
 * has beyond what its state implies only for the hosts that have them, the failure-domain labels as
 * per-label dictionaries, and the waves as their index and state (their hosts follow from each host's
 * wave). The plan's named hosts go the same way. `expandCarried` gives back exactly what went in.
 */

/** One letter per host state. */
const LETTER: Record<HostState, string> = {
  pending: 'p',
  running: 'r',
  succeeded: 's',
  failed: 'f',
  'rolled-back': 'b',
  held: 'h',
  skipped: 'k',
};
const STATE_OF = Object.fromEntries(HOST_STATES.map((s) => [LETTER[s], s])) as Record<string, HostState>;

/** `x1-00001`, `x1-00002`, …: a prefix and a zero-padded number. */
const NUMBERED = /^(.*?)(\d+)$/;

/**
 * Host ids in order: a run of ids that share a prefix and count up by one with the same width is
 * `[prefix, first, count, width]`; any other id is itself.
 */
export type IdRuns = NonNullable<CompactCarried['planHosts']>;

export function encodeIds(ids: readonly string[]): IdRuns {
  const out: IdRuns = [];
  for (const id of ids) {
    const m = NUMBERED.exec(id);
    const last = out.at(-1);
    if (m) {
      const [, prefix = '', digits = ''] = m;
      const n = Number(digits);
      // Only a number that prints back as it was written (no 1e21, same width) joins a run.
      if (Number.isSafeInteger(n) && String(n).padStart(digits.length, '0') === digits) {
        if (Array.isArray(last) && last[0] === prefix && last[1] + last[2] === n && last[3] === digits.length) {
          last[2] += 1;
          continue;
        }
        out.push([prefix, n, 1, digits.length]);
        continue;
      }
    }
    out.push(id);
  }
  // A run of one is written as the id.
  return out.map((r) => (Array.isArray(r) && r[2] === 1 ? `${r[0]}${String(r[1]).padStart(r[3], '0')}` : r));
}

export function decodeIds(runs: IdRuns): string[] {
  const ids: string[] = [];
  for (const r of runs) {
    if (typeof r === 'string') ids.push(r);
    else for (let i = 0; i < r[2]; i++) ids.push(`${r[0]}${String(r[1] + i).padStart(r[3], '0')}`);
  }
  return ids;
}

/** `s9998f1p1`: runs of one state letter and their length. */
function encodeRuns(letters: readonly string[]): string {
  let out = '';
  for (let i = 0; i < letters.length;) {
    let j = i;
    while (j < letters.length && letters[j] === letters[i]) j++;
    out += `${letters[i]}${j - i}`;
    i = j;
  }
  return out;
}

function decodeRuns(runs: string): string[] {
  const out: string[] = [];
  for (const [, letter = '', count] of runs.matchAll(/([a-z])(\d+)/g))
    for (let i = 0; i < Number(count); i++) out.push(letter);
  return out;
}

/** Runs of equal numbers: `[value, count]` pairs. */
function encodeNumbers(values: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const v of values) {
    const last = out.at(-1);
    if (last && last[0] === v) last[1] += 1;
    else out.push([v, 1]);
  }
  return out;
}

const decodeNumbers = (runs: [number, number][]): number[] => runs.flatMap(([v, n]) => Array<number>(n).fill(v));

/** What a host's state says of it; anything else it has is carried beside it. */
function implied(plan: Plan, hostId: string, state: HostState, wave: number): HostStatus {
  const last = plan.steps.at(-1);
  return {
    hostId,
    state,
    step: state === 'succeeded' && last ? stepLabel(last.kind, 'apply') : null,
    wave,
    attempts: state === 'pending' || state === 'skipped' ? 0 : 1,
  };
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function compactCarried(carried: RolloutCarried, plan: Plan): CompactCarried {
  const { hosts, waves, ...status } = carried.status;
  const extra: Record<number, Partial<HostStatus>> = {};
  hosts.forEach((h, i) => {
    const base = implied(plan, h.hostId, h.state, h.wave) as unknown as Record<string, unknown>;
    const own = h as unknown as Record<string, unknown>;
    const diff: Record<string, unknown> = {};
    for (const key of new Set([...Object.keys(own), ...Object.keys(base)]))
      if (!sameValue(own[key], base[key])) diff[key] = own[key] === undefined ? null : own[key];
    if (Object.keys(diff).length > 0) extra[i] = diff;
  });
  const labels = Object.keys(plan.limits.perLabel);
  const domains = labels.map((label) => {
    const values: string[] = [];
    const index = new Map<string, number>();
    const codes = hosts.map((h) => {
      const v = carried.domains[h.hostId]?.[label] ?? '(none)';
      let code = index.get(v);
      if (code === undefined) index.set(v, (code = values.push(v) - 1));
      return code;
    });
    return { label, values, codes: encodeNumbers(codes) };
  });
  const { status: _status, domains: _domains, ...rest } = carried;
  return {
    encoding: 'compact-1',
    ...rest,
    status: { ...status, waves: waves.map(({ index, state }) => ({ index, state })) },
    hosts: {
      ids: encodeIds(hosts.map((h) => h.hostId)),
      states: encodeRuns(hosts.map((h) => LETTER[h.state])),
      waves: encodeNumbers(hosts.map((h) => h.wave)),
      extra,
      domains,
    },
    ...(plan.targets.hosts !== undefined ? { planHosts: encodeIds(plan.targets.hosts) } : {}),
  };
}

/** A compact carried state, or one a run from before the encoding handed on. */
export function isCompact(carried: RolloutCarried | CompactCarried): carried is CompactCarried {
  return (carried as CompactCarried).encoding === 'compact-1';
}

/** The plan as it came in: a compact state carries its named hosts beside it. */
export function expandPlan(plan: Plan, carried: RolloutCarried | CompactCarried | undefined): Plan {
  if (carried === undefined || !isCompact(carried) || carried.planHosts === undefined) return plan;
  return { ...plan, targets: { ...plan.targets, hosts: decodeIds(carried.planHosts) } };
}

/** The plan a compact state goes with: its named hosts are in the state. */
export function planWithoutHosts(plan: Plan): Plan {
  if (plan.targets.hosts === undefined) return plan;
  return { ...plan, targets: { ...plan.targets, hosts: [] } };
}

export function expandCarried(carried: RolloutCarried | CompactCarried, plan: Plan): RolloutCarried {
  if (!isCompact(carried)) return carried;
  const { encoding: _encoding, hosts: c, planHosts: _planHosts, status: compactStatus, ...rest } = carried;
  const ids = decodeIds(c.ids);
  const states = decodeRuns(c.states);
  const waveOf = decodeNumbers(c.waves);
  const hosts = ids.map((hostId, i) => {
    const host = implied(plan, hostId, STATE_OF[states[i] ?? ''] ?? 'pending', waveOf[i] ?? 0);
    const own = host as unknown as Record<string, unknown>;
    for (const [key, value] of Object.entries(c.extra[i] ?? {}))
      if (value === null && key !== 'step') delete own[key];
      else own[key] = value;
    return host;
  });
  const domains: RolloutCarried['domains'] = {};
  const codes = c.domains.map((d) => decodeNumbers(d.codes));
  ids.forEach((hostId, i) => {
    domains[hostId] = Object.fromEntries(c.domains.map((d, l) => [d.label, d.values[codes[l]?.[i] ?? 0] ?? '(none)']));
  });
  const status: RolloutStatus = {
    ...compactStatus,
    hosts,
    waves: compactStatus.waves.map(({ index, state }) => ({
      index,
      state,
      hosts: hosts.filter((h) => h.wave === index).map((h) => h.hostId),
    })),
  };
  return { ...rest, status, domains };
}
