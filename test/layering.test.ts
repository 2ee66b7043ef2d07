import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RULE = 'import-x/no-restricted-paths';
const eslint = new ESLint({ cwd: root, ruleFilter: ({ ruleId }) => ruleId === RULE });

/** The messages of the layering rule for `text`, linted as if it were the file at `file`. */
async function layeringProblems(file: string, text: string): Promise<string[]> {
  const [result] = await eslint.lintText(text, { filePath: path.join(root, file) });
  return (result?.messages ?? []).filter((m) => m.ruleId === RULE).map((m) => m.message);
}

describe('dependencies flow one way (schemas ← workflows ← activities ← workers ← lab ← cli)', () => {
  it.each([
    [
      'schemas/names.ts',
      "import { createLogger } from '../workers/log.js';\nexport const x = createLogger;\n",
      /schemas\/ sits below/,
    ],
    [
      'workflows/messages.ts',
      "import type { StepContext } from '../activities/host/driver.js';\nexport type X = StepContext;\n",
      /workflows\/ sits below/,
    ],
    [
      'activities/files.ts',
      "import { loadConfig } from '../workers/config.js';\nexport const x = loadConfig;\n",
      /activities\/ sits below/,
    ],
    ['workers/config.ts', "import { labUp } from '../lab/up.js';\nexport const x = labUp;\n", /workers\/ sits below/],
    [
      'lab/up.ts',
      "import { watchRollout } from '../cli/rollout.js';\nexport const x = watchRollout;\n",
      /lab\/ sits below/,
    ],
    [
      'test/rollout.test.ts',
      "import { watchRollout } from '../cli/rollout.js';\nexport const x = watchRollout;\n",
      /cli\/ is commands and rendering only/,
    ],
    [
      'bench/run.ts',
      "import { watchRollout } from '../cli/rollout.js';\nexport const x = watchRollout;\n",
      /cli\/ is commands and rendering only/,
    ],
    [
      'workers/config.ts',
      "import { x } from '../test/helpers/stack.js';\nexport const y = x;\n",
      /never imports bench\/, scripts\/ or test\//,
    ],
  ])('refuses an uphill import in %s', async (file, text, reason) => {
    const problems = await layeringProblems(file, text);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(reason);
  });

  it('accepts imports that flow down', async () => {
    const text = [
      "import { parsePlan } from '../schemas/plan.js';",
      "import { writeJsonAtomic } from '../activities/files.js';",
      "import { createLogger } from '../workers/log.js';",
      "import { labUp } from '../lab/up.js';",
      'export const x = [parsePlan, writeJsonAtomic, createLogger, labUp];',
      '',
    ].join('\n');
    expect(await layeringProblems('cli/probe.ts', text)).toEqual([]);
  });

  it('holds across the whole tree', async () => {
    const results = await eslint.lintFiles(['.']);
    const uphill = results.flatMap((r) =>
      r.messages
        .filter((m) => m.ruleId === RULE)
        .map((m) => `${path.relative(root, r.filePath)}:${m.line}: ${m.message}`),
    );
    expect(uphill).toEqual([]);
  });
});
