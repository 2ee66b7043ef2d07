import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { CommandStatus } from '../../schemas/command.js';
import type { HostPresence } from '../../schemas/host.js';
import type { Logger } from 'pino';
import { createRecordAudit } from './audit.js';
import { createSendNotification } from './notify.js';
import { createVerifyOperatorAction } from './operators.js';
import type { BucketFollower } from './bucket-follower.js';
import { createDispatchStep } from './dispatch.js';
import { createDispatchRun } from './dispatch-run.js';
import { leanTargets, offlineAmong, selectTargets } from './inventory.js';
import { createLeases } from './leases.js';
import { createAwaitReboot } from './reboot.js';
import type { ControllerActivities } from '../../schemas/activities.js';
import { measuredStep, type StepMetrics } from '../step-metrics.js';

export interface ControllerDeps {
  nc: NatsConnection;
  results: BucketFollower<typeof CommandStatus>;
  presence: BucketFollower<typeof HostPresence>;
  leases: KV;
  ensureHostConsumer: (hostId: string) => Promise<void>;
  log: Logger;
  /** Counts and times each dispatched step's attempts (the controller's /metrics). */
  stepMetrics?: StepMetrics;
}

/** The controller-side activities over injected ports; only workers/ builds the real ones. */
export function createControllerActivities(deps: ControllerDeps): ControllerActivities {
  const leases = createLeases(deps.leases);
  const dispatchStep = createDispatchStep(deps);
  const recordAudit = createRecordAudit(deps);
  return {
    acquireLease: (req) => leases.acquireLease(req),
    releaseLease: (req) => leases.releaseLease(req),
    dispatchStep: (req) => measuredStep(deps.stepMetrics, req, () => dispatchStep(req)),
    dispatchRun: createDispatchRun({ ...deps, recordAudit }),
    awaitReboot: createAwaitReboot(deps),
    resolveTargets: async (targets, labelKeys) => {
      const resolved = selectTargets(deps.presence.values(), targets);
      return labelKeys === undefined ? resolved : leanTargets(resolved, labelKeys);
    },
    findOffline: async ({ hostIds }) => offlineAmong(deps.presence.values(), hostIds),
    recordAudit,
    sendNotification: createSendNotification({ recordAudit, log: deps.log }),
    verifyOperatorAction: createVerifyOperatorAction(deps),
  };
}
