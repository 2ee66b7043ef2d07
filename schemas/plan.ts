import { z } from 'zod';
import { isNode, isMap, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import { Duration, durationWithin, HostId, LabelKey, Labels, notADuration } from './common.js';
import { missingTunnelEnds, PlanStep } from './steps.js';
import { stepOrderProblems } from './step-order.js';
import { planTextProblem } from './plan-text.js';
import { longestWindowMs } from './windows.js';
import { formatPath, type Problem } from './problems.js';
import { Notify } from './notify.js';

/**
 * The most hosts one plan may name or count: ten times the largest fleet refit is measured with
 * (docs/BENCHMARKS.md). A larger number is a typo, and a status holding it would not fit Temporal.
 */
export const MAX_HOSTS = 100_000;
const DAY = 86_400_000;
/** The longest a rollout waits between waves, or a host may take: a week. */
const MAX_WAIT_MS = 7 * DAY;
/** Hosts, as a count in a plan; a number far beyond is named too big, not also not whole. */
const HostCount = z.number().max(MAX_HOSTS, { abort: true }).int();
/** The same inside a union, where an aborted alternative would hide its reason behind the union's. */
const HostCountInUnion = z.number().int().max(MAX_HOSTS);

const COUNT_OR_PERCENT = 'must be a whole number or a percentage from 1% to 100%';
/** "25%" or a whole number of hosts. */
const CountOrPercent = z.union([HostCountInUnion.min(1), z.string().regex(/^(100|[1-9][0-9]?)%$/, COUNT_OR_PERCENT)], {
  error: COUNT_OR_PERCENT,
});

export const Targets = z
  .strictObject({
    /** Named hosts. Absent ones are reported, never dropped silently. */
    hosts: z.array(HostId).max(MAX_HOSTS).optional(),
    /** Every present host carrying all these labels. */
    selector: Labels.refine((l) => Object.keys(l).length <= 64, 'at most 64 labels').optional(),
    /** Only hosts whose facts match, e.g. those still on a Linux bridge. Applies to named hosts too. */
    facts: z
      .strictObject({
        bridge: z.enum(['linux', 'ovs']).optional(),
        sriov: z.enum(['enabled', 'disabled']).optional(),
        cordoned: z.boolean().optional(),
      })
      .optional(),
  })
  .refine((t) => t.hosts !== undefined || t.selector !== undefined, {
    message: 'name hosts, a selector, or both',
  })
  .meta({ anyOf: [{ required: ['hosts'] }, { required: ['selector'] }] });

export const Waves = z.strictObject({
  /** Hosts in the first wave, alone, before any other. */
  canary: HostCount.min(0).default(1),
  /** Hosts per following wave. */
  batchSize: CountOrPercent.default('25%'),
  /** At most this many hosts under maintenance at once in this rollout. */
  maxInFlight: z.number().int().min(1).max(10_000).default(4),
  /** Between waves: wait this long, or wait for an operator's approval. */
  pauseBetweenWaves: z
    .union([z.literal('approval'), durationWithin(0, MAX_WAIT_MS)], {
      error: (issue) => (issue.input === undefined ? undefined : `${notADuration(issue.input)}, or "approval"`),
    })
    .optional(),
});

const HHMM = z.string().regex(/^([01][0-9]|2[0-3]):[0-5][0-9]$/, 'must be a time HH:MM');
const WEEKDAY = z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']);

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

export const MaintenanceWindowSpec = z.union(
  [
    z.strictObject({
      days: z.array(WEEKDAY).min(1).max(7),
      start: HHMM,
      end: HHMM,
      timeZone: z.string().refine(isTimeZone, 'must be an IANA time zone such as Europe/Berlin').default('UTC'),
    }),
    z.strictObject({
      /** A window every so often, open for a while: for short test windows, or "every 1d open 4h". */
      every: Duration.refine((ms) => ms >= 1_000, 'must be at least 1s'),
      open: Duration,
      offset: Duration.default(0),
    }),
  ],
  { error: 'must be a weekly window (days, start, end, timeZone) or an interval window (every, open, offset)' },
);

/** Operator actions a plan can require signatures for (the names of the rollout's updates and signals). */
export const SIGNABLE_ACTIONS = ['pause', 'resume', 'cancel', 'approve', 'retryHost', 'skipHost'] as const;

const BUDGET = 'must be a whole number or a percentage from 0% to 100%';

export const Plan = z
  .strictObject({
    $schema: z
      .string()
      .optional()
      .meta({ description: 'The JSON Schema an editor checks this file against; refit ignores it.' }),
    apiVersion: z.literal('refit/v1'),
    kind: z.literal('Campaign'),
    name: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/, 'must be lower-case letters, digits and "-", at most 40'),
    description: z.string().max(2000).optional(),
    targets: Targets,
    waves: Waves.prefault({}),
    steps: z.array(PlanStep).min(1).max(50),
    /** rollback undoes a failed host's completed steps in reverse; hold leaves it drained for a person. */
    onHostFailure: z.enum(['rollback', 'hold']).default('rollback'),
    /** On cancel no host starts; hosts in flight finish their steps, or undo them. */
    onCancel: z.enum(['finish', 'rollback']).default('finish'),
    /** A target host already in another campaign: wait until it is free, or skip it. */
    onBusyHost: z.enum(['wait', 'skip']).default('wait'),
    /**
     * A target host that is offline when targets resolve or when its turn comes: wait for it (up to
     * `offlineWait`, then it fails), skip it (counted as skipped, not failed), or fail it at once.
     */
    onOffline: z.enum(['wait', 'skip', 'fail']).default('wait'),
    /** With `onOffline: wait`, how long to wait for an offline host once its turn has come. */
    offlineWait: Duration.refine((ms) => ms >= 1_000, 'must be at least 1s').default(30 * 60_000),
    approvals: z
      .strictObject({
        /** Wait for an operator's approval once the canary succeeded. */
        afterCanary: z.boolean().default(false),
        afterEachWave: z.boolean().default(false),
        /** Four eyes: the operator who started the rollout (signed start) may not approve it; approvals must be signed. */
        distinctFrom: z.literal('starter').optional(),
      })
      .prefault({}),
    /** Operator actions that must carry a verified signature (`refit` with the operator's key); others may come unsigned. */
    signatures: z
      .strictObject({
        require: z.array(z.enum(SIGNABLE_ACTIONS)).default([]),
      })
      .prefault({}),
    limits: z
      .strictObject({
        /** At most this many hosts in flight per value of each label, e.g. { rack: 1 }. */
        perLabel: z
          .record(LabelKey, HostCount.min(1))
          .refine((l) => Object.keys(l).length <= 16, 'at most 16 labels')
          .default({}),
        /** At most this many hosts under maintenance across all running rollouts together. */
        fleetWide: HostCount.min(1).optional(),
      })
      .prefault({}),
    /** Hosts start only inside these windows; none means any time. */
    windows: z.array(MaintenanceWindowSpec).max(100).default([]),
    /** How long one host takes; a host starts only if this fits before its window closes. */
    hostDuration: durationWithin(0, MAX_WAIT_MS).default(0),
    /** More failed hosts than this stops the rollout; 0 stops it at the first failure. */
    failureBudget: z
      .strictObject({
        maxFailedHosts: z
          .union([HostCountInUnion.min(0), z.string().regex(/^(100|[1-9]?[0-9])%$/, BUDGET)], { error: BUDGET })
          .default(1),
      })
      .prefault({}),
    /** Webhooks told when the rollout waits for an approval, pauses, loses a host or ends. */
    notify: Notify.optional(),
  })
  .superRefine((plan, ctx) => {
    const zonesValid = plan.windows.every((w) => !('timeZone' in w) || isTimeZone(w.timeZone));
    if (
      zonesValid &&
      plan.windows.length > 0 &&
      plan.hostDuration > 0 &&
      plan.hostDuration <= MAX_WAIT_MS &&
      longestWindowMs(plan.windows) < plan.hostDuration
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['hostDuration'],
        message: 'longer than every maintenance window: no host could ever start',
      });
    }
    for (const { index, message } of stepOrderProblems(plan.steps.map((s) => s.kind)))
      ctx.addIssue({ code: 'custom', path: ['steps', index], message });
    for (const m of missingTunnelEnds(plan.steps, plan.targets.hosts ?? []))
      ctx.addIssue({
        code: 'custom',
        path: ['steps', m.index, 'params', 'hosts'],
        message: `no entry for ${m.hostId}, a target of this plan: each host needs its own end of the tunnel`,
      });
  })
  .meta({
    title: 'refit plan',
    description: 'One campaign: which hosts, in which waves and windows, through which steps (docs/plans.md).',
  })
  .transform(({ $schema: _schema, ...plan }) => ({ ...plan, steps: withBaselineTargets(plan.steps) }));
export type Plan = z.output<typeof Plan>;
export type PlanInput = z.input<typeof Plan>;

/** A problem with a plan file, and where in the file it is (1-based). */
export interface PlanProblem extends Problem {
  line: number;
  column: number;
}

export type PlanParse = { ok: true; plan: Plan } | { ok: false; problems: PlanProblem[] };

/** Parse and validate a plan file's text. Every problem is returned, each with its path, line and column. */
export function parsePlan(text: string): PlanParse {
  const lines = new LineCounter();
  const tooMuch = planTextProblem(text);
  if (tooMuch) {
    lines.addNewLine(0);
    for (let i = text.indexOf('\n'); i >= 0 && i < tooMuch.offset; i = text.indexOf('\n', i + 1))
      lines.addNewLine(i + 1);
    return { ok: false, problems: [{ path: '(syntax)', ...at(lines, tooMuch.offset), message: tooMuch.message }] };
  }
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => ({
        path: '(syntax)',
        ...at(lines, e.pos[0]),
        message: e.message.split('\n')[0] ?? e.message,
      })),
    };
  }
  let json: unknown;
  try {
    // Aliases are expanded here; one that expands too far (a "billion laughs") is refused by the parser.
    json = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { ok: false, problems: [{ path: '(syntax)', line: 1, column: 1, message: (err as Error).message }] };
  }
  const result = Plan.safeParse(json, { reportInput: true });
  if (result.success) return { ok: true, plan: result.data };
  const problems = result.error.issues.flatMap(specific).map((issue) => ({
    path: formatPath(issue.path),
    ...at(lines, offsetOf(doc, issue)),
    message: reasonOf(issue),
  }));
  return { ok: false, problems: problems.sort((a, b) => a.line - b.line || a.column - b.column) };
}

/** zod's reason, but a missing key is `required` rather than "received undefined". */
function reasonOf(issue: z.core.$ZodIssue): string {
  if (issue.input !== undefined) return issue.message;
  if (issue.code === 'invalid_type') return `required: expected ${issue.expected}`;
  if (issue.code === 'invalid_value')
    return `required: expected ${issue.values.map((v) => JSON.stringify(v)).join(' or ')}`;
  return issue.message;
}

/**
 * A failed union's issues are those of the one alternative that got past the value itself to its
 * parts, if only one did: `every: 600` in an interval window is about `every`, not "no kind of window
 * matches". Otherwise the union's own message says it.
 */
function specific(issue: z.core.$ZodIssue): z.core.$ZodIssue[] {
  if (issue.code !== 'invalid_union') return [issue];
  const fitting = issue.errors.filter((alternative) => alternative.every((i) => i.path.length > 0));
  const [only] = fitting;
  if (fitting.length !== 1 || only === undefined) return [issue];
  return only.flatMap((i) => specific({ ...i, path: [...issue.path, ...i.path] }));
}

/** `steps[2].params.vfs (line 24, column 13): Too small: expected number to be >=1`, as the CLI prints it. */
export function planProblemText(p: PlanProblem): string {
  return `${p.path} (line ${p.line}, column ${p.column}): ${p.message}`;
}

function at(lines: LineCounter, offset: number): { line: number; column: number } {
  const { line, col } = lines.linePos(offset);
  return { line, column: col };
}

/**
 * Where an issue is in the document: the node at its path, or the nearest one above it that exists
 * (a missing key is reported at the map it is missing from); an unknown key at that key.
 */
function offsetOf(doc: Document, issue: z.core.$ZodIssue): number {
  for (let depth = issue.path.length; depth >= 0; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(issue.path.slice(0, depth), true);
    if (!isNode(node) || !node.range) continue;
    if (depth === issue.path.length && issue.code === 'unrecognized_keys' && isMap(node)) {
      const key = node.items.find((pair) => isScalar(pair.key) && pair.key.value === issue.keys[0])?.key;
      if (isNode(key) && key.range) return key.range[0];
    }
    return node.range[0];
  }
  return 0;
}

/** The JSON Schema of a plan file, for editors: what a plan author may write (durations with units). */
export function planJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(Plan, { io: 'input', target: 'draft-07' });
}

/**
 * Each change (ovs-convert, sriov-enable) gets, unless the plan set them, the targets of the verify
 * steps after it that send from the host: the host measures them before it changes anything.
 */
function withBaselineTargets<S extends PlanStep>(steps: S[]): S[] {
  return steps.map((step, index) => {
    if ((step.kind !== 'ovs-convert' && step.kind !== 'sriov-enable') || step.params.baselineTargets !== undefined)
      return step;
    const seen = new Set<string>();
    const targets = steps
      .slice(index + 1)
      .flatMap((s) => (s.kind === 'verify' && s.params.fromVm === undefined ? s.params.targets : []))
      .filter((t) => {
        const key = `${t.address}:${t.port ?? ''}`;
        return !seen.has(key) && seen.add(key);
      });
    return targets.length === 0 ? step : { ...step, params: { ...step.params, baselineTargets: targets } };
  });
}
