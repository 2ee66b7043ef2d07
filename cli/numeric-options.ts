import { InvalidArgumentError } from 'commander';

/**
 * Argument parsers for numeric options (`.option('--limit <n>', 'at most this many', positiveInteger, 50)`):
 * a bad value is a usage error that commander reports with the option's name, before the command runs.
 * Only plain decimals count: not `1e3`, `0x10` or an empty string, which `Number` would take.
 */
function parsed(text: string, form: RegExp, ok: (n: number) => boolean, expected: string): number {
  const n = form.test(text) ? Number(text) : NaN;
  if (!ok(n)) throw new InvalidArgumentError(`Expected ${expected}.`);
  return n;
}

const WHOLE = /^\d+$/;
const DECIMAL = /^(\d+(\.\d*)?|\.\d+)$/;

export const positiveInteger = (text: string): number =>
  parsed(text, WHOLE, (n) => Number.isSafeInteger(n) && n > 0, 'a whole number above 0');

export const nonNegativeInteger = (text: string): number =>
  parsed(text, WHOLE, (n) => Number.isSafeInteger(n), 'a whole number, 0 or more');

export const positiveNumber = (text: string): number =>
  parsed(text, DECIMAL, (n) => Number.isFinite(n) && n > 0, 'a number above 0');

/** A parser for whole numbers from `min` to `max`, named as `what` (a port number, a VLAN tag). */
export function integerBetween(min: number, max: number, what: string): (text: string) => number {
  return (text) => parsed(text, WHOLE, (n) => n >= min && n <= max, `${what} (${min}-${max})`);
}
