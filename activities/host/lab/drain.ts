import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { StepOutcome } from '../../../schemas/steps.js';
import { StepFailedError, throwIfAborted, type StepContext } from '../driver.js';
import { hostPaths } from './layout.js';
import { describeMove, locateVms, migrateVm } from './migrate.js';
import type { LabHost, LabState } from './state.js';
import { fitArrivedVmNics } from '../linux/vm-nics.js';
import { labVmNics } from './environment.js';

export const isCordoned = (host: LabHost) => existsSync(hostPaths(host).cordoned);

async function setCordon(host: LabHost, on: boolean): Promise<void> {
  const file = hostPaths(host).cordoned;
  if (on) {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, `${new Date().toISOString()}\n`);
  } else {
    await rm(file, { force: true });
  }
}

/** The controller's choice where given; otherwise the uncordoned host with the fewest VMs. */
function destinationFor(
  lab: LabState,
  host: LabHost,
  vm: string,
  wanted: Record<string, string>,
  load: Map<string, number>,
): string {
  const chosen = wanted[vm];
  if (chosen !== undefined) {
    if (chosen === host.id) throw new StepFailedError(`drain: the destination of ${vm} is the host being drained`);
    if (!lab.hosts.some((h) => h.id === chosen))
      throw new StepFailedError(`drain: destination ${chosen} of ${vm} is not a lab host`);
    return chosen;
  }
  const candidates = lab.hosts.filter((h) => h.id !== host.id && !isCordoned(h));
  const best = candidates.sort((a, b) => (load.get(a.id) ?? 0) - (load.get(b.id) ?? 0))[0];
  if (best === undefined) throw new StepFailedError(`drain: no uncordoned host to take ${vm}`);
  return best.id;
}

/** Live-migrate every VM off the host (lab migrations: traffic keeps flowing) and cordon it. */
export async function drainLabHost(
  lab: LabState,
  host: LabHost,
  destinations: Record<string, string>,
  ctx: StepContext,
): Promise<StepOutcome> {
  const where = await locateVms(lab);
  const here = lab.vms.filter((v) => where.get(v.name) === host.id).map((v) => v.name);
  const before = { vms: here, cordoned: isCordoned(host) };
  if (here.length === 0 && before.cordoned)
    return { changed: false, summary: 'already drained and cordoned', before, after: before };
  await setCordon(host, true);
  const load = new Map<string, number>();
  for (const h of where.values()) load.set(h, (load.get(h) ?? 0) + 1);
  const moves: string[] = [];
  for (const [i, vm] of here.entries()) {
    throwIfAborted(ctx.signal);
    const to = destinationFor(lab, host, vm, destinations, load);
    ctx.progress(Math.round((i / here.length) * 100), `live-migrating ${vm} to ${to}`);
    const move = await migrateVm(lab, vm, to);
    load.set(to, (load.get(to) ?? 0) + 1);
    const measured = describeMove(move);
    moves.push(`${vm}→${to}${measured ? ` (${measured})` : ''}`);
    if (measured) ctx.progress(Math.round(((i + 1) / here.length) * 100), `${vm} on ${to}: ${measured}`);
  }
  return {
    changed: true,
    summary: `migrated ${moves.length} VMs away${moves.length ? ` (${moves.join(', ')})` : ''}; host cordoned`,
    before,
    after: { vms: [], cordoned: true, moved: moves },
  };
}

/** Bring back the VMs whose home is this host, wherever they are, and uncordon it. */
export async function undrainLabHost(
  lab: LabState,
  host: LabHost,
  ctx: StepContext,
  stateDir?: string,
): Promise<StepOutcome> {
  const where = await locateVms(lab);
  const away = lab.vms.filter((v) => v.home === host.id && where.get(v.name) !== host.id);
  const before = {
    vms: lab.vms.filter((v) => where.get(v.name) === host.id).map((v) => v.name),
    cordoned: isCordoned(host),
  };
  if (away.length === 0 && !before.cordoned)
    return { changed: false, summary: 'not cordoned, no VMs away', before, after: before };
  const moves: string[] = [];
  for (const [i, vm] of away.entries()) {
    throwIfAborted(ctx.signal);
    ctx.progress(Math.round((i / away.length) * 100), `live-migrating ${vm.name} back`);
    const measured = describeMove(await migrateVm(lab, vm.name, host.id));
    moves.push(`${vm.name}${measured ? ` (${measured})` : ''}`);
  }
  // The hypervisor plugs an arriving tap in as an access port of the uplink's native VLAN; the VMs
  // get the tag ovs-convert gave this bridge's VMs (or their old values after its revert), as on a real host.
  const vmNics =
    stateDir === undefined
      ? undefined
      : await fitArrivedVmNics(
          labVmNics(lab, host),
          stateDir,
          away.map((v) => v.name),
          ctx,
        );
  await setCordon(host, false);
  const after = {
    vms: [...before.vms, ...away.map((v) => v.name)],
    cordoned: false,
    moved: moves,
    ...(vmNics ? { vmNics } : {}),
  };
  return {
    changed: true,
    summary: `migrated ${away.length} VMs back${moves.length ? ` (${moves.join(', ')})` : ''}${vmNics?.summary ? `; ${vmNics.summary}` : ''}; host uncordoned`,
    before,
    after,
  };
}
