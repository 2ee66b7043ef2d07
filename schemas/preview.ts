import { z } from 'zod';
import { HostId } from './common.js';
import { StepKind } from './steps.js';

/**
 * A dry run of a plan's steps on one host, sent by the CLI (or the controller) on the core subject
 * `refit.preview.<hostId>` as a NATS request. The host reads its real files, asks its driver what
 * each step would change, changes nothing, audits it as a dry run and replies with a PreviewReply.
 * Each step's params are checked by the host against its kind, as for a real step.
 */
export const PreviewRequest = z.strictObject({
  requestId: z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, 'must be 1-100 of A-Z a-z 0-9 _ . -'),
  hostId: HostId,
  /** The plan's name, for the audit trail. */
  plan: z.string().min(1).max(100),
  /** Who asked (user@host of the CLI), for the audit trail. */
  requestedBy: z.string().min(1).max(200),
  steps: z
    .array(z.strictObject({ kind: StepKind, params: z.record(z.string(), z.unknown()) }))
    .min(1)
    .max(50),
});
export type PreviewRequest = z.output<typeof PreviewRequest>;

/** The longest diff a host sends for one file; past it the diff is cut and says so. */
export const MAX_DIFF_LINES = 400;

/** One file a step would change, as a unified-style line diff (`-`, `+`, ` `, `@@`). */
export const FilePreview = z.object({
  path: z.string(),
  changed: z.boolean(),
  diff: z.array(z.string()).max(MAX_DIFF_LINES + 1),
});
export type FilePreview = z.infer<typeof FilePreview>;

export const StepPreview = z.object({
  index: z.number().int().nonnegative(),
  kind: StepKind,
  /** What the step would do, in a line. */
  summary: z.string(),
  files: z.array(FilePreview),
  /** Other state the step would change, e.g. the kernel command line: before → after. */
  changes: z.array(z.object({ what: z.string(), before: z.string(), after: z.string() })).default([]),
  /** The step would fail here (no such bridge, too few VFs, ...). */
  error: z.string().optional(),
});
export type StepPreview = z.infer<typeof StepPreview>;

export const PreviewReply = z.object({
  requestId: z.string(),
  hostId: HostId,
  driver: z.string(),
  /** Nothing on this host is real (sim driver): what it says is the simulation's model. */
  simulated: z.boolean(),
  steps: z.array(StepPreview),
  /** The request could not be previewed at all (invalid, or the driver cannot preview). */
  error: z.string().optional(),
});
export type PreviewReply = z.infer<typeof PreviewReply>;
