import { setTimeout as sleep } from 'node:timers/promises';
import type { StepOutcome, StepParams } from '../../../../schemas/steps.js';
import { StepFailedError, throwIfAborted, type StepContext } from '../../driver.js';
import { BondPlanError, planOvsBond, type OvsBondPlan } from '../bond-plan.js';
import { CommandFailedError, type CommandRunner } from '../command.js';
import { backupFile, backupPath, readText, writeTextAtomic, type HostEnv } from '../host-env.js';
import { detectIfupdown, ifupAs, type IfupdownFlavour } from '../ifupdown.js';
import { ipLinksArgv, parseIpLinks } from '../ip.js';
import { ifName, type IfName } from '../names.js';
import { lineDiff, sha256 } from '../observe.js';
import {
  bondProblems,
  ovsBondShowArgv,
  ovsLacpShowArgv,
  parseBondShow,
  parseLacpShow,
  type LacpShow,
  type OvsBondShow,
} from '../ovs-appctl.js';

type Params = StepParams<'ovs-bond'>;
const BACKUP_LABEL = 'before-ovs-bond';
const POLL_MS = 500;

/** The bond as it runs: an OVS bond (from ovs-appctl), a Linux bond (from ip -d -j link), or neither. */
export type BondObservation =
  | { type: 'ovs'; bond: OvsBondShow; lacp: LacpShow | undefined }
  | { type: 'linux'; members: string[] }
  | { type: 'none' };

export async function observeBond(run: CommandRunner, bond: IfName): Promise<BondObservation> {
  const links = parseIpLinks((await run(ipLinksArgv())).stdout);
  if (links.some((l) => l.name === bond && l.kind === 'bond'))
    return { type: 'linux', members: links.filter((l) => l.master === bond).map((l) => l.name) };
  try {
    const shown = parseBondShow((await run(ovsBondShowArgv(bond), { timeoutMs: 15_000 })).stdout);
    const lacp =
      shown.lacpStatus === 'off'
        ? undefined
        : parseLacpShow((await run(ovsLacpShowArgv(bond), { timeoutMs: 15_000 })).stdout);
    return { type: 'ovs', bond: shown, lacp };
  } catch (err) {
    if (err instanceof CommandFailedError) return { type: 'none' };
    throw err;
  }
}

/** For the audit trail: what bond/show and lacp/show said, without the counters. */
const summary = (o: BondObservation) =>
  o.type === 'ovs'
    ? {
        type: 'ovs',
        mode: o.bond.mode,
        lacpStatus: o.bond.lacpStatus,
        members: Object.fromEntries(o.bond.members.map((m) => [m.name, m.enabled ? 'enabled' : 'disabled'])),
        ...(o.lacp !== undefined
          ? {
              lacp: {
                status: o.lacp.status,
                members: Object.fromEntries(o.lacp.members.map((m) => [m.name, m.status])),
              },
            }
          : {}),
      }
    : o;

const problemsOf = (o: BondObservation, planned: OvsBondPlan) =>
  o.type !== 'ovs'
    ? [o.type === 'linux' ? 'it is still a Linux bond' : 'Open vSwitch has no such bond']
    : bondProblems(o.bond, o.lacp, {
        mode: planned.settings.mode,
        lacp: planned.settings.lacp !== 'off',
        members: planned.members,
      });

/** Poll the bond until it is as planned (every member enabled, LACP negotiated where asked) or the time is up. */
async function settle(
  env: HostEnv,
  bond: IfName,
  planned: OvsBondPlan,
  withinMs: number,
  signal: AbortSignal,
): Promise<{ observed: BondObservation; problems: string[] }> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const observed = await observeBond(env.run, bond);
    const problems = problemsOf(observed, planned);
    if (problems.length === 0 || Date.now() >= deadline) return { observed, problems };
    throwIfAborted(signal);
    await sleep(POLL_MS);
  }
}

const flavourOf = (env: HostEnv) => detectIfupdown(env.paths.ifupdown2);

/** Take the bond down as `definedIn` (default the file) defines it; a bond that is not up is no error. */
const ifdownBond = (run: CommandRunner, bond: IfName, definedIn?: string) =>
  run(['ifdown', '--force', ...(definedIn !== undefined ? ['-i', definedIn] : []), bond], { timeoutMs: 60_000 });
/** Put `text` in place of the file and bring the bond up from it; `definedIn` is the file the bond is up from now. */
async function switchBond(env: HostEnv, bond: IfName, text: string, ctx: StepContext, definedIn?: string) {
  await ifdownBond(env.run, bond, definedIn).catch((err: unknown) =>
    ctx.log.warn({ err: String(err) }, `ifdown ${bond} failed; going on`),
  );
  await writeTextAtomic(env.paths.interfaces, text);
  // Classic ifupdown brings the one bond up (its OVS hook adds the bond and ups the members); ifupdown2 applies the file.
  await ifupAs(env.run, bond, flavourOf(env));
}

function plan(text: string, params: Params, flavour: IfupdownFlavour): OvsBondPlan {
  try {
    return planOvsBond(text, { ...params, ifupdown: flavour });
  } catch (err) {
    if (err instanceof BondPlanError) throw new StepFailedError(`ovs-bond: ${err.message}`, { cause: err });
    throw err;
  }
}

/**
 * A Linux bond under the OVS bridge → an OVSBond (or an OVSBond → the asked settings): back up
 * /etc/network/interfaces, write the OVSBond stanza, take the old bond down and bring the new one up
 * the way the host's ifupdown does, then wait until bond/show has every member enabled and lacp/show
 * has LACP negotiated where asked. A bond that does not get there within `settleWithin` is put back
 * as the old file had it, and the step fails naming what was wrong.
 */
export async function applyOvsBond(env: HostEnv, params: Params, ctx: StepContext): Promise<StepOutcome> {
  const bond = ifName(params.bond, 'bond');
  const original = (await readText(env.paths.interfaces)) ?? '';
  const flavour = flavourOf(env);
  const planned = plan(original, params, flavour);
  const running = await observeBond(env.run, bond);
  const before = { bond: summary(running), interfacesSha256: sha256(original) };
  if (!planned.changed && problemsOf(running, planned).length === 0) {
    ctx.progress(100, `${bond} is already an OVS bond as asked`);
    return { changed: false, summary: planned.summary, before, after: before };
  }
  throwIfAborted(ctx.signal);
  if (planned.changed) await backupFile(env, env.paths.interfaces, original, BACKUP_LABEL);
  ctx.progress(30, `switching ${bond} to an OVS bond`);
  try {
    await switchBond(env, bond, planned.text, ctx);
  } catch (err) {
    // ifup/ifreload's exit status counts: the old file goes back, and the step fails naming what failed.
    if (!(err instanceof CommandFailedError)) throw err;
    if (planned.changed)
      await switchBond(env, bond, original, ctx).catch((again: unknown) =>
        ctx.log.warn({ err: String(again) }, `bringing ${bond} up from the old file failed too`),
      );
    throw new StepFailedError(
      `ovs-bond: bringing ${bond} up failed (${err.message})${planned.changed ? '; the old /etc/network/interfaces is back' : ''}`,
      { cause: err },
    );
  }
  ctx.progress(60, `waiting up to ${Math.round(params.settleWithin / 1000)}s for ${bond}'s members and LACP`);
  const { observed, problems } = await settle(env, bond, planned, params.settleWithin, ctx.signal);
  if (problems.length > 0) {
    if (planned.changed) {
      ctx.log.warn({ bond, problems }, 'the OVS bond did not come up as asked; putting the old file back');
      await switchBond(env, bond, original, ctx);
    }
    throw new StepFailedError(
      `ovs-bond: ${bond} did not come up as asked within ${Math.round(params.settleWithin / 1000)}s: ${problems.join('; ')}${planned.changed ? '; the old /etc/network/interfaces is back' : ''}`,
    );
  }
  ctx.progress(100, `${bond} is an OVS bond, every member enabled`);
  return {
    changed: true,
    summary: planned.changed ? planned.summary : `${bond} brought up from the file as it was (${planned.summary})`,
    before,
    after: {
      bond: summary(observed),
      interfacesSha256: sha256(planned.text),
      ifupdown: flavour === 2 ? 'ifupdown2' : 'ifupdown',
      interfacesDiff: lineDiff(original, planned.text),
      ...(planned.changed ? { backup: backupPath(env, env.paths.interfaces, BACKUP_LABEL) } : {}),
    },
  };
}

/** The file as it was before ovs-bond (its backup), and the bond brought up from it again. */
export async function revertOvsBond(env: HostEnv, params: Params, ctx: StepContext): Promise<StepOutcome> {
  const bond = ifName(params.bond, 'bond');
  const current = (await readText(env.paths.interfaces)) ?? '';
  const running = await observeBond(env.run, bond);
  const before = { bond: summary(running), interfacesSha256: sha256(current) };
  const backup = await readText(backupPath(env, env.paths.interfaces, BACKUP_LABEL));
  if (backup === undefined)
    throw new StepFailedError(
      `ovs-bond revert: no backup of /etc/network/interfaces from before ovs-bond (${backupPath(env, env.paths.interfaces, BACKUP_LABEL)}); ${bond} stays as it is`,
    );
  if (backup === current)
    return { changed: false, summary: `${bond} is already as the file before ovs-bond had it`, before, after: before };
  ctx.progress(30, `putting ${bond} back as it was before ovs-bond`);
  await switchBond(env, bond, backup, ctx);
  const after = await observeBond(env.run, bond);
  return {
    changed: true,
    summary: `${bond} is back as before ovs-bond (interfaces file restored from the backup)`,
    before,
    after: { bond: summary(after), interfacesSha256: sha256(backup), interfacesDiff: lineDiff(current, backup) },
  };
}
