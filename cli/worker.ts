import type { Command } from 'commander';
import { UsageError } from '../schemas/errors.js';
import { loadConfig } from '../workers/config.js';
import { startControllerWorker } from '../workers/controller.js';
import { createLogger } from '../workers/log.js';
import { CONTROLLER_METRICS_LISTEN, InvalidListenAddressError, metricsListen } from '../workers/metrics/listen.js';
import { MetricsListenError } from '../workers/metrics/server.js';

export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description(
      'run the controller worker: the workflows and the activities that reach hosts over NATS; waits for Temporal and NATS at start up to REFIT_CONNECT_TIMEOUT (default 5m)',
    )
    .option('--task-queue <name>', 'Temporal task queue (REFIT_TASK_QUEUE)')
    .option(
      '--metrics-listen <host:port>',
      `serve /metrics and /healthz there, or off (REFIT_METRICS_LISTEN; default ${CONTROLLER_METRICS_LISTEN}; port 0 takes a free port)`,
    )
    .action(async (opts: { taskQueue?: string; metricsListen?: string }) => {
      const config = loadConfig(opts.taskQueue ? { taskQueue: opts.taskQueue } : {});
      let metrics;
      try {
        metrics = metricsListen(opts.metricsListen, process.env, CONTROLLER_METRICS_LISTEN);
      } catch (err) {
        if (err instanceof InvalidListenAddressError) throw new UsageError(err.message);
        throw err;
      }
      const log = createLogger('refit-controller');
      const controller = await startControllerWorker(config, log, { metrics }).catch((err: unknown) => {
        if (err instanceof MetricsListenError) throw new UsageError(err.message, 1);
        throw err;
      });
      const served = controller.metricsUrl !== undefined ? `, metrics ${controller.metricsUrl}/metrics` : '';
      process.stderr.write(
        `refit controller worker: Temporal ${config.temporalAddress} queue ${config.taskQueue}, NATS ${config.natsUrl}${served}\n`,
      );
      const stop = () => void controller.shutdown();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await controller.running;
    });
}
