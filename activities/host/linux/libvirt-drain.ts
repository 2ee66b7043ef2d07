import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { NonMigratable, StepOutcome } from '../../../schemas/steps.js';
import { StepFailedError, throwIfAborted, type StepContext } from '../driver.js';
import type { CommandRunner } from './command.js';
import { readStateFile } from '../../files.js';
import { writeTextAtomic } from './host-env.js';
import { parseDomainXml, parseVirshList, virshDumpxmlArgv, virshListArgv, virshMigrateLiveArgv } from './virsh.js';
import type { VmFacts } from '../../../schemas/host.js';
import { fitArrivedVmNics, libvirtVmNics } from './vm-nics.js';

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

/** The running domains with their memory and passed-through devices (`virsh dumpxml` of each). */
export async function runningDomainFacts(h: LibvirtHost): Promise<VmFacts[]> {
  const names = await runningDomains(h);
  const vms: VmFacts[] = [];
  for (const name of names) {
    // A domain whose XML cannot be read (gone meanwhile, an odd libvirt) is reported without size or devices.
    const xml = await h
      .run(virshDumpxmlArgv(h.uri, name))
      .then((r) => parseDomainXml(r.stdout))
      .catch(() => undefined);
    vms.push({
      name,
      state: 'running',
      sriov: (xml?.passthrough.length ?? 0) > 0,
      ...(xml?.memoryBytes !== undefined ? { memoryBytes: xml.memoryBytes } : {}),
      ...(xml !== undefined && xml.passthrough.length > 0 ? { passthrough: xml.passthrough } : {}),
    });
  }
  return vms;
}

async function drained(h: LibvirtHost): Promise<Record<string, string>> {
  return (await readStateFile(drainedFile(h), Drained)) ?? {};
}

const Left = z.array(z.string());
const leftFile = (h: LibvirtHost) => path.join(h.stateDir, 'left-vms.json');

/**
 * `virsh migrate --live` of every running domain to the host the controller chose for it, then cordon.
 * Domains with passed-through devices (`<hostdev>`) as `nonMigratable` says: refuse fails naming them,
 * skip leaves them running (the host is not drained), shutdown is done on Proxmox nodes only.
 */
export async function drainLibvirtHost(
  h: LibvirtHost,
  destinations: Record<string, string>,
  ctx: StepContext,
  nonMigratable: NonMigratable = 'refuse',
): Promise<StepOutcome> {
  const all = await runningDomainFacts(h);
  const vms = all.map((d) => d.name);
  const before = { vms, cordoned: isCordoned(h) };
  if (vms.length === 0 && before.cordoned)
    return { changed: false, summary: 'already drained and cordoned', before, after: before };
  const pinned = all.filter((d) => d.sriov).map((d) => `${d.name} (${(d.passthrough ?? []).join(', ')})`);
  if (pinned.length > 0 && nonMigratable !== 'skip')
    throw new StepFailedError(
      nonMigratable === 'refuse'
        ? `drain: VMs with passed-through devices cannot be live-migrated: ${pinned.join(', ')} (nonMigratable: refuse)`
        : `drain: nonMigratable: shutdown is done on Proxmox nodes only; this libvirt host has ${pinned.join(', ')}`,
    );
  const left = all.filter((d) => d.sriov).map((d) => d.name);
  const moving = vms.filter((vm) => !left.includes(vm));
  const missing = moving.filter((vm) => destinations[vm] === undefined);
  if (missing.length > 0)
    throw new StepFailedError(`drain: no destination for ${missing.join(', ')}; the controller must choose one per VM`);
  await writeFile(cordonFile(h), `${new Date().toISOString()}\n`);
  await writeTextAtomic(leftFile(h), JSON.stringify(left) + '\n');
  const away = await drained(h);
  for (const [i, vm] of moving.entries()) {
    throwIfAborted(ctx.signal);
    const to = destinations[vm] as string;
    ctx.progress(Math.round((i / moving.length) * 100), `virsh migrate --live ${vm} to ${to}`);
    await h.run(virshMigrateLiveArgv(h.uri, vm, h.uriOf(to)), { timeoutMs: 30 * 60_000 });
    away[vm] = to;
    await writeTextAtomic(drainedFile(h), JSON.stringify(away, null, 2) + '\n');
  }
  return {
    changed: true,
    summary:
      `migrated ${moving.length} VMs away; ` +
      (left.length > 0 ? `host NOT drained: left ${pinned.join(', ')} running here (nonMigratable: skip); ` : '') +
      'host cordoned',
    before,
    after: { vms: left, cordoned: true, away, left },
  };
}

/** Why a step that needs a drained host must not run: a drain under skip left VMs that still run here. */
export async function libvirtNotDrained(h: LibvirtHost): Promise<string | undefined> {
  const left = (await readStateFile(leftFile(h), Left)) ?? [];
  if (left.length === 0) return undefined;
  const here = new Set(await runningDomains(h));
  const still = left.filter((vm) => here.has(vm));
  return still.length === 0
    ? undefined
    : `this host is not drained: the drain left ${still.join(', ')} running here (nonMigratable: skip)`;
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
  // A migrated domain keeps its interface XML: its NICs get the tag of the bridge here.
  const vmNics = await fitArrivedVmNics(
    libvirtVmNics(h.run, h.uri, h.stateDir),
    h.stateDir,
    Object.keys(before.away),
    ctx,
  );
  await rm(cordonFile(h), { force: true });
  await rm(leftFile(h), { force: true });
  return {
    changed: true,
    summary: `migrated ${Object.keys(before.away).length} VMs back${vmNics?.summary ? `; ${vmNics.summary}` : ''}; host uncordoned`,
    before,
    after: { away: {}, cordoned: false, ...(vmNics ? { vmNics } : {}) },
  };
}
