import { readFileSync } from 'node:fs';

/**
 * The agent's version, package.json's. A bundle (npm run package) that has no package.json beside it
 * sets REFIT_AGENT_VERSION at build time (a define) or in its environment.
 */
export const AGENT_VERSION = process.env.REFIT_AGENT_VERSION ?? packageVersion();

function packageVersion(): string {
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'refit' && pkg.version) return pkg.version;
    } catch {
      // not at this level: source and compiled layouts differ by one directory
    }
  }
  return 'unknown';
}
