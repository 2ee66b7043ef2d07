/**
 * How many cases each property of the fuzz suite runs, and from which seed. `npm test` runs a fixed
 * seed and about a thousand cases per property; `npm run fuzz` sets REFIT_FUZZ_RUNS higher and a
 * fresh seed (printed by fast-check when a case fails, to replay it with REFIT_FUZZ_SEED).
 */
export function fuzzOptions(defaultRuns: number): { numRuns: number; seed: number } {
  const runs = Number(process.env.REFIT_FUZZ_RUNS ?? defaultRuns);
  const given = process.env.REFIT_FUZZ_SEED;
  const seed = given === undefined ? 20261130 : given === 'random' ? Date.now() % 2 ** 31 : Number(given);
  return { numRuns: Number.isInteger(runs) && runs > 0 ? runs : defaultRuns, seed };
}

/** Strings a hostile host, plan author or forger would send: controls, bidi, shell, huge, odd Unicode. */
export const HOSTILE_STRINGS = [
  '',
  ' ',
  '\x1b]0;pwned\x07',
  '\x1b[2J\x1b[H',
  'a\rb',
  '\x9b31m',
  '\u202eevil',
  '\u2066x\u2069',
  '\u0000',
  '\ud800',
  'eth0; rm -rf /',
  '$(reboot)',
  '`id`',
  '../../etc/passwd',
  'x'.repeat(70_000),
  '1e309',
  'NaN',
  '-0',
  '__proto__',
  'constructor',
  '{"a":',
  '🙂'.repeat(100),
];
