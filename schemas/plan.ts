import { z } from 'zod';
import { parseDocument } from 'yaml';
import { HostId, Labels } from './common.js';
import { PlanStep } from './steps.js';

/** "25%" or a whole number of hosts. */
const CountOrPercent = z.union([
  z.number().int().min(1),
  z.string().regex(/^(100|[1-9][0-9]?)%$/, 'must be a whole number or a percentage from 1% to 100%'),
]);

export const Targets = z
  .strictObject({
    /** Named hosts. Absent ones are reported, never dropped silently. */
    hosts: z.array(HostId).optional(),
    /** Every present host carrying all these labels. */
    selector: Labels.optional(),
  })
  .refine((t) => t.hosts !== undefined || t.selector !== undefined, {
    message: 'name hosts, a selector, or both',
  });

export const Waves = z.strictObject({
  /** Hosts in the first wave, alone, before any other. */
  canary: z.number().int().min(0).default(1),
  /** Hosts per following wave. */
  batchSize: CountOrPercent.default('25%'),
  /** At most this many hosts under maintenance at once in this rollout. */
  maxInFlight: z.number().int().min(1).max(10_000).default(4),
});

export const Plan = z
  .strictObject({
    apiVersion: z.literal('refit/v1'),
    kind: z.literal('Campaign'),
    name: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/, 'must be lower-case letters, digits and "-", at most 40'),
    description: z.string().max(2000).optional(),
    targets: Targets,
    waves: Waves.prefault({}),
    steps: z.array(PlanStep).min(1),
    /** rollback undoes a failed host's completed steps in reverse; hold leaves it drained for a person. */
    onHostFailure: z.enum(['rollback', 'hold']).default('rollback'),
    /** More failed hosts than this stops the rollout; 0 stops it at the first failure. */
    failureBudget: z
      .strictObject({
        maxFailedHosts: z
          .union([z.number().int().min(0), z.string().regex(/^(100|[1-9]?[0-9])%$/, 'must be a whole number or a percentage from 0% to 100%')])
          .default(1),
      })
      .prefault({}),
  })
  .superRefine((plan, ctx) => {
    plan.steps.forEach((step, i) => {
      if (step.kind === 'reboot' && i === 0) {
        ctx.addIssue({ code: 'custom', path: ['steps', i], message: 'a reboot cannot be the first step: drain first' });
      }
    });
  });
export type Plan = z.output<typeof Plan>;
export type PlanInput = z.input<typeof Plan>;

export interface PlanProblem {
  path: string;
  message: string;
}

export type PlanParse = { ok: true; plan: Plan } | { ok: false; problems: PlanProblem[] };

/** `steps[2].params.vfs` from zod's path array. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, part) => (typeof part === 'number' ? `${out}[${part}]` : out ? `${out}.${String(part)}` : String(part)), '') || '(root)';
}

export function problemsOf(error: z.ZodError): PlanProblem[] {
  return error.issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message }));
}

/** Parse and validate a plan file's text. Every problem is returned, each with its path. */
export function parsePlan(text: string): PlanParse {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return { ok: false, problems: doc.errors.map((e) => ({ path: `line ${e.linePos?.[0].line ?? '?'}`, message: e.message.split('\n')[0] ?? e.message })) };
  }
  const result = Plan.safeParse(doc.toJS());
  return result.success ? { ok: true, plan: result.data } : { ok: false, problems: problemsOf(result.error) };
}
