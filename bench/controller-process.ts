import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker } from '@temporalio/worker';
import { loadConfig } from '../workers/config.js';
import { startControllerWorker, type ControllerTuning } from '../workers/controller.js';
import { createLogger } from '../workers/log.js';
import { untilStopSignal } from '../workers/host/host-process.js';
import { benchActivities } from './activities.js';
import { announce } from './child.js';
import { BENCH_TASK_QUEUE } from './names.js';

/*
 * Child process of the bench: the real controller worker and, beside it in the same process, the
 * bench's baseline worker on its own task queue. REFIT_HOME names the bench's stack.
 */

const here = path.dirname(fileURLToPath(import.meta.url));
const config = loadConfig();
const log = createLogger('refit-bench-controller');
// The bench's --controller-worker settings, if any.
const tuning = JSON.parse(process.env.REFIT_BENCH_CONTROLLER_TUNING ?? '{}') as ControllerTuning;
const controller = await startControllerWorker(config, log, { tuning });
if (Object.keys(tuning).length > 0) log.info({ tuning }, 'controller worker settings from the bench');
const connection = await NativeConnection.connect({ address: config.temporalAddress });
const baseline = await Worker.create({
  connection,
  namespace: config.temporalNamespace,
  taskQueue: BENCH_TASK_QUEUE,
  workflowsPath: path.join(here, 'workflows.js'),
  activities: benchActivities,
  // The controller's setting, so both workers poll the same way.
  maxConcurrentActivityTaskExecutions: 2_000,
});
const baselineRunning = baseline.run();
announce({ taskQueue: config.taskQueue, benchTaskQueue: BENCH_TASK_QUEUE });

await untilStopSignal();
baseline.shutdown();
await Promise.all([baselineRunning, controller.shutdown()]);
await connection.close();
process.exit(0);
