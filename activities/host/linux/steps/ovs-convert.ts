import type { StepParams, StepOutcome } from '../../../../schemas/steps.js';
import { StepFailedError, throwIfAborted, type StepContext } from '../../driver.js';
import type { CommandRunner } from '../command.js';
import { backupFile, backupPath, readText, writeTextAtomic, type HostEnv } from '../host-env.js';
import { detectIfupdown, ifupAs, type IfupdownFlavour } from '../ifupdown.js';
import { linuxBondIn } from '../bond-plan.js';
import { ifaceStanzas, optionValue, parseInterfaces } from '../interfaces-file.js';
import { ifName, type IfName } from '../names.js';
import { lineDiff, observeBridge, sha256, type BridgeObservation } from '../observe.js';
import { InterfacesPlanError, planLinuxBridgeRestore, planOvsConversion, type InterfacesPlan } from '../ovs-plan.js';
import { clearPendingConfirmation, readEarlierConfirmation, recordPendingConfirmation } from '../confirm.js';
import { recordBaselines } from './verify.js';
import { tagVmNics, untagVmNics, vmNicSummary, type VmNicReport } from '../vm-nics.js';

type Params = StepParams<'ovs-convert'>;
const BACKUP_LABEL = 'before-ovs-convert';

/**
 * Take the bridge down as the file (or `definedIn`) defines it; both ifupdowns take an OVS bridge's ports
 * down with it (classic through the OVS hook and `allow-<bridge>`, ifupdown2 through `ovs_ports`).
 */
const ifdown = (run: CommandRunner, bridge: IfName, definedIn?: string) =>
  run(['ifdown', '--force', ...(definedIn !== undefined ? ['-i', definedIn] : []), bridge], { timeoutMs: 60_000 });
const flavourOf = (env: HostEnv) => detectIfupdown(env.paths.ifupdown2);

function plan(env: HostEnv, text: string, params: Params, flavour: IfupdownFlavour): InterfacesPlan {
  try {
    return planOvsConversion(text, {
      bridge: params.bridge,
      uplink: params.uplink,
      hostVlan: params.hostVlan,
      datapathType: env.datapathType,
      ifupdown: flavour,
    });
  } catch (err) {
    if (err instanceof InterfacesPlanError) throw new StepFailedError(`ovs-convert: ${err.message}`, { cause: err });
    throw err;
  }
}

const state = (file: string, running: BridgeObservation) => ({
  bridge: { name: running.name, type: running.type, ports: running.ports, addresses: running.addresses },
  interfacesSha256: sha256(file),
});

/**
 * Linux bridge → Open vSwitch: observe, plan, back up /etc/network/interfaces, record the confirmation
 * deadline in the state dir, write the OVS stanzas, switch the running bridge over with ifdown/ifup,
 * then wait for the controller's confirmation. Without it by the deadline, the host puts the old file
 * and the Linux bridge back by itself and fails the step. The record outlives the worker: a start after
 * a restart that finds it waits for a fresh confirmation until the same deadline, or reverts at once
 * when it has passed (or the record is unreadable); only a confirmation clears it.
 */
export async function applyOvsConvert(
  env: HostEnv,
  params: Params,
  ctx: StepContext,
  rolloutId: string,
): Promise<StepOutcome> {
  const bridge = ifName(params.bridge, 'bridge');
  const original = (await readText(env.paths.interfaces)) ?? '';
  const flavour = flavourOf(env);
  const planned = plan(env, original, params, flavour);
  const running = await observeBridge(env, bridge);
  const before = state(original, running);
  const onOvs = !planned.changed && running.type === 'ovs';
  const earlier = await readEarlierConfirmation(env.paths.stateDir, bridge, Date.now());
  if (earlier.kind === 'none' && onOvs) {
    // A run that stopped between the switch and the VMs' tags finishes the tags.
    const vmNics = await tagVms(env, bridge, params, ctx);
    ctx.progress(100, `${bridge} is already Open vSwitch`);
    const tagged = vmNics !== undefined && vmNics.changed.length > 0;
    return {
      changed: tagged,
      summary: `${bridge} is already an Open vSwitch bridge (file and running system)${vmNics ? `; ${vmNicSummary(vmNics, vmVlanOf(params)) || 'no VM NICs on it'}` : ''}`,
      before: {
        ...before,
        ...(vmNics ? { vmNics: vmNics.changed.map(({ vm, nic, before: b }) => ({ vm, nic, value: b })) } : {}),
      },
      after: { ...before, ...(vmNics ? { vmNics: vmNics } : {}) },
    };
  }
  // A re-run after a crash finds the file converted already: the backup it wrote then is the original.
  const restoreText = planned.changed
    ? original
    : ((await readText(backupPath(env, env.paths.interfaces, BACKUP_LABEL))) ?? original);
  if (earlier.kind === 'revert') {
    ctx.log.warn(
      { bridge, reason: earlier.reason },
      'an earlier switch was never confirmed; restoring the Linux bridge',
    );
    await revertUnconfirmed(env, bridge, restoreText, ctx, earlier.reason);
    throw new StepFailedError(
      `ovs-convert: ${earlier.reason}; the host restored its Linux bridge and the old /etc/network/interfaces`,
    );
  }
  let deadline: number;
  if (earlier.kind === 'waiting' && onOvs) {
    deadline = earlier.deadline;
    ctx.log.warn({ bridge, deadline: earlier.record.deadline }, 'resuming an unconfirmed switch to Open vSwitch');
  } else {
    throwIfAborted(ctx.signal);
    if (earlier.kind === 'none') {
      ctx.progress(10, 'measuring a traffic baseline before the change');
      await recordBaselines(env, original, params.baselineTargets ?? [], rolloutId, ctx);
    }
    if (planned.changed) await backupFile(env, env.paths.interfaces, original, BACKUP_LABEL);
    throwIfAborted(ctx.signal);
    if (earlier.kind === 'waiting') deadline = earlier.deadline;
    else {
      const switchStarted = Date.now();
      deadline = switchStarted + params.confirmWithin;
      await recordPendingConfirmation(env.paths.stateDir, {
        bridge,
        deadline: new Date(deadline).toISOString(),
        confirmWithinMs: params.confirmWithin,
        switchStartedAt: new Date(switchStarted).toISOString(),
      });
    }
    ctx.progress(30, `switching ${bridge} to Open vSwitch`);
    // ifdown must read the definition the bridge was brought up with: after a crash mid-step that is the backup.
    // ifreload -a (ifupdown2) takes the Linux bridge down itself: it compares with what it brought up.
    const upFrom = planned.changed ? undefined : backupPath(env, env.paths.interfaces, BACKUP_LABEL);
    if (flavour === 1) {
      await ifdown(env.run, bridge, upFrom).catch((err: unknown) =>
        ctx.log.warn({ err: String(err) }, 'ifdown of the Linux bridge failed; going on'),
      );
      // A Linux bond uplink is an interface of its own to classic ifupdown (`auto bond0`): left
      // configured, `ifup` of the OVS bridge answers "interface bond0 already configured" and the
      // OVS hook never makes the OVSBond. Taken down too, as the old file defines it.
      if (linuxBondIn(parseInterfaces(restoreText), planned.uplink) !== undefined)
        await ifdown(env.run, ifName(planned.uplink, 'uplink'), upFrom).catch((err: unknown) =>
          ctx.log.warn({ err: String(err) }, 'ifdown of the Linux bond failed; going on'),
        );
    }
    await writeTextAtomic(env.paths.interfaces, planned.text);
    try {
      await ifupAs(env.run, bridge, flavour);
      await env.afterBridgeSwitch?.();
    } catch (err) {
      await restore(env, bridge, restoreText, ctx);
      await clearPendingConfirmation(env.paths.stateDir, bridge);
      throw new StepFailedError(`ovs-convert: ifup ${bridge} failed; the Linux bridge is back: ${String(err)}`, {
        cause: err,
      });
    }
  }
  ctx.progress(
    60,
    `waiting up to ${Math.max(0, Math.round((deadline - Date.now()) / 1000))}s for the controller to confirm the host is reachable`,
    { awaitingConfirmation: true },
  );
  const waitStarted = Date.now();
  const confirmed = await env.confirm({ confirmed: ctx.confirmed, deadline, signal: ctx.signal });
  if (!confirmed) {
    const reason =
      earlier.kind === 'waiting'
        ? `the controller did not confirm by ${earlier.record.deadline}, the deadline set before the host worker stopped`
        : `the controller did not confirm within ${Math.round(params.confirmWithin / 1000)}s`;
    ctx.log.warn({ bridge }, 'no confirmation before the deadline; restoring the Linux bridge');
    await revertUnconfirmed(env, bridge, restoreText, ctx, reason);
    throwIfAborted(ctx.signal);
    throw new StepFailedError(
      `ovs-convert: ${reason}; the host restored its Linux bridge and the old /etc/network/interfaces`,
    );
  }
  await clearPendingConfirmation(env.paths.stateDir, bridge);
  ctx.audit?.({ type: 'ovs.confirmed', data: { bridge, waitedMs: Date.now() - waitStarted } });
  const vmNics = await tagVms(env, bridge, params, ctx);
  const afterRunning = await observeBridge(env, bridge);
  ctx.progress(100, `${bridge} runs on Open vSwitch`);
  const vmPart = vmNics === undefined ? '' : `; ${vmNicSummary(vmNics, vmVlanOf(params)) || 'no VM NICs on it'}`;
  return {
    changed: true,
    summary:
      (earlier.kind === 'waiting' ? `${planned.summary} (confirmed after a host worker restart)` : planned.summary) +
      vmPart,
    before: {
      ...before,
      ...(vmNics ? { vmNics: vmNics.changed.map(({ vm, nic, before: b }) => ({ vm, nic, value: b })) } : {}),
    },
    after: {
      ...state(planned.text, afterRunning),
      ...(vmNics ? { vmNics } : {}),
      ifupdown: flavour === 2 ? 'ifupdown2' : 'ifupdown',
      interfacesDiff: lineDiff(restoreText, planned.text),
      backup: backupPath(env, env.paths.interfaces, BACKUP_LABEL),
    },
  };
}

/** The VLAN the VMs' NICs get on the converted bridge: the plan's vmVlan, else the host's VLAN. */
const vmVlanOf = (params: Params) => params.vmVlan ?? params.hostVlan;

/**
 * The VMs' NICs on the converted bridge onto the plan's VLAN, each old value recorded first. A NIC
 * that cannot be tagged fails the step; the bridge stays converted (the controller confirmed it) and
 * the step's revert puts back the bridge and the NICs tagged so far.
 */
async function tagVms(
  env: HostEnv,
  bridge: IfName,
  params: Params,
  ctx: StepContext,
): Promise<VmNicReport | undefined> {
  if (env.vmNics === undefined) return undefined;
  const backend = await env.vmNics();
  const tag = vmVlanOf(params);
  ctx.progress(90, `VMs on ${bridge} onto VLAN ${tag}`);
  try {
    return await tagVmNics(backend, env.paths.stateDir, bridge, tag, ctx);
  } catch (err) {
    throwIfAborted(ctx.signal);
    throw new StepFailedError(
      `ovs-convert: ${bridge} runs on Open vSwitch, but ${err instanceof Error ? err.message : String(err)}; reverting the step puts back the bridge and the VM NICs tagged so far`,
      { cause: err },
    );
  }
}

/** The values the VMs' NICs had before the conversion, once the bridge is Linux again (the hypervisor re-plugs them there). */
async function untagVms(env: HostEnv, bridge: IfName, ctx: StepContext) {
  if (env.vmNics === undefined) return undefined;
  return untagVmNics(await env.vmNics(), env.paths.stateDir, bridge, ctx);
}

/** The dead-man revert: the old file and the Linux bridge back, the pending record gone, the audit told why. */
async function revertUnconfirmed(
  env: HostEnv,
  bridge: IfName,
  restoreText: string,
  ctx: StepContext,
  reason: string,
): Promise<void> {
  await restore(env, bridge, restoreText, ctx);
  await clearPendingConfirmation(env.paths.stateDir, bridge);
  ctx.audit?.({
    type: 'ovs.auto-reverted',
    data: { bridge, reason, restored: 'linux bridge and /etc/network/interfaces from the backup' },
  });
}

/**
 * Put a known file back and rebuild the bridge from it. Under ifupdown2 too the bridge is taken down
 * first as the current file defines it: `ifreload -a` alone leaves an OVS bridge that becomes a Linux
 * bridge in the file as it is (it downs only interfaces that were removed), with the address on it.
 * Classic ifupdown: a Linux bond the restored file puts under the bridge is brought up first, with
 * `ifup <bond>`. `ifup <bridge>` would not: bridge-utils' hook adds a bridge-ports entry only when the
 * interface exists and never runs ifup for it, and ifenslave's hook acts only on the bond's own stanza
 * (or its slaves'), so the bridge would come up without its uplink (decision 0036). A bond that fails
 * to come up still has the bridge brought up after it, then fails the restore.
 */
async function restore(env: HostEnv, bridge: IfName, text: string, ctx: StepContext): Promise<void> {
  await ifdown(env.run, bridge).catch((err: unknown) =>
    ctx.log.warn({ err: String(err) }, 'ifdown during restore failed; going on'),
  );
  await writeTextAtomic(env.paths.interfaces, text);
  const flavour = flavourOf(env);
  const bond = flavour === 1 ? linuxBondUnder(text, bridge) : undefined;
  const bondUp =
    bond === undefined
      ? undefined
      : await ifupAs(env.run, bond, flavour).then(
          () => undefined,
          (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
        );
  await ifupAs(env.run, bridge, flavour);
  await env.afterBridgeSwitch?.();
  if (bondUp !== undefined)
    throw new StepFailedError(`ifup ${String(bond)} (the Linux bond under ${bridge}) failed: ${bondUp.message}`, {
      cause: bondUp,
    });
}

/** The Linux bond (bond-slaves/bond-mode, or named by its slaves' bond-master) among `bridge`'s bridge-ports in `text`. */
function linuxBondUnder(text: string, bridge: IfName): IfName | undefined {
  const blocks = parseInterfaces(text);
  const ports = ifaceStanzas(blocks, bridge)
    .map((s) => optionValue(s, 'bridge_ports') ?? '')
    .join(' ');
  const bond = ports.split(/\s+/).find((p) => p !== '' && p !== 'none' && linuxBondIn(blocks, p) !== undefined);
  return bond === undefined ? undefined : ifName(bond, 'bond');
}

/** Open vSwitch → the Linux bridge: the backup taken before the conversion, or the planned reverse without one. */
export async function revertOvsConvert(env: HostEnv, params: Params, ctx: StepContext): Promise<StepOutcome> {
  const bridge = ifName(params.bridge, 'bridge');
  const current = (await readText(env.paths.interfaces)) ?? '';
  const running = await observeBridge(env, bridge);
  const before = state(current, running);
  let reverse: InterfacesPlan;
  try {
    reverse = planLinuxBridgeRestore(current, { bridge });
  } catch (err) {
    if (err instanceof InterfacesPlanError)
      throw new StepFailedError(`ovs-convert revert: ${err.message}`, { cause: err });
    throw err;
  }
  if (!reverse.changed && running.type === 'linux') {
    await clearPendingConfirmation(env.paths.stateDir, bridge);
    // A revert that stopped after the bridge finishes the VMs' NICs.
    const vmNics = await untagVms(env, bridge, ctx);
    if (vmNics !== undefined && vmNics.changed.length > 0)
      return {
        changed: true,
        summary: `${bridge} is already a Linux bridge; ${vmNicSummary(vmNics, undefined)}`,
        before,
        after: { ...before, vmNics },
      };
    return { changed: false, summary: `${bridge} is already a Linux bridge`, before, after: before };
  }
  const backup = await readText(backupPath(env, env.paths.interfaces, BACKUP_LABEL));
  const useBackup = reverse.changed && backup !== undefined && !planLinuxBridgeRestore(backup, { bridge }).changed;
  const target = !reverse.changed ? current : useBackup ? backup : reverse.text;
  ctx.progress(30, `switching ${bridge} back to a Linux bridge${useBackup ? ' from the backup' : ''}`);
  await restore(env, bridge, target, ctx);
  await clearPendingConfirmation(env.paths.stateDir, bridge);
  const vmNics = await untagVms(env, bridge, ctx);
  const after = state(target, await observeBridge(env, bridge));
  const vmPart = vmNics !== undefined && vmNics.changed.length > 0 ? `; ${vmNicSummary(vmNics, undefined)}` : '';
  const since =
    vmNics !== undefined && vmNics.changedSince.length > 0
      ? `; left as they are (changed since the conversion): ${vmNics.changedSince.join(', ')}`
      : '';
  return {
    changed: true,
    summary: `${bridge} is a Linux bridge again${useBackup ? ' (interfaces file restored from the backup)' : ''}${vmPart}${since}`,
    before,
    after: { ...after, interfacesDiff: lineDiff(current, target), ...(vmNics ? { vmNics } : {}) },
  };
}
