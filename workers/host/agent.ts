import { hostname, homedir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { HostDriver } from '../../activities/host/driver.js';
import type { Driver } from '../../schemas/host.js';
import { ensureSeed } from '../nkey.js';
import type { LinuxChoice } from './linux-choice.js';

/**
 * What `refit host` and the packaged agent (`refit-host`, workers/host/agent-main.ts) share: where a
 * host keeps its state by default and which driver runs its steps. Host-side only: nothing here may
 * reach Temporal, the CLI or the controller.
 */

/** The host id an agent takes when none is given: the short hostname (`pve-01.example.net` → `pve-01`). */
export function defaultHostId(name = hostname()): string {
  return name.split('.')[0]!.toLowerCase();
}

export interface StateDirContext {
  /** REFIT_HOME of the dev stack (sim hosts live under it, as `refit sim-fleet` keeps them). */
  home: string;
  /** Where lab hosts live (default <REFIT_HOME>/lab). */
  labDir: string;
  env?: NodeJS.ProcessEnv;
  /** The effective uid (root gets /var/lib/refit). */
  uid?: number;
  homeDir?: string;
}

/**
 * The state directory of a real host's agent when none is given: `/var/lib/refit` as root (systemd's
 * `StateDirectory=refit`), otherwise `$XDG_STATE_HOME/refit` or `~/.local/state/refit`. Never the
 * working directory: a run by hand and a run as a service must find the same journal.
 */
export function defaultAgentStateDir(
  env: NodeJS.ProcessEnv = process.env,
  uid = process.getuid?.() ?? -1,
  homeDir = homedir(),
): string {
  if (uid === 0) return '/var/lib/refit';
  const xdg = env.XDG_STATE_HOME;
  // The XDG spec: a relative XDG_STATE_HOME is invalid and ignored.
  if (xdg !== undefined && path.isAbsolute(xdg)) return path.join(xdg, 'refit');
  return path.join(homeDir, '.local', 'state', 'refit');
}

/**
 * Default state dir by driver: a real host's is {@link defaultAgentStateDir}; a lab host's is the one
 * `refit lab agents` uses (<lab>/agents/<id>); a simulated host's the one `refit sim-fleet` uses
 * (<REFIT_HOME>/sim/<id>). Either way one host id has one journal.
 */
export function defaultStateDir(driver: Driver, hostId: string, c: StateDirContext): string {
  switch (driver) {
    case 'linux':
      return defaultAgentStateDir(c.env, c.uid, c.homeDir);
    case 'lab':
      return path.resolve(c.labDir, 'agents', hostId);
    case 'sim':
      return path.resolve(c.home, 'sim', hostId);
  }
}

export interface DriverChoice {
  driver: Driver;
  hostId: string;
  stateDir: string;
  /** Lab driver only: the lab's directory. */
  labDir: string;
  log: Logger;
  /** Sim driver only: 2 runs steps twice as fast. */
  speed?: number;
  /** Linux driver only: its VM backend and Proxmox node names (LinuxDriverOptions). */
  linux?: LinuxChoice;
}

/**
 * The driver that runs this host's steps. Each is loaded only when chosen: the linux agent on a
 * hypervisor does not load the lab's or the simulation's code.
 */
export async function createDriver(c: DriverChoice): Promise<HostDriver> {
  switch (c.driver) {
    case 'linux': {
      const { createLinuxDriver } = await import('../../activities/host/linux/driver.js');
      return createLinuxDriver({ hostId: c.hostId, stateDir: c.stateDir, log: c.log, ...c.linux });
    }
    case 'lab': {
      const { createLabDriver } = await import('../../activities/host/lab/driver.js');
      return createLabDriver({ hostId: c.hostId, labDir: c.labDir, stateDir: c.stateDir, log: c.log });
    }
    case 'sim': {
      const { SimDriver } = await import('../../activities/host/sim/driver.js');
      return SimDriver.open({
        hostId: c.hostId,
        stateDir: c.stateDir,
        log: c.log.child({ hostId: c.hostId }),
        ...(c.speed !== undefined ? { speed: c.speed } : {}),
      });
    }
  }
}

/** The line an agent prints on start: what runs, against what, where its state is. */
export function startLine(
  who: string,
  o: { hostId: string; driver: Driver; natsUrl: string; stateDir: string; metricsUrl?: string | undefined },
): string {
  const what =
    o.driver === 'sim' ? 'SIMULATED host (sim driver: nothing on this machine changes)' : `${o.driver} driver`;
  const metrics = o.metricsUrl !== undefined ? `, metrics ${o.metricsUrl}/metrics` : '';
  return `${who} ${o.hostId}: ${what}, NATS ${o.natsUrl}, state ${o.stateDir}${metrics}\n`;
}

/** The file in a host's state dir that holds the nkey seed the host made itself (0600). */
export const hostSeedFile = (stateDir: string) => path.join(stateDir, 'nats.nk');

/**
 * `<hostId> <publicKey>` of the host's own NATS identity, the seed made on first use and never
 * printed: what the operator hands to `refit enroll --from`.
 */
export function enrollRequest(hostId: string, stateDir: string): string {
  return `${hostId} ${ensureSeed(hostSeedFile(stateDir))}`;
}
