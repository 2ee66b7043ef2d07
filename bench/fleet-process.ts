import { IDENTITIES } from '../schemas/names.js';
import { credsFile, loadConfig } from '../workers/config.js';
import { untilStopSignal } from '../workers/host/host-process.js';
import { startSimFleet, type SimFleetOptions } from '../workers/sim/fleet.js';
import { createLogger } from '../workers/log.js';
import { connectNats } from '../workers/nats.js';
import { announce } from './child.js';

/** What the bench asks of a simulated fleet; passed as JSON in argv[2]. */
export interface FleetSpec {
  hosts: number;
  prefix: string;
  stateDir: string;
  stepMs?: SimFleetOptions['stepMs'];
  stepCommand?: readonly string[];
  rebootPauseMs?: number;
  presenceIntervalMs?: number;
  /** Also answer raw NATS requests on this subject, for the request/reply baseline. */
  echoSubject?: string;
}

/** Child process of the bench: a SIMULATED fleet, each host with its own NATS identity and host worker. */
const spec = JSON.parse(process.argv[2] ?? '{}') as FleetSpec;
const config = loadConfig();
const log = createLogger('refit-bench-fleet', { simulated: true });
const { echoSubject, ...fleetSpec } = spec;
const fleet = await startSimFleet({ ...fleetSpec, home: config.home, natsUrl: config.natsUrl, log });

const echo =
  echoSubject === undefined
    ? undefined
    : await connectNats({
        url: config.natsUrl,
        credsFile: credsFile(config.home, IDENTITIES.controller),
        identity: IDENTITIES.controller,
      });
echo?.subscribe(echoSubject ?? '', {
  callback: (_err, msg) => {
    msg.respond(msg.data);
  },
});
announce({ hostIds: fleet.hostIds });

try {
  await Promise.race([untilStopSignal(), fleet.lost]);
} catch (err) {
  // NATS lost for longer than the connect bound: exit 1 as `refit sim-fleet` does.
  log.error({ err }, 'simulated fleet stopped: NATS lost');
  process.exit(1);
}
await echo?.drain();
await fleet.stop();
process.exit(0);
