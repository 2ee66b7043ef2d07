import path from 'node:path';
import { z } from 'zod';
import type { StepParams, StepOutcome, TrafficStats } from '../../../../schemas/steps.js';
import { InvalidStepParamsError, StepFailedError, throwIfAborted, type StepContext } from '../../driver.js';
import { iommuActive } from '../boot-config.js';
import { hpingArgv, parseHpingStats } from '../hping.js';
import { writeTextAtomic, type HostEnv } from '../host-env.js';
import { readStateFile } from '../../../files.js';
import { optionValue, parseInterfaces } from '../interfaces-file.js';
import { ifName } from '../names.js';
import { vfMismatches } from '../sriov.js';
import { readPersistedVfs } from '../vf-persistence.js';
import { requireTool } from '../tools.js';
import { compareCounters, countersOf, snapshot, watched } from './net-health.js';

/** Below this, a difference in loss from the baseline is noise; for latency the plan says (rttToleranceMs). */
export const LOSS_NOISE_PCT = 1;

const Baselines = z.record(
  z.string(),
  z.record(z.string(), z.object({ lossPct: z.number(), rttAvgMs: z.number().optional(), at: z.string() })),
);
type Baselines = z.infer<typeof Baselines>;

const baselineFile = (env: HostEnv) => path.join(env.paths.stateDir, 'traffic-baselines.json');

async function loadBaselines(env: HostEnv): Promise<Baselines> {
  return (await readStateFile(baselineFile(env), Baselines)) ?? {};
}

async function saveBaseline(env: HostEnv, rolloutId: string, key: string, stats: TrafficStats): Promise<void> {
  const all = await loadBaselines(env);
  all[rolloutId] = {
    ...all[rolloutId],
    [key]: {
      lossPct: stats.lossPct,
      ...(stats.rttAvgMs !== undefined ? { rttAvgMs: stats.rttAvgMs } : {}),
      at: new Date().toISOString(),
    },
  };
  await writeTextAtomic(baselineFile(env), JSON.stringify(all, null, 2) + '\n');
}

const targetKey = (address: string, port: number | undefined, from: string) =>
  `${from}>${address}${port === undefined ? '' : `:${port}`}`;

/** Send `count` packets with hping3 and read its summary; exit status 1 (nothing came back) is a result, not an error. */
export async function probe(
  env: HostEnv,
  target: { address: string; port?: number | undefined },
  count: number,
  fromVm?: string,
  signal?: AbortSignal,
): Promise<TrafficStats> {
  const run = fromVm === undefined ? env.run : env.runInVm?.(fromVm);
  if (run === undefined)
    throw new InvalidStepParamsError('verify: fromVm works only where the driver can enter a VM (the lab)');
  const res = await run(hpingArgv({ address: target.address, port: target.port, count }), {
    okExitCodes: [1],
    timeoutMs: 30_000 + count * 50,
    ...(signal ? { signal } : {}),
  });
  return {
    target: target.port === undefined ? target.address : `${target.address}:${target.port}`,
    ...parseHpingStats(res.stderr),
  };
}

/**
 * Before a change: measure each target (the plan's verify targets sent from this host) and the host's
 * gateway from the interfaces file, so that a later verify of this rollout compares with the network as
 * it was before. A target measured already in this rollout keeps its first baseline; one that does not
 * answer gets none (verify then measures its own). Best effort: a failed probe does not stop the change.
 */
export async function recordBaselines(
  env: HostEnv,
  interfaces: string | undefined,
  targets: readonly { address: string; port?: number | undefined }[],
  rolloutId: string,
  ctx: StepContext,
): Promise<void> {
  const gateway = parseInterfaces(interfaces ?? '')
    .filter((b) => b.type === 'iface')
    .map((b) => (b.type === 'iface' ? optionValue(b, 'gateway') : undefined))
    .find((g) => g !== undefined && z.ipv4().safeParse(g).success);
  const all = [...targets, ...(gateway !== undefined ? [{ address: gateway }, { address: gateway, port: 80 }] : [])];
  const existing = (await loadBaselines(env))[rolloutId] ?? {};
  const done = new Set<string>();
  for (const target of all) {
    const key = targetKey(target.address, target.port, 'host');
    if (existing[key] !== undefined || done.has(key)) continue;
    done.add(key);
    throwIfAborted(ctx.signal);
    const stats = await probe(env, target, 20, undefined, ctx.signal).catch(() => undefined);
    if (stats !== undefined && stats.received > 0) await saveBaseline(env, rolloutId, key, stats);
  }
}

/**
 * Problems with the VFs: the persisted count (udev rules) is not what runs, or a VF's settings (VLAN,
 * MAC, spoof checking, trust) differ. The NIC is found by the PCI address the rules match, under
 * whatever name it has now.
 */
async function vfProblems(env: HostEnv): Promise<{ problems: string[]; state: Record<string, unknown> | undefined }> {
  const rules = await readPersistedVfs(env);
  if (rules === undefined) return { problems: [], state: undefined };
  const nic = rules.pci === undefined ? ifName(rules.nic) : await env.vfs.nicAt(rules.pci);
  if (nic === undefined)
    return { problems: [`no network interface at PCI ${rules.pci}, whose VFs are persisted`], state: undefined };
  const iommu = await iommuActive(env.paths.sysIommu);
  const numVfs = await env.vfs.numVfs(nic);
  const vfs = numVfs > 0 ? await env.vfs.vfStates(nic) : {};
  const problems: string[] = [];
  if (!iommu) problems.push('the running kernel has no IOMMU (/sys/class/iommu is empty): reboot needed for SR-IOV');
  else if (numVfs !== rules.numVfs) problems.push(`${nic} runs ${numVfs} VFs, ${rules.numVfs} persisted`);
  else problems.push(...vfMismatches(rules.vfs, vfs).map((p) => `${nic} ${p}`));
  return {
    problems,
    state: { nic, ...(rules.pci !== undefined ? { pci: rules.pci } : {}), iommu, numVfs, persisted: rules.numVfs, vfs },
  };
}

/**
 * hping3 from the host (or a VM) to each target; fails on the plan's thresholds, on a regression against
 * the baseline of this rollout, and on VFs that do not match the persisted SR-IOV configuration. The first
 * verify of a rollout without an earlier baseline becomes the baseline.
 */
export async function applyVerify(
  env: HostEnv,
  params: StepParams<'verify'>,
  ctx: StepContext,
  rolloutId: string,
): Promise<StepOutcome> {
  const sender = params.fromVm === undefined ? env.run : env.runInVm?.(params.fromVm);
  if (sender !== undefined)
    await requireTool(sender, 'hping3', params.fromVm === undefined ? 'this host' : `VM ${params.fromVm}`);
  const baselines = (await loadBaselines(env))[rolloutId] ?? {};
  // net-health inside verify: the counters before the first probe and after the last one.
  const health = params.health;
  const first = health !== undefined ? await snapshot(env) : undefined;
  const watching = first !== undefined ? watched(first, health?.interfaces, 'verify health') : [];
  const started = Date.now();
  const traffic: TrafficStats[] = [];
  const problems: string[] = [];
  const from = params.fromVm ?? 'host';
  for (const [i, target] of params.targets.entries()) {
    throwIfAborted(ctx.signal);
    ctx.progress(
      Math.round((i / params.targets.length) * 90),
      `hping3 ${params.count} packets to ${target.address}${target.port ? `:${target.port}` : ''} from ${from}`,
    );
    const stats = await probe(env, target, params.count, params.fromVm, ctx.signal);
    traffic.push(stats);
    const key = targetKey(target.address, target.port, from);
    const base = baselines[key];
    if (stats.lossPct > params.maxLossPct)
      problems.push(`${stats.target}: ${stats.lossPct}% loss, above ${params.maxLossPct}%`);
    if (params.maxRttMs !== undefined && (stats.rttAvgMs ?? Infinity) > params.maxRttMs)
      problems.push(`${stats.target}: rtt ${stats.rttAvgMs ?? '∞'} ms, above ${params.maxRttMs} ms`);
    if (base !== undefined) {
      const loss = stats.lossPct - base.lossPct;
      if (loss > LOSS_NOISE_PCT && stats.lossPct > base.lossPct * params.maxRegression)
        problems.push(`${stats.target}: loss ${stats.lossPct}% against ${base.lossPct}% before the change`);
      const rtt = (stats.rttAvgMs ?? Infinity) - (base.rttAvgMs ?? 0);
      if (
        base.rttAvgMs !== undefined &&
        rtt > params.rttToleranceMs &&
        (stats.rttAvgMs ?? Infinity) > base.rttAvgMs * params.maxRegression
      ) {
        problems.push(`${stats.target}: rtt ${stats.rttAvgMs ?? '∞'} ms against ${base.rttAvgMs} ms before the change`);
      }
    } else if (stats.received > 0) {
      await saveBaseline(env, rolloutId, key, stats);
    }
  }
  const vfs = await vfProblems(env);
  problems.push(...vfs.problems);
  let counters: { before: Record<string, unknown>; after: Record<string, unknown>; summary: string } | undefined;
  if (health !== undefined && first !== undefined) {
    const second = await snapshot(env);
    const seconds = Math.round((Date.now() - started) / 100) / 10;
    const report = compareCounters(first, second, watching, health.max);
    problems.push(...report.problems.map((p) => `net health over ${seconds} s: ${p}`));
    counters = {
      before: { netHealth: countersOf(first, watching) },
      after: {
        netHealth: {
          ...countersOf(second, watching),
          windowMs: Date.now() - started,
          deltas: report.deltas,
          retransmitted: report.tcpRetransmits,
          max: health.max,
        },
      },
      summary: `; net health over ${seconds} s on ${watching.join(', ')}: ${report.grew.length > 0 ? `${report.grew.join(', ')} (within limits)` : 'no drops, errors or overruns'}, tcpRetransmits +${report.tcpRetransmits}`,
    };
  }
  const observed = {
    traffic,
    baselines,
    ...(vfs.state !== undefined ? { sriov: vfs.state } : {}),
    ...counters?.after,
  };
  if (problems.length > 0) throw new StepFailedError(`verify failed: ${problems.join('; ')}`);
  ctx.progress(100, 'traffic checks passed');
  const summary = traffic
    .map(
      (t) =>
        `${t.target} ${t.received}/${t.transmitted} (${t.lossPct}% loss${t.rttAvgMs !== undefined ? `, avg ${t.rttAvgMs} ms` : ''})`,
    )
    .join('; ');
  return {
    changed: false,
    summary: `verify passed from ${from}: ${summary}${counters?.summary ?? ''}`,
    before: counters?.before ?? {},
    after: observed,
    traffic,
  };
}
