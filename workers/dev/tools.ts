import { accessSync, constants, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RefitError } from '../../schemas/errors.js';

export type ToolName = 'temporal' | 'nats-server';

export class ToolMissingError extends RefitError {}

const ENV_OVERRIDE: Record<ToolName, string> = {
  temporal: 'REFIT_TEMPORAL_BIN',
  'nats-server': 'REFIT_NATS_SERVER_BIN',
};

/** The cache where `npm run setup` puts the pinned tools (same rule as scripts/setup.sh). */
export function toolCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.REFIT_CACHE ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'refit');
}

/** Path of a server binary: env override, then the set-up cache, then PATH. */
export function findTool(name: ToolName, env: NodeJS.ProcessEnv = process.env): string {
  const override = env[ENV_OVERRIDE[name]];
  if (override !== undefined && override !== '') {
    if (!isExecutable(override))
      throw new ToolMissingError(`${ENV_OVERRIDE[name]}=${override} is not an executable file`);
    return override;
  }
  const cached = path.join(toolCacheDir(env), 'bin', name);
  if (isExecutable(cached)) return cached;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  throw new ToolMissingError(
    `${name} not found (looked at ${ENV_OVERRIDE[name]}, ${cached} and PATH): run \`npm run setup\` to install it`,
  );
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}
