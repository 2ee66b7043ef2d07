import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parsePlan, planProblemText, type PlanParse } from '../../schemas/plan.js';
import { HOSTILE_STRINGS, fuzzOptions } from './fuzz-options.js';

const exampleText = readFileSync(new URL('../../examples/ovs-sriov.yaml', import.meta.url), 'utf8');
const example = parseYaml(exampleText) as Record<string, unknown>;

/** Every problem named by a path and a place in the file, with a reason a person can read. */
function expectClearRefusal(parsed: PlanParse, input: string): void {
  if (parsed.ok) return;
  expect(parsed.problems.length, input.slice(0, 200)).toBeGreaterThan(0);
  for (const p of parsed.problems) {
    expect(p.path, input.slice(0, 200)).toMatch(/\S/);
    expect(Number.isInteger(p.line) && p.line >= 1, `${p.path} line ${p.line}`).toBe(true);
    expect(Number.isInteger(p.column) && p.column >= 1, `${p.path} column ${p.column}`).toBe(true);
    expect(p.message, p.path).toMatch(/\S/);
    expect(p.message, p.path).not.toMatch(/\[object Object\]|^undefined$/);
    expect(planProblemText(p)).toContain(p.path);
  }
}

/** Values of every wrong kind: numbers no plan has, strings that attack, nesting, nothing. */
const nasty: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(...HOSTILE_STRINGS),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom(1e308, -1e308, 2 ** 53 + 1, -1, 0, 0.5, 1e-320, 99_999_999_999),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom(...HOSTILE_STRINGS.slice(0, 12), 'kind', 'params', 'timeout'), tie('value'), {
      maxKeys: 4,
    }),
  ),
})).value;

/** Every path into the example plan, each key and each index, to put a nasty value at. */
function pathsOf(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== 'object') return [prefix];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  return [prefix, ...entries.flatMap(([k, v]) => pathsOf(v, [...prefix, k]))];
}
const PATHS = pathsOf(example).filter((p) => p.length > 0);

function withValueAt(root: unknown, path: (string | number)[], value: unknown): unknown {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let at = copy;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, unknown>;
  at[path.at(-1) as string | number] = value;
  return copy;
}

/** A plan nested far deeper than any plan: arrays or maps, thousands of levels. */
const deep = fc
  .record({ depth: fc.integer({ min: 65, max: 20_000 }), map: fc.boolean() })
  .map(({ depth, map }) =>
    map ? '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) : '['.repeat(depth) + ']'.repeat(depth),
  );

/** YAML-level damage to the example's text: snippets that break it, at any offset. */
const damage = fc.constantFrom(
  '\nname: again\n', // a duplicate key
  '\napiVersion: refit/v1\n',
  '\t',
  ': : :',
  '[',
  '{',
  '&a [*a]',
  '*nowhere',
  '\n---\n',
  '\n  - kind: reboot\n',
  '\n  - kind: sriov-enable\n',
  '\nsteps: 7\n',
  '\nwaves: { canary: 1e400 }\n',
  '\nhostDuration: 99999999999d\n',
  '%YAML 9.9\n',
  '\u0000',
  '\x1b[2J',
  '\u202e',
  '!!binary',
  '- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -',
);

describe('the plan parser, fed a thousand malformed plans of each kind', () => {
  it('refuses a plan object with a wrong value anywhere, with a path, and never throws', () => {
    let refused = 0;
    fc.assert(
      fc.property(fc.nat({ max: PATHS.length - 1 }), nasty, (i, value) => {
        const text = JSON.stringify(withValueAt(example, PATHS[i] as (string | number)[], value)) ?? 'null';
        const parsed = parsePlan(text);
        expectClearRefusal(parsed, text);
        if (!parsed.ok) refused++;
      }),
      fuzzOptions(1_000),
    );
    // Some values happen to fit where they land (a description that is a string); most do not.
    expect(refused).toBeGreaterThan(fuzzOptions(1_000).numRuns * 0.8);
  });

  it('refuses a plan with keys added anywhere, in YAML, naming the key', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: PATHS.length - 1 }),
        fc.constantFrom(...HOSTILE_STRINGS.slice(1, 12), 'colour'),
        nasty,
        (i, key, value) => {
          const path = PATHS[i] as (string | number)[];
          const parent = path.slice(0, -1);
          const target = parent.reduce<unknown>((at, k) => (at as Record<string | number, unknown>)[k], example);
          if (target === null || typeof target !== 'object' || Array.isArray(target)) return;
          const text = toYaml(withValueAt(example, [...parent, key], value));
          const parsed = parsePlan(text);
          expect(parsed.ok, text.slice(0, 300)).toBe(false);
          expectClearRefusal(parsed, text);
        },
      ),
      fuzzOptions(1_000),
    );
  });

  it('refuses damaged YAML text with the line and column of the damage, and never throws', () => {
    let refused = 0;
    fc.assert(
      fc.property(
        fc.nat({ max: exampleText.length }),
        fc.array(damage, { minLength: 1, maxLength: 3 }),
        (offset, snippets) => {
          const text = exampleText.slice(0, offset) + snippets.join('') + exampleText.slice(offset);
          const parsed = parsePlan(text);
          expectClearRefusal(parsed, text);
          if (!parsed.ok) refused++;
        },
      ),
      fuzzOptions(1_000),
    );
    // Damage inside a comment, or a tab where YAML allows one, leaves a valid plan.
    expect(refused).toBeGreaterThan(fuzzOptions(1_000).numRuns * 0.8);
  });

  it('refuses a plan nested thousands of levels deep without running out of stack or memory', () => {
    fc.assert(
      fc.property(deep, (text) => {
        const parsed = parsePlan(text);
        expect(parsed.ok).toBe(false);
        expectClearRefusal(parsed, text);
      }),
      fuzzOptions(200),
    );
  });

  it('refuses arbitrary text and bytes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 400 }), (text) => {
        const parsed = parsePlan(text);
        expect(parsed.ok).toBe(false);
        expectClearRefusal(parsed, text);
      }),
      fuzzOptions(1_000),
    );
  });
});
