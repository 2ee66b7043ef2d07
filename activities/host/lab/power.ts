import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { readJsonFile, writeFileAtomic, writeJsonAtomic } from '../../files.js';
import type { LabHost } from './state.js';

/**
 * A lab host's power button, as its agent sees it. When the lab runs the host's agent as a service
 * (lab/workers.ts plays systemd), a reboot is the supervisor's to do: it stops the agent, reboots
 * the host and starts the agent again from the unit's ExecStart. The agent asks for it here, as a
 * real host's agent runs `systemctl reboot` and is stopped by it. Without a supervisor (the driver
 * used directly, as the driver tests do) the driver reboots the host itself.
 */
export const LabSupervisor = z.object({
  pid: z.number().int().positive(),
  /** How ovs-convert is confirmed on this lab's hosts. */
  confirm: z.enum(['probe', 'controller']),
});
export type LabSupervisor = z.infer<typeof LabSupervisor>;

const powerDir = (host: LabHost) => path.join(host.root, 'power');
const supervisorFile = (host: LabHost) => path.join(powerDir(host), 'supervisor.json');
const rebootFile = (host: LabHost) => path.join(powerDir(host), 'reboot-requested');

export async function claimSupervision(host: LabHost, s: LabSupervisor): Promise<void> {
  await writeJsonAtomic(supervisorFile(host), s);
}

export async function releaseSupervision(host: LabHost): Promise<void> {
  await rm(powerDir(host), { recursive: true, force: true });
}

/** The supervisor of this host's agent, when one is running (a record left by a dead one does not count). */
export async function liveSupervisor(host: LabHost): Promise<LabSupervisor | undefined> {
  const record = await readJsonFile(supervisorFile(host), LabSupervisor).catch(() => undefined);
  if (record === undefined) return undefined;
  try {
    process.kill(record.pid, 0);
    return record;
  } catch {
    return undefined;
  }
}

/** Press the button: the supervisor reboots the host and restarts its agent. */
export async function requestReboot(host: LabHost): Promise<void> {
  await writeFileAtomic(rebootFile(host), `${new Date().toISOString()}\n`);
}

/** The supervisor's side: true once per press. */
export async function takeRebootRequest(host: LabHost): Promise<boolean> {
  if (!existsSync(rebootFile(host))) return false;
  await rm(rebootFile(host), { force: true });
  return true;
}
