// A small seeded PRNG (sfc32, seeded through splitmix32) for the fault suite:
// the same seed gives the same sequence on every machine, so a failing trial
// can be replayed from the seed it prints. Not for anything secret.

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** A 32-bit hash of a string (FNV-1a), to derive independent streams from one seed. */
export function hash32(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export class SeededRandom {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** `stream` names an independent sequence derived from the same seed (e.g. "get:chunks/"). */
  constructor(readonly seed: number, stream = '') {
    const init = splitmix32(hash32(stream, seed >>> 0) ^ Math.imul(seed >>> 0, 0x27d4eb2d));
    this.a = init(); this.b = init(); this.c = init(); this.d = init();
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 0x1_0000_0000;
  }

  /** Integer in [min, max] (inclusive). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** Picks a key with probability proportional to its weight (weights > 0). */
  weighted<K extends string>(weights: Partial<Record<K, number>>): K | undefined {
    const entries = Object.entries(weights).filter(([, w]) => typeof w === 'number' && w > 0) as [K, number][];
    const total = entries.reduce((a, [, w]) => a + w, 0);
    if (total === 0) return undefined;
    let x = this.next() * total;
    for (const [k, w] of entries) {
      x -= w;
      if (x < 0) return k;
    }
    return entries[entries.length - 1][0];
  }

  /** `n` pseudo-random bytes. */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) out.writeUInt32LE(this.nextU32(), i);
    if (i < n) {
      const last = this.nextU32();
      for (let j = 0; i < n; i++, j++) out[i] = (last >>> (8 * j)) & 0xff;
    }
    return out;
  }

  /** A child generator with its own sequence (stable whatever else draws from this one). */
  fork(stream: string): SeededRandom {
    return new SeededRandom(this.seed, stream);
  }
}

/**
 * The suite's base seed: $MEMVAULT_FAULT_SEED (to replay or explore), else a fixed default so
 * `npm test` is reproducible.
 */
export function baseSeed(fallback = 20260901): number {
  const v = process.env.MEMVAULT_FAULT_SEED;
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new Error(`MEMVAULT_FAULT_SEED: expected an integer 0..4294967295, got "${v}"`);
  return n;
}
