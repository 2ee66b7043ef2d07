import type { z } from 'zod';
import { UsageError } from './errors.js';

/** One thing wrong with an input, named by where it is. */
export interface Problem {
  path: string;
  message: string;
}

/** `steps[2].params.vfs` from zod's path array; `root` when the input itself is wrong. */
export function formatPath(path: readonly PropertyKey[], root = '(root)'): string {
  return (
    path.reduce<string>(
      (out, part) => (typeof part === 'number' ? `${out}[${part}]` : out ? `${out}.${String(part)}` : String(part)),
      '',
    ) || root
  );
}

/** Every issue of a failed parse, each with its path. */
export function problemsOf(error: z.ZodError, root = '(root)'): Problem[] {
  return error.issues.map((issue) => ({ path: formatPath(issue.path, root), message: issue.message }));
}

/** The issues of a failed parse on one line, for an error message or a log: `a.b: reason; c: reason`. */
export function problemText(error: z.ZodError, root = '(root)'): string {
  return problemsOf(error, root)
    .map((p) => `${p.path}: ${p.message}`)
    .join('; ');
}

/**
 * A command-line or environment setting parsed by `schema`; a bad value is a UsageError naming where
 * it came from (`from`: the flag or variable) and why.
 */
export function checkedSetting<T extends z.ZodType>(schema: T, value: string, from: string): z.output<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new UsageError(`${from} "${value}": ${problemText(parsed.error, from)}`);
  return parsed.data;
}
