import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Labels } from '../schemas/common.js';
import { enrollHosts } from '../workers/dev/enroll.js';
import { credsFile, type NatsTls } from '../workers/config.js';
import { createLabDriver, type LabDriver } from '../activities/host/lab/driver.js';
import { claimSupervision, liveSupervisor, releaseSupervision } from '../activities/host/lab/power.js';
import { RefitError } from '../schemas/errors.js';
import type { LabFlavour, LabHost, LabState } from '../activities/host/lab/state.js';
import { startAgentService, SYSTEMD_PATH, type AgentService } from './agent-service.js';
import { defaultHostPackage, PACKAGE_PATHS, unpackHostPackage, type UnpackedHostPackage } from './host-package.js';
import { parseEnvironmentFile, withEnvironment } from './systemd-unit.js';

/** Another process already runs this lab's agents. */
export class LabAgentsRunningError extends RefitError {}

/**
 * The labels a lab host reports. Each flavour of one lab is one cluster: a VM is drained to hosts of
 * its own lab and flavour only (chooseDestinations keeps a drain inside a cluster), never to another
 * lab's (or a simulated fleet's) hosts on the same NATS, and never from a `pve` host to a `debian`
 * one or back: a Proxmox cluster holds only its own nodes (`qm migrate` refuses any other target),
 * and a debian host's VMs are not Proxmox VMs. The caller's labels come last and win.
 */
export function labHostLabels(prefix: string, flavour: LabFlavour, extra: Labels = {}): Labels {
  return { role: 'hypervisor', lab: 'lab', cluster: `lab-${prefix.replace(/-$/, '')}-${flavour}`, ...extra };
}

/**
 * A mixed lab, as a Proxmox fleet moving over is: the first half of the hosts `pve`, the rest
 * `debian`. Each flavour is its own cluster (labHostLabels), so each needs a second host to drain
 * to: under four hosts all are `pve`.
 */
export function mixedFlavours(hosts: number): Record<string, LabFlavour> {
  const pve = hosts < 4 ? hosts : Math.floor(hosts / 2);
  return Object.fromEntries(Array.from({ length: hosts }, (_, i) => [`h${i + 1}`, i < pve ? 'pve' : 'debian']));
}

export interface LabWorkersOptions {
  lab: LabState;
  /** REFIT_HOME of the stack: where `refit dev` keeps the NATS credentials. */
  home: string;
  natsUrl: string;
  /** TLS to NATS (the config's natsTls), written into each agent's host.env; absent: plain TCP. */
  natsTls?: NatsTls | undefined;
  log: Logger;
  labels?: Labels;
  /** How ovs-convert is confirmed: packets from the lab switch (default) or the controller's own word. */
  confirm?: 'probe' | 'controller';
  /** The host package the agents run (default: what `npm run package` built, dist/package/). */
  hostPackage?: string;
  /**
   * Each agent makes and keeps its own key, as on a real host, and waits until the controller admits
   * it (`refit enroll --from <lab>/refit-hosts.txt`). Default: credentials made by `refit dev`.
   */
  ownKeys?: boolean;
}

export interface LabWorkers {
  /** Read-only views of each host (facts), beside its running agent; not the agent's own driver. */
  drivers: Map<string, LabDriver>;
  /** Each host's agent service. */
  services: Map<string, AgentService>;
  /** With ownKeys: the file of "<hostId> <publicKey>" lines, as `refit-host enroll-request` printed them. */
  enrollFile?: string;
  /** Reboot a lab host as its agent would be rebooted: agent stopped, host rebooted, agent started from the unit. */
  reboot(hostId: string): Promise<void>;
  stop(): Promise<void>;
}

/** Environment passed on from whoever runs the lab, written into each host's env file when set. */
const PASSED_ON = ['REFIT_LOG_LEVEL', 'REFIT_CONNECT_TIMEOUT'] as const;

/**
 * One host agent per lab host, run from the host package (refit-host_<version>_all.deb, unpacked
 * into <lab>/package) the way its systemd unit runs it: the unit's ExecStart=, and the host's own
 * /etc/refit/host.env (the package's default with this lab's values). Each host has its own NATS
 * identity (enrolled with `refit dev` credentials when it has none yet); journal and driver state
 * live in <lab>/agents/<host> (the unit's StateDirectory=).
 */
export async function startLabWorkers(o: LabWorkersOptions): Promise<LabWorkers> {
  if (!o.ownKeys)
    await enrollHosts(
      o.home,
      o.lab.hosts.map((h) => h.id),
    );
  const pkg = await unpackHostPackage(o.hostPackage ?? defaultHostPackage(), path.join(o.lab.labDir, 'package'));
  const drivers = new Map<string, LabDriver>();
  const requests: string[] = [];
  const enrollFile = path.join(o.lab.labDir, 'refit-hosts.txt');
  const services = new Map<string, AgentService>();
  const claimed: LabHost[] = [];
  const stop = async () => {
    await Promise.all([...services.values()].map((s) => s.stop()));
    services.clear();
    for (const host of claimed.splice(0)) await releaseSupervision(host);
  };
  try {
    for (const host of o.lab.hosts) {
      const stateDir = path.join(o.lab.labDir, 'agents', host.id);
      const envFile = path.join(host.root, PACKAGE_PATHS.env);
      await mkdir(path.dirname(envFile), { recursive: true });
      const labels = labHostLabels(o.lab.prefix, host.flavour, o.labels);
      const passed = Object.fromEntries(PASSED_ON.flatMap((k) => (process.env[k] ? [[k, process.env[k]]] : [])));
      await writeFile(
        envFile,
        withEnvironment(pkg.defaultEnv, {
          REFIT_NATS_URL: o.natsUrl,
          ...(o.natsTls ? natsTlsEnvironment(o.natsTls) : {}),
          ...(o.ownKeys ? {} : { REFIT_NATS_CREDS: credsFile(o.home, { host: host.id }) }),
          REFIT_HOST_ID: host.id,
          REFIT_HOST_LABELS: Object.entries(labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(','),
          REFIT_DRIVER: 'lab',
          REFIT_STATE_DIR: stateDir,
          REFIT_LAB_DIR: o.lab.labDir,
          ...passed,
        }),
        { mode: 0o644 },
      );
      if (o.ownKeys) requests.push(await enrollRequest(pkg, host, envFile));
      const other = await liveSupervisor(host);
      if (other !== undefined && other.pid !== process.pid)
        throw new LabAgentsRunningError(
          `${host.id}'s agent is already run by process ${other.pid} (refit lab agents); stop it first`,
        );
      await claimSupervision(host, { pid: process.pid, confirm: o.confirm ?? 'probe' });
      claimed.push(host);
      const log = o.log.child({ hostId: host.id, driver: 'lab' });
      services.set(host.id, await startAgentService({ lab: o.lab, host, pkg, stateDir, log }));
      // Facts for the caller, read beside the agent; its own state dir so it never owes a reboot.
      drivers.set(
        host.id,
        await createLabDriver({
          hostId: host.id,
          labDir: o.lab.labDir,
          stateDir: path.join(o.lab.labDir, 'observers', host.id),
          log,
        }),
      );
    }
    if (o.ownKeys) await writeFile(enrollFile, requests.map((r) => `${r}\n`).join(''));
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    drivers,
    services,
    ...(o.ownKeys ? { enrollFile } : {}),
    async reboot(hostId) {
      const service = services.get(hostId);
      if (service === undefined) throw new Error(`no lab agent for ${hostId}`);
      await service.reboot();
    },
    stop,
  };
}

/** `refit-host enroll-request` from the package, with the host's env file: "<hostId> <publicKey>". */
async function enrollRequest(pkg: UnpackedHostPackage, host: LabHost, envFile: string): Promise<string> {
  const env = parseEnvironmentFile(await readFile(envFile, 'utf8'), envFile);
  const asked = await promisify(execFile)(path.join(pkg.root, PACKAGE_PATHS.wrapper), ['enroll-request'], {
    env: { PATH: SYSTEMD_PATH, ...env },
  });
  return asked.stdout.trim();
}

/** The host agent's REFIT_NATS_TLS_* variables for these settings. */
function natsTlsEnvironment(tls: NatsTls): Record<string, string> {
  return {
    REFIT_NATS_TLS_CA: tls.caFile,
    ...(tls.certFile !== undefined ? { REFIT_NATS_TLS_CERT: tls.certFile } : {}),
    ...(tls.keyFile !== undefined ? { REFIT_NATS_TLS_KEY: tls.keyFile } : {}),
  };
}
