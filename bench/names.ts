/** The task queue of the bench's baseline worker (the controller keeps its own). */
export const BENCH_TASK_QUEUE = 'refit-bench';

/** Core NATS subject of the raw request/reply baseline. */
export const ECHO_SUBJECT = 'bench.echo';
