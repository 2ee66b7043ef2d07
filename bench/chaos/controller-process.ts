import { loadConfig } from '../../workers/config.js';
import { startControllerWorker } from '../../workers/controller.js';
import { createLogger } from '../../workers/log.js';
import { announce } from '../child.js';

/**
 * Child process of the chaos run: the controller worker alone, as `refit worker` runs it (a worker
 * that stops with an error exits 1). REFIT_HOME names the stack.
 */
const log = createLogger('refit-chaos-controller');
const controller = await startControllerWorker(loadConfig(), log);
const stop = () => void controller.shutdown();
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
announce({ pid: process.pid });
await controller.running;
process.exit(0);
