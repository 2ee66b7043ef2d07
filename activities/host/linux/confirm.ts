import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Confirmation } from './host-env.js';
import { sha256 } from './observe.js';

export const confirmationFile = (stateDir: string, commandId: string) =>
  path.join(stateDir, 'confirmations', sha256(commandId));

/**
 * Confirmation by file: `<stateDir>/confirmations/<hash of the command id>` appears before the deadline.
 * The host worker writes it when the controller's confirmation message arrives (see docs/lab.md).
 */
export function fileConfirmation(stateDir: string, pollMs = 250): Confirmation {
  return async ({ commandId, deadline, signal }) => {
    const file = confirmationFile(stateDir, commandId);
    while (!signal.aborted) {
      if (existsSync(file)) return true;
      if (Date.now() >= deadline) return false;
      await sleep(pollMs, undefined, { signal }).catch(() => undefined);
    }
    return false;
  };
}

/** Record the controller's confirmation of a command, for fileConfirmation to find. */
export async function confirmCommand(stateDir: string, commandId: string): Promise<void> {
  const file = confirmationFile(stateDir, commandId);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${new Date().toISOString()}\n`);
}
