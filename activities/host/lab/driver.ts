import { existsSync } from 'node:fs';
import { copyFile, mkdir, open, rm, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { HostFacts, HostTools } from '../../../schemas/host.js';
import type { StepCall, StepOutcome } from '../../../schemas/steps.js';
import type { StepPreview } from '../../../schemas/preview.js';
import type { StepCommand } from '../../../schemas/command.js';
import { HostDownError, StepFailedError, type HostDriver, type StepContext } from '../driver.js';
import type { HostEnv } from '../linux/host-env.js';
import { ifName } from '../linux/names.js';
import { iommuActive } from '../linux/boot-config.js';
import { readText, withAudit } from '../linux/host-env.js';
import { observeBridge } from '../linux/observe.js';
import { runNetworkStep } from '../linux/steps/network.js';
import { previewLinuxSteps } from '../linux/steps/preview.js';
import { rebootOwed } from '../linux/steps/reboot.js';
import { toolFacts } from '../linux/tools.js';
import {
  drainProxmoxNode,
  isCordoned as isProxmoxCordoned,
  notDrained,
  proxmoxFacts,
  undrainProxmoxNode,
  type ConfigCache,
  type ProxmoxHost,
} from '../linux/proxmox-drain.js';
import path from 'node:path';
import { hostRunner } from './exec.js';
import { rebootHost } from './boot.js';
import { drainLabHost, isCordoned, undrainLabHost } from './drain.js';
import { labHostEnv, type LabConfirmation } from './environment.js';
import { hostPaths } from './layout.js';
import { vmsOn } from './migrate.js';
import { liveSupervisor, requestReboot } from './power.js';
import { labHost, loadLab, type LabHost, type LabState } from './state.js';

export interface LabDriverOptions {
  hostId: string;
  /** The lab's directory (<REFIT_HOME>/lab). */
  labDir: string;
  /** The driver's own state: traffic baselines, the pending reboot. */
  stateDir: string;
  /**
   * How an ovs-convert learns the host is still reachable; default: what the lab's supervisor of
   * this host's agent says (lab/workers.ts), else 'probe' (packets from the lab switch).
   */
  confirm?: LabConfirmation;
  log?: Logger;
}

/** A lab host: every step runs the linux step modules inside the host's namespace, against its own files. */
export class LabDriver implements HostDriver {
  readonly kind = 'lab' as const;
  private rebooting: Promise<void> | undefined;
  /** Asked the supervisor for a reboot: this process is about to be stopped by it. */
  private rebootRequested = false;
  private readonly tools: () => Promise<HostTools>;
  /**
   * A `pve` host with the lab's qm and pvesh on its PATH is a Proxmox node: its VMs, drain and
   * undrain go through them (the proxmox backend of the linux driver), this node named by its host
   * id, as are the other pve hosts it migrates to. Its state (where its VMs went, ovs-convert's VM
   * VLANs) is the driver's; its cordon is copied to the lab's after each drain and undrain.
   */
  private readonly pve: ProxmoxHost;
  private readonly pveConfigs: ConfigCache = new Map();
  private backend: Promise<'lab' | 'proxmox'> | undefined;

  private constructor(
    private readonly lab: LabState,
    private readonly host: LabHost,
    private readonly env: HostEnv,
    private readonly log: Logger | undefined,
  ) {
    this.tools = toolFacts(env.run);
    this.pve = {
      run: hostRunner(lab, host),
      node: host.id,
      nodeOf: (hostId) => hostId,
      stateDir: env.paths.stateDir,
      pollMs: 500,
    };
  }

  /** Who runs this host's VMs, decided once: Proxmox where qm and pvesh are on the host's PATH (a pve host), else the lab. */
  vmBackend(): Promise<'lab' | 'proxmox'> {
    this.backend ??=
      this.host.flavour !== 'pve'
        ? Promise.resolve('lab')
        : this.env.run(['sh', '-c', 'command -v qm && command -v pvesh']).then(
            () => 'proxmox' as const,
            () => 'lab' as const,
          );
    return this.backend;
  }

  static async open(opts: LabDriverOptions): Promise<LabDriver> {
    const lab = await loadLab(opts.labDir);
    const host = labHost(lab, opts.hostId);
    await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
    const confirm = opts.confirm ?? (await liveSupervisor(host))?.confirm ?? 'probe';
    const driver = new LabDriver(lab, host, labHostEnv(lab, host, opts.stateDir, confirm), opts.log);
    // The worker died between reporting a reboot and doing it: the reboot is still owed.
    if (await rebootOwed(driver.env)) {
      opts.log?.info({ hostId: host.id }, 'lab: finishing a reboot that was reported but not done');
      void driver.reboot();
    }
    return driver;
  }

  /** Resolves when no reboot is in progress. */
  async whenUp(): Promise<void> {
    await this.rebooting;
  }

  private throwIfDown(): void {
    if (this.rebooting !== undefined || this.rebootRequested || existsSync(hostPaths(this.host).down))
      throw new HostDownError(`lab host ${this.host.id} is rebooting`);
  }

  async bootId(): Promise<string> {
    this.throwIfDown();
    return ((await readText(this.env.paths.bootId)) ?? 'unknown').trim();
  }

  async facts(): Promise<HostFacts> {
    this.throwIfDown();
    const nic = ifName(this.host.nic);
    const bridge = await observeBridge(this.env, ifName('vmbr0'));
    const totalVfs = (await this.env.vfs.totalVfs(nic)) ?? 0;
    const pve = (await this.vmBackend()) === 'proxmox' ? await proxmoxFacts(this.pve, this.pveConfigs) : undefined;
    const vms =
      pve?.vms ??
      (await vmsOn(this.lab, this.host.id)).map((v) => ({ name: v.name, state: 'running' as const, sriov: false }));
    return {
      bootId: ((await readText(this.env.paths.bootId)) ?? 'unknown').trim(),
      bridge: { name: 'vmbr0', type: bridge.type, ports: bridge.ports },
      sriov: {
        nic,
        supported: totalVfs > 0,
        totalVfs,
        numVfs: await this.env.vfs.numVfs(nic),
        iommu: await iommuActive(this.env.paths.sysIommu),
      },
      vms,
      cordoned: isCordoned(this.host),
      capacity: { vmSlots: this.host.vmSlots, vmsRunning: vms.length },
      ...(pve?.memory !== undefined ? { memory: pve.memory } : {}),
      ...(pve?.cpus !== undefined ? { cpus: pve.cpus } : {}),
      tools: await this.tools(),
    };
  }

  /** Reads the lab host's own /etc files, as the linux driver reads a real host's; writes nothing. */
  async preview(steps: readonly StepCall[]): Promise<StepPreview[]> {
    return previewLinuxSteps(this.env, steps, await this.facts().catch(() => undefined));
  }

  async runStep(step: StepCommand, ctx: StepContext): Promise<StepOutcome> {
    await this.rebooting;
    const apply = step.mode === 'apply';
    const proxmox = (await this.vmBackend()) === 'proxmox';
    const logged = proxmox
      ? await stat(hostPaths(this.host).pveStandinLog).then(
          (s) => s.size,
          () => 0,
        )
      : 0;
    const syncCordon = async () => {
      if (!proxmox || (step.kind !== 'drain' && step.kind !== 'undrain')) return;
      const cordon = hostPaths(this.host).cordoned;
      if (isProxmoxCordoned(this.pve)) await copyFile(path.join(this.pve.stateDir, 'cordoned'), cordon);
      else await rm(cordon, { force: true });
    };
    const result = await (async (): Promise<StepOutcome> => {
      if (proxmox && step.kind === 'drain')
        return apply
          ? drainProxmoxNode(this.pve, step.params.destinations, step.params.nonMigratable ?? 'refuse', ctx)
          : undrainProxmoxNode(this.pve, ctx);
      if (proxmox && step.kind === 'undrain')
        return apply
          ? undrainProxmoxNode(this.pve, ctx)
          : {
              changed: false,
              summary: 're-draining on revert needs destinations from the controller; the host stays as it is',
              before: {},
              after: {},
            };
      if (proxmox && step.kind === 'reboot' && apply) {
        const why = await notDrained(this.pve);
        if (why !== undefined) throw new StepFailedError(`reboot refused: ${why}`);
      }
      switch (step.kind) {
        case 'drain':
          return apply
            ? drainLabHost(this.lab, this.host, step.params.destinations, ctx)
            : undrainLabHost(this.lab, this.host, ctx, this.env.paths.stateDir);
        case 'undrain':
          return apply
            ? undrainLabHost(this.lab, this.host, ctx, this.env.paths.stateDir)
            : drainLabHost(this.lab, this.host, {}, ctx);
        default:
          return runNetworkStep(withAudit(this.env, ctx), step, ctx);
      }
    })().finally(syncCordon);
    const outcome = proxmox ? await withMeasuredMigrations(this.host, logged, result) : result;
    ctx.log.info(
      { kind: step.kind, mode: step.mode, changed: outcome.changed },
      `lab ${this.host.id}: ${outcome.summary}`,
    );
    return { bootId: ((await readText(this.env.paths.bootId)) ?? 'unknown').trim(), ...outcome };
  }

  async afterReported(step: StepCommand): Promise<void> {
    if (step.kind === 'reboot' && step.mode === 'apply' && (await rebootOwed(this.env))) await this.reboot();
  }

  /**
   * The lab reboot: the host reports nothing while down, then comes back with a new boot id. When
   * the lab runs this agent as a service, the supervisor does it (and restarts the agent, as
   * systemd would); this returns once it is asked, as `systemctl reboot` does.
   */
  async reboot(): Promise<void> {
    if (this.rebootRequested) return;
    if (this.rebooting === undefined && (await liveSupervisor(this.host)) !== undefined) {
      this.rebootRequested = true;
      this.log?.warn({ hostId: this.host.id }, 'lab: asking the supervisor to reboot this host');
      await requestReboot(this.host);
      return;
    }
    this.rebooting ??= (async () => {
      try {
        const booted = await rebootHost(this.lab, this.host);
        this.log?.info(
          { hostId: this.host.id, bootId: booted.bootId, cmdline: booted.cmdline },
          'lab: host is back with a new boot id',
        );
      } finally {
        this.rebooting = undefined;
      }
    })();
    return this.rebooting;
  }
}

/**
 * What the lab measured of the live migrations the stand-ins ran during a step (their log from
 * `from` on: `refit lab: vm101→h2 (3/152 pings lost (~30 ms), QEMU downtime 41 ms)`), added to the
 * step's summary as the lab's own drain says it, so it reaches the status and the audit.
 */
async function withMeasuredMigrations(host: LabHost, from: number, outcome: StepOutcome): Promise<StepOutcome> {
  const file = await open(hostPaths(host).pveStandinLog, 'r').catch(() => undefined);
  if (file === undefined) return outcome;
  try {
    const { size } = await file.stat();
    const buf = Buffer.alloc(Math.max(0, size - from));
    await file.read(buf, 0, buf.length, from);
    const measured = [...buf.toString('utf8').matchAll(/ refit lab: (\S+→\S+ \(.*\))$/gm)].map((m) => m[1]);
    return measured.length === 0
      ? outcome
      : { ...outcome, summary: `${outcome.summary}; measured by the lab: ${measured.join(', ')}` };
  } finally {
    await file.close();
  }
}

/** The driver factory the host worker uses for `--driver lab`. */
export function createLabDriver(opts: LabDriverOptions): Promise<LabDriver> {
  return LabDriver.open(opts);
}
