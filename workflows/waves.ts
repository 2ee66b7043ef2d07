import type { Plan } from '../schemas/plan.js';

/** Hosts per wave for a wave size given as count or percentage of the whole target set. */
export function resolveCount(value: number | string, total: number): number {
  if (typeof value === 'number') return value;
  return Math.max(1, Math.ceil((Number.parseInt(value, 10) / 100) * total));
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
