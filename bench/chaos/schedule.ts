/** What the chaos run kills: the controller worker, the simulated fleet's process and the two servers. */
export const CHAOS_TARGETS = ['controller', 'fleet', 'nats', 'temporal'] as const;
export type ChaosTarget = (typeof CHAOS_TARGETS)[number];

export interface Kill {
  /** 1-based. */
  n: number;
  target: ChaosTarget;
  /** How long after the previous target recovered (or the rollout started) this one is killed. */
  afterMs: number;
  /** How long it stays dead before it is started again on the same ports and data. */
  downMs: number;
}

export interface ScheduleOptions {
  kills: number;
  seed: number;
  /** Bounds of `afterMs`. */
  afterMs?: readonly [number, number];
  /** Bounds of `downMs`. */
  downMs?: readonly [number, number];
}

export const DEFAULT_AFTER_MS = [500, 4_000] as const;
export const DEFAULT_DOWN_MS = [200, 3_000] as const;

/**
 * mulberry32: a small seeded PRNG, so that a seed always gives the same schedule. Returns numbers
 * in [0, 1).
 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * The kills of a run, in order. Targets come in shuffled rounds of all four, so every target is hit
 * about as often as the others and each at least once from four kills on; waits are uniform within
 * their bounds. Pure: the same options give the same schedule.
 */
export function chaosSchedule(o: ScheduleOptions): Kill[] {
  const random = prng(o.seed);
  const between = ([lo, hi]: readonly [number, number]) => Math.round(lo + random() * (hi - lo));
  const kills: Kill[] = [];
  let round: ChaosTarget[] = [];
  for (let n = 1; n <= o.kills; n++) {
    if (round.length === 0) round = shuffle([...CHAOS_TARGETS], random);
    const target = round.pop() as ChaosTarget;
    kills.push({
      n,
      target,
      afterMs: between(o.afterMs ?? DEFAULT_AFTER_MS),
      downMs: between(o.downMs ?? DEFAULT_DOWN_MS),
    });
  }
  return kills;
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}
