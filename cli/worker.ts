import type { Command } from 'commander';
import { loadConfig } from '../workers/config.js';
import { startControllerWorker } from '../workers/controller.js';
import { createLogger } from '../workers/log.js';

export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description(
      'run the controller worker: the workflows and the activities that reach hosts over NATS; waits for Temporal and NATS at start up to REFIT_CONNECT_TIMEOUT (default 5m)',
    )
    .option('--task-queue <name>', 'Temporal task queue (REFIT_TASK_QUEUE)')
    .action(async (opts: { taskQueue?: string }) => {
      const config = loadConfig(opts.taskQueue ? { taskQueue: opts.taskQueue } : {});
      const log = createLogger('refit-controller');
      const controller = await startControllerWorker(config, log);
      process.stderr.write(
        `refit controller worker: Temporal ${config.temporalAddress} queue ${config.taskQueue}, NATS ${config.natsUrl}\n`,
      );
      const stop = () => void controller.shutdown();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await controller.running;
    });
}
