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

/** "90s", "10m", "1h30m" or a number of milliseconds. */
export function parseDuration(text: string): number | undefined {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) return undefined;
  return parts.reduce((sum, [, n, unit]) => sum + Number(n) * (UNITS[unit as string] ?? 0), 0);
}

/** A duration in the plan file; parsed to milliseconds. */
export const Duration = z.union([
  z.number().int().nonnegative(),
  z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration (use e.g. 30s, 10m, 1h30m)` });
      return z.NEVER;
    }
    return ms;
  }),
]);

export const IPv4 = z.ipv4();
/** A target of a traffic check: an IPv4 address, optionally with a TCP port. */
export const TrafficTarget = z.strictObject({
  address: IPv4,
  port: z.number().int().min(1).max(65535).optional(),
});
