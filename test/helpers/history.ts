import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import type { RefitConfig } from '../../workers/config.js';
import { findTool } from '../../workers/dev/tools.js';

/**
 * With REFIT_RECORD_HISTORIES=<dir>, write the rollout's history there as `<name>.json`, the way
 * test/fixtures/histories were recorded (`temporal workflow show --output json`), the run `runId`
 * or the latest; otherwise nothing.
 */
export async function recordHistory(
  config: RefitConfig,
  workflowId: string,
  name: string,
  runId?: string,
): Promise<void> {
  const dir = process.env.REFIT_RECORD_HISTORIES;
  if (dir === undefined || dir === '') return;
  mkdirSync(dir, { recursive: true });
  const args = ['workflow', 'show', '--address', config.temporalAddress, '--workflow-id', workflowId];
  if (runId !== undefined) args.push('--run-id', runId);
  await execa(findTool('temporal'), [...args, '--output', 'json'], {
    stdout: { file: path.join(dir, `${name}.json`) },
  });
}
