import path from 'node:path';
import { z } from 'zod';
import type { NicSettings, StepOutcome, StepParams } from '../../../../schemas/steps.js';
import { readStateFile } from '../../../files.js';
import { StepFailedError, throwIfAborted, UnsupportedHardwareError, type StepContext } from '../../driver.js';
import { CommandFailedError } from '../command.js';
import {
  ethtoolChannelsArgv,
  ethtoolFeaturesArgv,
  ethtoolRingsArgv,
  ethtoolSetChannelsArgv,
  ethtoolSetOffloadsArgv,
  ethtoolSetRingsArgv,
  notSupported,
  parseEthtoolChannels,
  parseEthtoolFeatures,
  parseEthtoolRings,
} from '../ethtool.js';
import { backupFile, readText, writeTextAtomic, type HostEnv } from '../host-env.js';
import { detectIfupdown, type IfupdownFlavour } from '../ifupdown.js';
import { linkSettingsArgv, parseLinkSettings, setLinkSettingsArgv } from '../link-settings.js';
import { ifName, type IfName } from '../names.js';
import {
  currentValues,
  describeDifferences,
  differences,
  persistedStanza,
  stanzaText,
  unsupportedSettings,
  withAutoLine,
  withoutAutoLine,
  withStanza,
  type NicObserved,
  type NicValues,
} from '../nic-tuning-plan.js';
import { lineDiff } from '../observe.js';

type Params = StepParams<'nic-tuning'>;

/** What a revert of this rollout goes back to, per interface: its settings and its stanza before the first apply. */
const Recorded = z.record(
  z.string(),
  z.record(
    z.string(),
    z.object({ values: z.record(z.string(), z.unknown()), stanza: z.string(), addedAuto: z.boolean().default(false) }),
  ),
);
type Recorded = z.infer<typeof Recorded>;
const recordFile = (env: HostEnv) => path.join(env.paths.stateDir, 'nic-tuning.json');
const loadRecorded = async (env: HostEnv): Promise<Recorded> => (await readStateFile(recordFile(env), Recorded)) ?? {};
const saveRecorded = (env: HostEnv, all: Recorded) =>
  writeTextAtomic(recordFile(env), JSON.stringify(all, null, 2) + '\n');

/** An ethtool read that the device may not offer at all ("Operation not supported"): undefined then. */
async function optionalRead<T>(env: HostEnv, argv: string[], parse: (s: string) => T): Promise<T | undefined> {
  try {
    return parse((await env.run(argv)).stdout);
  } catch (err) {
    if (err instanceof CommandFailedError && notSupported(err.stderr)) return undefined;
    throw err;
  }
}

async function observeNic(env: HostEnv, name: IfName): Promise<NicObserved> {
  const link = parseLinkSettings((await env.run(linkSettingsArgv(name))).stdout);
  return {
    name,
    offloads: (await optionalRead(env, ethtoolFeaturesArgv(name), parseEthtoolFeatures)) ?? {},
    rings: await optionalRead(env, ethtoolRingsArgv(name), parseEthtoolRings),
    channels: await optionalRead(env, ethtoolChannelsArgv(name), parseEthtoolChannels),
    mtu: link.mtu,
    txqueuelen: link.txqueuelen,
    minMtu: link.minMtu,
    maxMtu: link.maxMtu,
  };
}

const wanted = (s: NicSettings): NicValues => {
  const { name: _name, ...values } = s;
  return values;
};

/** Set what differs, in the order a NIC takes it: queues and rings first (they may reset it), then offloads, MTU, txqueuelen. */
async function setRuntime(env: HostEnv, name: IfName, set: NicValues): Promise<void> {
  if (set.channels !== undefined) await env.run(ethtoolSetChannelsArgv(name, set.channels));
  if (set.rings !== undefined) await env.run(ethtoolSetRingsArgv(name, set.rings));
  if (set.offloads !== undefined) await env.run(ethtoolSetOffloadsArgv(name, set.offloads));
  if (set.mtu !== undefined || set.txqueuelen !== undefined)
    await env.run(setLinkSettingsArgv(name, { mtu: set.mtu, txqueuelen: set.txqueuelen }));
}

/** Bring each interface back to `values` (best effort: every interface is tried; the problems are returned). */
async function restoreRuntime(env: HostEnv, back: Map<IfName, NicValues>): Promise<string[]> {
  const problems: string[] = [];
  for (const [name, values] of back) {
    try {
      const now = currentValues(await observeNic(env, name), values);
      await setRuntime(env, name, differences(now, values));
    } catch (err) {
      problems.push(`${name}: ${(err as Error).message}`);
    }
  }
  return problems;
}

/** Write the interfaces file with each stanza given; unchanged text is not written. */
async function writeStanzas(
  env: HostEnv,
  text: string,
  stanzas: (text: string) => string,
  label: string,
): Promise<string> {
  const next = stanzas(text);
  if (next !== text) {
    await backupFile(env, env.paths.interfaces, text, label);
    await writeTextAtomic(env.paths.interfaces, next);
  }
  return next;
}

const flavourName = (f: IfupdownFlavour) => (f === 2 ? 'ifupdown2' : 'ifupdown');

/**
 * Offloads, rings, channels, txqueuelen and MTU of the named interfaces: refuses before any change
 * what an interface cannot take (naming each setting), records the values before (kept for the
 * revert of this rollout), sets what differs at once, persists it in the interface's stanza the way
 * the host's ifupdown reads it, and reads everything back. A read-back that differs puts the
 * interfaces and the file back and fails, naming each setting.
 */
export async function applyNicTuning(
  env: HostEnv,
  params: Params,
  ctx: StepContext,
  rolloutId: string,
): Promise<StepOutcome> {
  const flavour = detectIfupdown(env.paths.ifupdown2);
  const text = (await readText(env.paths.interfaces)) ?? '';
  const nics = params.interfaces.map((s) => ({ name: ifName(s.name), want: wanted(s) }));
  const observed = new Map<IfName, NicObserved>();
  for (const { name } of nics) observed.set(name, await observeNic(env, name));
  const problems = nics.flatMap(({ name, want }) => unsupportedSettings(observed.get(name) as NicObserved, want));
  const noStanza = nics.filter(({ name }) => stanzaText(text, name) === undefined).map(({ name }) => name);
  if (problems.length > 0)
    throw new UnsupportedHardwareError(`nic-tuning: not supported, nothing changed: ${problems.join('; ')}`);
  if (noStanza.length > 0)
    throw new StepFailedError(
      `nic-tuning: no iface stanza for ${noStanza.join(', ')} in ${env.paths.interfaces} to persist the settings in; nothing changed`,
    );

  const all = await loadRecorded(env);
  const recorded = (all[rolloutId] ??= {});
  for (const { name, want } of nics)
    recorded[name] ??= {
      values: currentValues(observed.get(name) as NicObserved, want),
      stanza: stanzaText(text, name) as string,
      addedAuto: flavour === 1 && withAutoLine(text, name) !== text,
    };
  await saveRecorded(env, all);
  const before = Object.fromEntries(nics.map(({ name, want }) => [name, currentValues(observed.get(name)!, want)]));

  const changes = nics.map(({ name, want }) => ({ name, set: differences(before[name] as NicValues, want) }));
  const applied = new Map<IfName, NicValues>();
  try {
    for (const { name, set } of changes) {
      throwIfAborted(ctx.signal);
      if (Object.keys(set).length === 0) continue;
      ctx.progress(20, `setting ${name}`);
      applied.set(name, before[name] as NicValues);
      await setRuntime(env, name, set);
    }
  } catch (err) {
    const left = await restoreRuntime(env, applied);
    throw new StepFailedError(
      `nic-tuning: ${(err as Error).message}; the interfaces were put back${left.length > 0 ? ` except: ${left.join('; ')}` : ''}`,
      { cause: err },
    );
  }
  const persist = (t: string) =>
    nics.reduce((acc, { name, want }) => {
      const tuned = withStanza(acc, name, (s) => persistedStanza(s, flavour, want)) ?? acc;
      return flavour === 1 ? withAutoLine(tuned, name) : tuned;
    }, t);
  const written = await writeStanzas(env, text, persist, 'nic-tuning');

  ctx.progress(80, 'reading the settings back');
  const after: Record<string, NicValues> = {};
  const mismatches: string[] = [];
  for (const { name, want } of nics) {
    after[name] = currentValues(await observeNic(env, name), want);
    mismatches.push(...describeDifferences(name, after[name], want));
  }
  if (mismatches.length > 0) {
    const left = await restoreRuntime(env, applied);
    await writeStanzas(env, written, () => text, 'nic-tuning-failed');
    throw new StepFailedError(
      `nic-tuning: the interfaces did not take ${mismatches.join('; ')}; put back as before${left.length > 0 ? ` except: ${left.join('; ')}` : ''}`,
    );
  }
  const changed = applied.size > 0 || written !== text;
  const what = changes.filter((c) => Object.keys(c.set).length > 0).map((c) => c.name);
  return {
    changed,
    summary: changed
      ? `tuned ${what.length > 0 ? what.join(', ') : 'nothing at runtime'}; persisted for ${flavourName(flavour)}${written === text ? ' (already)' : ''}`
      : `${nics.map((n) => n.name).join(', ')} already tuned and persisted`,
    before: { interfaces: before },
    after: { interfaces: after, ifupdown: flavourName(flavour), diff: lineDiff(text, written) },
  };
}

/** Put the interfaces and their stanzas back as the first apply of this rollout found them. */
export async function revertNicTuning(
  env: HostEnv,
  params: Params,
  ctx: StepContext,
  rolloutId: string,
): Promise<StepOutcome> {
  const all = await loadRecorded(env);
  const recorded = all[rolloutId];
  if (recorded === undefined)
    return {
      changed: false,
      summary: 'nic-tuning recorded nothing in this rollout; nothing to revert',
      before: {},
      after: {},
    };
  const names = params.interfaces.map((s) => ifName(s.name)).filter((n) => recorded[n] !== undefined);
  const back = new Map(names.map((n) => [n, (recorded[n] as { values: NicValues }).values]));
  const before: Record<string, NicValues> = {};
  for (const [name, values] of back) before[name] = currentValues(await observeNic(env, name), values);
  throwIfAborted(ctx.signal);
  const left = await restoreRuntime(env, back);
  const text = (await readText(env.paths.interfaces)) ?? '';
  const written = await writeStanzas(
    env,
    text,
    (t) =>
      names.reduce((acc, n) => {
        const r = recorded[n] as { stanza: string; addedAuto: boolean };
        const back = withStanza(acc, n, () => r.stanza) ?? acc;
        return r.addedAuto ? withoutAutoLine(back, n) : back;
      }, t),
    'nic-tuning-revert',
  );
  const after: Record<string, NicValues> = {};
  const mismatches: string[] = [...left];
  for (const [name, values] of back) {
    after[name] = currentValues(await observeNic(env, name), values);
    mismatches.push(...describeDifferences(name, after[name], values));
  }
  if (mismatches.length > 0) throw new StepFailedError(`nic-tuning revert: ${mismatches.join('; ')}`);
  delete all[rolloutId];
  await saveRecorded(env, all);
  const changed =
    names.some((n) => Object.keys(differences(before[n] as NicValues, back.get(n) as NicValues)).length > 0) ||
    written !== text;
  return {
    changed,
    summary: `${names.join(', ')} back to the settings before this rollout`,
    before: { interfaces: before },
    after: { interfaces: after, diff: lineDiff(text, written) },
  };
}
