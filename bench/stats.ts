export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}

/** Nearest-rank percentiles of samples in milliseconds. */
export function percentiles(samples: readonly number[]): Percentiles {
  const sorted = samples.filter(Number.isFinite).sort((a, b) => a - b);
  const rank = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
  return {
    n: sorted.length,
    p50: round(rank(50) ?? NaN, 3),
    p90: round(rank(90) ?? NaN, 3),
    p99: round(rank(99) ?? NaN, 3),
    mean: round(sorted.length === 0 ? NaN : sorted.reduce((a, b) => a + b, 0) / sorted.length, 3),
  };
}

export function median(samples: readonly number[]): number {
  return percentiles(samples).p50;
}

/** Rounded for the JSON file: three significant decimals are all the noise allows. */
export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
