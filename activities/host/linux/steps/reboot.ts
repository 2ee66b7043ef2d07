import path from 'node:path';
import { z } from 'zod';
import type { StepOutcome } from '../../../../schemas/steps.js';
import { readStateFile } from '../../../files.js';
import type { StepContext } from '../../driver.js';
import { readText, writeTextAtomic, type HostEnv } from '../host-env.js';

const PendingReboot = z.object({ commandId: z.string(), bootIdBefore: z.string(), at: z.string() });
const pendingFile = (env: HostEnv) => path.join(env.paths.stateDir, 'reboot-pending.json');

export async function readBootId(env: HostEnv): Promise<string> {
  return ((await readText(env.paths.bootId)) ?? 'unknown').trim();
}

/**
 * Record the boot id and that a reboot is owed; the reboot itself happens once this result is reported
 * (HostDriver.afterReported). A command that already rebooted the host (its boot id changed since) is done.
 */
export async function applyReboot(env: HostEnv, ctx: StepContext, commandId: string): Promise<StepOutcome> {
  const bootId = await readBootId(env);
  const pending = await readStateFile(pendingFile(env), PendingReboot);
  if (pending?.commandId === commandId) {
    const done = pending.bootIdBefore !== bootId;
    return {
      changed: false,
      summary: done ? `rebooted already (boot id ${pending.bootIdBefore} → ${bootId})` : 'reboot already scheduled',
      before: { bootId: pending.bootIdBefore },
      after: { bootId, rebootPending: !done },
      bootId: pending.bootIdBefore,
    };
  }
  await writeTextAtomic(
    pendingFile(env),
    JSON.stringify({ commandId, bootIdBefore: bootId, at: new Date().toISOString() }) + '\n',
  );
  ctx.progress(100, `rebooting (boot id ${bootId})`);
  return {
    changed: true,
    summary: `rebooting (boot id ${bootId})`,
    before: { bootId },
    after: { bootId, rebootPending: true },
    bootId,
  };
}

/** Is a reboot owed, i.e. recorded by this boot and not done yet? */
export async function rebootOwed(env: HostEnv): Promise<boolean> {
  const pending = await readStateFile(pendingFile(env), PendingReboot);
  return pending !== undefined && pending.bootIdBefore === (await readBootId(env));
}
