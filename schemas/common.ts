import { z } from 'zod';

/** A host id is used in NATS subjects, consumer names and file names: keep it to a DNS label. */
export const HostId = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a DNS label: a-z, 0-9 and "-", at most 63 characters');
export type HostId = z.infer<typeof HostId>;

/** Linux interface name: at most 15 bytes (IFNAMSIZ - 1), no "/", whitespace, ":" or leading "-". */
export const InterfaceName = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/, 'must be a Linux interface name (1-15 of A-Z a-z 0-9 _ . -)');
export type InterfaceName = z.infer<typeof InterfaceName>;

export const VmName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be a VM name (A-Z a-z 0-9 _ . -)');

export const LabelKey = z.string().regex(/^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/, 'must be a label key');
export const LabelValue = z.string().regex(/^[A-Za-z0-9._-]{0,63}$/, 'must be a label value');
export const Labels = z.record(LabelKey, LabelValue);
export type Labels = z.infer<typeof Labels>;

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(\.\d+)?(ms|s|m|h|d))+$/;
const UNIT_LIST = '(units: ms, s, m, h, d)';
const DURATION_HELP = `a number with a unit, e.g. 30s, 10m, 1h30m or 1d ${UNIT_LIST}`;

function millisOf(text: string): number {
  return [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)].reduce(
    (sum, [, n, unit]) => sum + Number(n) * (UNITS[unit as string] ?? 0),
    0,
  );
}

/** "90s", "10m", "1h30m", "1d" in milliseconds; undefined for anything else, a bare number included. */
export function parseDuration(text: string): number | undefined {
  return DURATION.test(text) ? millisOf(text) : undefined;
}

/** Why `input` is not a duration with a unit, in an operator's words. */
export function notADuration(input: unknown): string {
  if (typeof input === 'number') return `a duration needs a unit: ${input}s, 10m, 1h30m or 1d ${UNIT_LIST}`;
  if (typeof input === 'string') return `${JSON.stringify(input)} is not a duration: write ${DURATION_HELP}`;
  return `must be a duration: ${DURATION_HELP}`;
}

/** No duration refit takes is longer than a year: beyond, a number is a typo (or an attack on a timer). */
export const MAX_DURATION_MS = 366 * 86_400_000;

/** `90000` ms as an operator writes it: `1m30s`; `1d`; `250ms`. */
export function formatDuration(ms: number): string {
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
    ['ms', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.join('') || '0s';
}

/**
 * A duration in a plan file, always with a unit ("90s", "10m", "1h30m"); parsed to milliseconds.
 * A bare number is refused: `timeout: 600` would otherwise be read in some unit the author did not mean.
 */
export const Duration = z
  .string({ error: (issue) => (issue.input === undefined ? undefined : notADuration(issue.input)) })
  .regex(DURATION, { error: (issue) => notADuration(issue.input) })
  .meta({ description: `A duration: ${DURATION_HELP}.`, examples: ['30s', '10m', '1h30m'] })
  .transform(millisOf)
  .refine((ms) => ms <= MAX_DURATION_MS, { message: `must be at most ${MAX_DURATION_MS / 86_400_000}d`, abort: true });

/** A `Duration` (with a unit, in milliseconds after parsing) from `min` to `max` milliseconds, both included. */
export function durationWithin(min: number, max: number) {
  return Duration.refine((ms) => ms >= min, { message: `must be at least ${formatDuration(min)}`, abort: true }).refine(
    (ms) => ms <= max,
    `must be at most ${formatDuration(max)}`,
  );
}

/**
 * A duration one refit process hands another (a step command's params): milliseconds, as a loaded
 * plan holds them, or text with a unit.
 */
export const Millis = z.union([z.number().int().nonnegative().max(MAX_DURATION_MS), Duration]);

/** `Millis` from `min` to `max` milliseconds, both included: what a host takes in a step command. */
export function millisWithin(min: number, max: number) {
  return Millis.refine((ms) => ms >= min, { message: `must be at least ${formatDuration(min)}`, abort: true }).refine(
    (ms) => ms <= max,
    `must be at most ${formatDuration(max)}`,
  );
}

export const IPv4 = z.ipv4();
/** A target of a traffic check: an IPv4 address, optionally with a TCP port. */
export const TrafficTarget = z.strictObject({
  address: IPv4,
  port: z.number().int().min(1).max(65535).optional(),
});
