import type { Plan } from '../schemas/plan.js';

/** A count given as a number or as a percentage of the whole target set; a non-zero percentage is at least 1. */
export function resolveCount(value: number | string, total: number): number {
  if (typeof value === 'number') return value;
  const pct = Number.parseInt(value, 10);
  return pct === 0 ? 0 : Math.max(1, Math.ceil((pct / 100) * total));
}

/** Cut hosts into waves: the canary alone first, then batches. Pure. */
export function planWaves(hostIds: readonly string[], waves: Plan['waves']): string[][] {
  const out: string[][] = [];
  const canary = Math.min(waves.canary, hostIds.length);
  if (canary > 0) out.push(hostIds.slice(0, canary));
  const size = resolveCount(waves.batchSize, hostIds.length);
  for (let i = canary; i < hostIds.length; i += size) out.push(hostIds.slice(i, i + size));
  return out;
}
