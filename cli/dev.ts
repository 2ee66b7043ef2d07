import { InvalidArgumentError, type Command } from 'commander';
import { natsNodes, readStackFile, refitHome } from '../workers/config.js';
import { enrollHosts } from '../workers/dev/enroll.js';
import {
  CLUSTER_REPLICAS,
  CLUSTER_SIZES,
  DEFAULT_PORTS,
  startStack,
  stackStatus,
  stopStack,
  type ComponentStatus,
  type StackOptions,
} from '../workers/dev/stack.js';
import { tableLines } from './table.js';
import { integerBetween } from './numeric-options.js';

const parsePort = integerBetween(1, 65535, 'a port number');

interface UpOptions {
  tls?: boolean;
  temporalPort: number;
  temporalUiPort: number;
  natsPort: number;
  natsMonitorPort: number;
  natsRoutePort: number;
  natsCluster?: number;
}

function clusterSize(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !(CLUSTER_SIZES as readonly number[]).includes(n))
    throw new InvalidArgumentError(`Expected ${CLUSTER_SIZES.join(' or ')} nodes.`);
  return n;
}

/** `refit dev up|status|down|enroll`: the embedded Temporal and NATS stack on this machine. */
export function registerDevCommands(program: Command): void {
  const dev = program.command('dev').description('run the embedded Temporal and NATS stack on this machine');

  dev
    .command('up')
    .description('start Temporal and NATS (or report the ones already running)')
    .option('--temporal-port <port>', 'Temporal gRPC port', parsePort, DEFAULT_PORTS.temporal)
    .option('--temporal-ui-port <port>', 'Temporal web UI port', parsePort, DEFAULT_PORTS.temporalUi)
    .option('--nats-port <port>', 'NATS client port', parsePort, DEFAULT_PORTS.nats)
    .option('--nats-monitor-port <port>', 'NATS monitoring port', parsePort, DEFAULT_PORTS.natsMonitor)
    .option(
      '--nats-cluster <nodes>',
      `run a NATS cluster of ${CLUSTER_SIZES.join(' or ')} nodes, streams and buckets at ${CLUSTER_REPLICAS} replicas; node n takes the ports after the first node's`,
      clusterSize,
    )
    .option('--nats-route-port <port>', "the first cluster node's route port", parsePort, DEFAULT_PORTS.natsRoute)
    .option('--tls', 'serve NATS and Temporal over TLS with a local CA under <home>/tls, client certificates required')
    .action(async (opts: UpOptions) => {
      const home = refitHome();
      const before = readStackFile(home);
      const options: StackOptions = {
        home,
        temporalPort: opts.temporalPort,
        temporalUiPort: opts.temporalUiPort,
        natsPort: opts.natsPort,
        natsMonitorPort: opts.natsMonitorPort,
        natsRoutePort: opts.natsRoutePort,
        natsCluster: opts.natsCluster,
        tls: opts.tls === true,
      };
      const stack = await startStack(options);
      const already = before?.startedAt === stack.startedAt;
      console.log(already ? `refit dev stack already running (since ${stack.startedAt})` : 'refit dev stack is up');
      console.log(`  Temporal      ${stack.temporal.address}`);
      console.log(`  Temporal UI   ${stack.temporal.uiAddress}`);
      const nodes = natsNodes(stack);
      if (nodes.length === 1) console.log(`  NATS          ${stack.nats.url}`);
      else {
        console.log(
          `  NATS cluster  ${nodes.length} nodes, streams and buckets at ${stack.nats.replicas ?? 1} replicas`,
        );
        for (const n of nodes) console.log(`    ${n.name.padEnd(11)} ${n.url} (monitor ${n.monitorUrl})`);
      }
      if (stack.tls !== undefined)
        console.log(
          `  TLS           CA ${stack.tls.nats.caFile}, client pair beside it (every refit command of this home uses them)`,
        );
      else if (opts.tls === true)
        console.log(
          '  TLS           NOT ON: the stack already ran without TLS; `refit dev down` first to restart it with --tls',
        );
      console.log(`  state         ${home} (logs/, creds/, stack.json)`);
    });

  dev
    .command('status')
    .description('show whether Temporal and NATS run and answer')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const status = await stackStatus(refitHome());
      if (opts.json === true) {
        console.log(JSON.stringify(status, null, 2));
        return;
      }
      if (!status.started) {
        console.log(`no stack in ${status.home} (start one with \`refit dev up\`)`);
        return;
      }
      console.log(`${status.healthy ? 'healthy' : 'NOT healthy'} — state in ${status.home}`);
      const rows = [
        ...(status.temporal !== undefined ? [cells('Temporal', status.temporal, `UI ${status.temporal.uiUrl}`)] : []),
        ...(status.nats?.nodes ?? []).map((n) =>
          cells(status.nats?.nodes.length === 1 ? 'NATS' : `NATS ${n.name}`, n, `monitor ${n.monitorUrl}`),
        ),
      ];
      for (const line of tableLines(rows, { indent: '  ' })) console.log(line);
    });

  dev
    .command('down')
    .description('stop Temporal and NATS; their state stays in the home directory')
    .action(async () => {
      const home = refitHome();
      const running = readStackFile(home) !== undefined;
      await stopStack(home);
      console.log(running ? `stopped the stack in ${home}` : `no stack running in ${home}`);
    });

  dev
    .command('enroll')
    .description('give hosts NATS credentials and a command queue')
    .argument('<hostId...>', 'host ids (DNS labels)')
    .action(async (hostIds: string[]) => {
      const home = refitHome();
      const result = await enrollHosts(home, hostIds);
      console.log(
        `enrolled ${hostIds.length} host(s), ${result.added.length} new; credentials in ${home}/creds/hosts/`,
      );
      if (!result.live) console.log('the stack is not running: the hosts can connect after `refit dev up`');
    });
}

function cells(name: string, c: ComponentStatus, extra: string): string[] {
  const state = !c.alive ? 'not running' : c.answering ? 'answering' : 'running, not answering';
  return [name, c.address, `pid ${c.pid}`, state, extra];
}
