#!/usr/bin/env node
import { UsageError } from '../../schemas/errors.js';
import { agentMain } from './agent-cli.js';

/**
 * The host agent's entry point (`refit-host`): host-side code only, bundled into one file by
 * `npm run package`. No top-level await and no import.meta here, so that it bundles to either ESM or
 * CommonJS. Usage errors exit 2, everything else 1.
 */
agentMain(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    process.stderr.write(`refit-host: ${err.message}\n`);
    if (err.exitCode === 2) process.stderr.write('(refit-host --help shows the usage)\n');
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`refit-host: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
});
