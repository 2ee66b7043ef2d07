import { rm } from 'node:fs/promises';
import { readText, type HostEnv } from './host-env.js';
import { parseSriovRules, type SriovBootConfig } from './sriov.js';

/** The VF configuration refit persisted: its rules, or those an older refit wrote (matched by name). */
export async function readPersistedVfs(env: HostEnv): Promise<SriovBootConfig | undefined> {
  const rules = await readText(env.paths.sriovRules);
  if (rules !== undefined) return parseSriovRules(rules);
  return env.paths.legacySriovRules === undefined
    ? undefined
    : parseSriovRules((await readText(env.paths.legacySriovRules)) ?? '');
}

/** Remove the rules an older refit wrote, matched by name; true if there were any. */
export async function removeLegacyRules(env: HostEnv): Promise<boolean> {
  const legacy = env.paths.legacySriovRules;
  if (legacy === undefined || (await readText(legacy)) === undefined) return false;
  await rm(legacy, { force: true });
  return true;
}
