import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { StepOutcome } from '../../../schemas/steps.js';
import { StepFailedError, throwIfAborted, type StepContext } from '../driver.js';
import type { CommandRunner } from './command.js';
import { readStateFile } from '../../files.js';
import { writeTextAtomic } from './host-env.js';
import { parseVirshList, virshListArgv, virshMigrateLiveArgv } from './virsh.js';

export interface LibvirtHost {
  run: CommandRunner;
  hostId: string;
  /** This host's libvirt, e.g. qemu:///system. */
  uri: string;
  /** A host's libvirt as seen from its peers, e.g. `qemu+ssh://<host>/system`. */
  uriOf: (hostId: string) => string;
  stateDir: string;
}

const Drained = z.record(z.string(), z.string());
const drainedFile = (h: LibvirtHost) => path.join(h.stateDir, 'drained-vms.json');
const cordonFile = (h: LibvirtHost) => path.join(h.stateDir, 'cordoned');

export const isCordoned = (h: LibvirtHost) => existsSync(cordonFile(h));

export async function runningDomains(h: LibvirtHost): Promise<string[]> {
  return parseVirshList((await h.run(virshListArgv(h.uri))).stdout)
    .filter((d) => d.state === 'running')
    .map((d) => d.name);
}

async function drained(h: LibvirtHost): Promise<Record<string, string>> {
  return (await readStateFile(drainedFile(h), Drained)) ?? {};
}

/** `virsh migrate --live` of every running domain to the host the controller chose for it, then cordon. */
export async function drainLibvirtHost(
  h: LibvirtHost,
  destinations: Record<string, string>,
  ctx: StepContext,
): Promise<StepOutcome> {
  const vms = await runningDomains(h);
  const before = { vms, cordoned: isCordoned(h) };
  if (vms.length === 0 && before.cordoned)
    return { changed: false, summary: 'already drained and cordoned', before, after: before };
  const missing = vms.filter((vm) => destinations[vm] === undefined);
  if (missing.length > 0)
    throw new StepFailedError(`drain: no destination for ${missing.join(', ')}; the controller must choose one per VM`);
  await writeFile(cordonFile(h), `${new Date().toISOString()}\n`);
  const away = await drained(h);
  for (const [i, vm] of vms.entries()) {
    throwIfAborted(ctx.signal);
    const to = destinations[vm] as string;
    ctx.progress(Math.round((i / vms.length) * 100), `virsh migrate --live ${vm} to ${to}`);
    await h.run(virshMigrateLiveArgv(h.uri, vm, h.uriOf(to)), { timeoutMs: 30 * 60_000 });
    away[vm] = to;
    await writeTextAtomic(drainedFile(h), JSON.stringify(away, null, 2) + '\n');
  }
  return {
    changed: true,
    summary: `migrated ${vms.length} VMs away; host cordoned`,
    before,
    after: { vms: [], cordoned: true, away },
  };
}

/** Bring each drained VM back from where it went (`virsh -c <there> migrate --live ... <here>`) and uncordon. */
export async function undrainLibvirtHost(h: LibvirtHost, ctx: StepContext): Promise<StepOutcome> {
  const away = await drained(h);
  const before = { away: { ...away }, cordoned: isCordoned(h) };
  if (Object.keys(away).length === 0 && !before.cordoned)
    return { changed: false, summary: 'not cordoned, no VMs away', before, after: before };
  for (const [vm, from] of Object.entries(away)) {
    throwIfAborted(ctx.signal);
    ctx.progress(50, `virsh migrate --live ${vm} back from ${from}`);
    await h.run(virshMigrateLiveArgv(h.uriOf(from), vm, h.uriOf(h.hostId)), { timeoutMs: 30 * 60_000 });
    delete away[vm];
    await writeTextAtomic(drainedFile(h), JSON.stringify(away, null, 2) + '\n');
  }
  await rm(cordonFile(h), { force: true });
  return {
    changed: true,
    summary: `migrated ${Object.keys(before.away).length} VMs back; host uncordoned`,
    before,
    after: { away: {}, cordoned: false },
  };
}
