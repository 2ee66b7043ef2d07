import { writeFile } from 'node:fs/promises';
import { planJsonSchema } from '../schemas/plan.js';

// Run by `npm run plan-schema` from the repository root; schemas/plan.test.ts fails when the file is stale.
await writeFile('schemas/plan.schema.json', `${JSON.stringify(planJsonSchema(), null, 2)}\n`);
