#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { createLogger } from '../log.js';
import { parseLabels, startSimHost, untilStopSignal, type SimHostOptions } from '../host/host-process.js';

/**
 * One simulated host worker as its own process, for tests that kill and restart it:
 * `node dist/workers/sim/run-host.js --id h1 --url nats://… --creds h1.nk --state-dir dir [--speed x]`.
 */
const { values } = parseArgs({
  options: {
    id: { type: 'string' },
    url: { type: 'string' },
    creds: { type: 'string' },
    'state-dir': { type: 'string' },
    labels: { type: 'string', default: '' },
    'presence-interval': { type: 'string' },
    speed: { type: 'string' },
    'reboot-pause': { type: 'string' },
  },
});

function required(name: 'id' | 'url' | 'creds' | 'state-dir'): string {
  const value = values[name];
  if (value === undefined) {
    process.stderr.write(`run-sim-host: --${name} is required\n`);
    process.exit(2);
  }
  return value;
}

const hostId = required('id');
const log = createLogger('refit-host', { hostId, simulated: true });
const options: SimHostOptions = {
  hostId,
  natsUrl: required('url'),
  credsFile: required('creds'),
  stateDir: required('state-dir'),
  labels: parseLabels(values.labels),
  log,
};
const presenceIntervalMs = positive('presence-interval');
if (presenceIntervalMs !== undefined) options.presenceIntervalMs = presenceIntervalMs;
const speed = positive('speed');
if (speed !== undefined) options.speed = speed;
const rebootPauseMs = positive('reboot-pause');
if (rebootPauseMs !== undefined) options.rebootPauseMs = rebootPauseMs;

function positive(name: 'presence-interval' | 'speed' | 'reboot-pause'): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const n = Number(text);
  if (Number.isFinite(n) && n > 0) return n;
  process.stderr.write(`run-sim-host: --${name} must be a number above 0, not "${text}"\n`);
  process.exit(2);
}

try {
  const host = await startSimHost(options);
  process.stderr.write(`run-sim-host: SIMULATED host ${hostId} running (pid ${process.pid})\n`);
  await untilStopSignal();
  await host.stop();
} catch (err) {
  log.error({ err }, 'simulated host failed');
  process.exitCode = 1;
}
