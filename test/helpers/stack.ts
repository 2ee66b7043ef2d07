import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { inject } from 'vitest';
import { readIdentities } from '../../workers/dev/credentials.js';
import { enrollHosts } from '../../workers/dev/enroll.js';
import { controllerIdentity } from '../../workers/dev/stack.js';
import { IDENTITIES } from '../../schemas/names.js';
import { credsFile } from '../../workers/config.js';
import { connectNats, identityOfHost } from '../../workers/nats.js';
import type { ProvidedStack } from '../setup/global-stack.js';

export interface TestStack extends ProvidedStack {
  /** A connection with the controller's credentials (may do anything). */
  controllerConnection(): Promise<NatsConnection>;
  /** A connection with the host's own credentials; enrolls the host first if it has none. */
  connectAsHost(hostId: string): Promise<NatsConnection>;
  /** A connection with the CLI's credentials (reads; cannot send commands). */
  connectAsCli(): Promise<NatsConnection>;
  /** Close every connection opened through this object: `afterAll(() => stack.closeAll())`. */
  closeAll(): Promise<void>;
}

/** The run's shared stack (started by test/setup/global-stack.ts), with connections as each identity. */
export function testStack(): TestStack {
  const provided = inject('stack');
  const open = new Set<NatsConnection>();
  const track = async (connecting: Promise<NatsConnection>) => {
    const nc = await connecting;
    open.add(nc);
    void nc.closed().then(() => open.delete(nc));
    return nc;
  };
  return {
    ...provided,
    controllerConnection: () => track(connectNats(controllerIdentity(provided.home, provided.natsUrl))),
    connectAsCli: () =>
      track(
        connectNats({
          url: provided.natsUrl,
          credsFile: credsFile(provided.home, IDENTITIES.cli),
          identity: IDENTITIES.cli,
        }),
      ),
    connectAsHost: async (hostId) => {
      if (readIdentities(provided.home)[identityOfHost(hostId)] === undefined)
        await enrollHosts(provided.home, [hostId]);
      return track(
        connectNats({
          url: provided.natsUrl,
          credsFile: credsFile(provided.home, { host: hostId }),
          identity: identityOfHost(hostId),
        }),
      );
    },
    closeAll: async () => {
      await Promise.all([...open].map((nc) => nc.close()));
    },
  };
}

/** A host id no other test uses, so tests sharing the stack never see each other's commands. */
export function uniqueHostId(prefix = 'host'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}
