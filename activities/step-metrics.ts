/** How a step ended, as metrics count it. `error`: the attempt ended otherwise (it is retried, or it gave up). */
export type StepMetricOutcome = 'succeeded' | 'failed' | 'cancelled' | 'error';

/** Where a step that ended is counted (workers/metrics builds the real one; tests and the bench may leave it out). */
export interface StepMetrics {
  stepEnded(step: { kind: string; mode: string; outcome: StepMetricOutcome; seconds: number }): void;
}

/** The outcome of an attempt that threw: a host's failed or cancelled answer, or anything else. */
export function outcomeOfError(err: unknown): StepMetricOutcome {
  const e = err as { name?: string; type?: string };
  if (e.name === 'CancelledFailure' || e.name === 'StepCancelledError') return 'cancelled';
  if (e.type === 'StepFailed' || e.name === 'StepFailedError') return 'failed';
  return 'error';
}

/** `run`, timed and counted under the step's kind and mode. */
export async function measuredStep<T>(
  metrics: StepMetrics | undefined,
  step: { kind: string; mode: string },
  run: () => Promise<T>,
): Promise<T> {
  if (metrics === undefined) return run();
  const started = performance.now();
  const ended = (outcome: StepMetricOutcome) =>
    metrics.stepEnded({ ...step, outcome, seconds: (performance.now() - started) / 1000 });
  try {
    const result = await run();
    ended('succeeded');
    return result;
  } catch (err) {
    ended(outcomeOfError(err));
    throw err;
  }
}
