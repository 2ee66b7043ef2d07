import path from 'node:path';
import type { Logger } from 'pino';
import type { Labels } from '../schemas/common.js';
import { enrollHosts } from '../workers/dev/enroll.js';
import { credsFile } from '../workers/config.js';
import { startHost, type RunningHost } from '../workers/host/host-process.js';
import { createLabDriver, type LabDriver } from '../activities/host/lab/driver.js';
import type { LabConfirmation } from '../activities/host/lab/environment.js';
import type { LabState } from '../activities/host/lab/state.js';

export interface LabWorkersOptions {
  lab: LabState;
  /** REFIT_HOME of the stack: where `refit dev` keeps the NATS credentials. */
  home: string;
  natsUrl: string;
  log: Logger;
  labels?: Labels;
  presenceIntervalMs?: number;
  confirm?: LabConfirmation;
}

export interface LabWorkers {
  drivers: Map<string, LabDriver>;
  stop(): Promise<void>;
}

/**
 * One host worker per lab host, each with the lab driver and its own NATS identity (enrolled
 * with `refit dev` credentials when it has none yet). Journal and driver state live in <lab>/agents/<host>.
 */
export async function startLabWorkers(o: LabWorkersOptions): Promise<LabWorkers> {
  await enrollHosts(
    o.home,
    o.lab.hosts.map((h) => h.id),
  );
  const drivers = new Map<string, LabDriver>();
  const running: RunningHost[] = [];
  const stop = async () => {
    for (const host of running.splice(0)) await host.stop();
  };
  try {
    for (const host of o.lab.hosts) {
      const stateDir = path.join(o.lab.labDir, 'agents', host.id);
      const log = o.log.child({ hostId: host.id, driver: 'lab' });
      const driver = await createLabDriver({
        hostId: host.id,
        labDir: o.lab.labDir,
        stateDir,
        log,
        ...(o.confirm ? { confirm: o.confirm } : {}),
      });
      drivers.set(host.id, driver);
      running.push(
        await startHost({
          hostId: host.id,
          natsUrl: o.natsUrl,
          credsFile: credsFile(o.home, { host: host.id }),
          driver,
          labels: { role: 'hypervisor', lab: 'lab', ...o.labels },
          stateDir,
          log,
          ...(o.presenceIntervalMs !== undefined ? { presenceIntervalMs: o.presenceIntervalMs } : {}),
        }),
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { drivers, stop };
}
