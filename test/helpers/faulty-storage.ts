// FaultyStorage: a Storage wrapper for the fault suite, after kopia's
// storagetesting faulty storage and restic's mock / error-injecting backends.
// With a seeded RNG it fails, delays, truncates or corrupts a chosen fraction
// of calls, selected per operation (get/put/list/has/delete) and key prefix
// (chunks/, manifests/, vault.json, locks/), and counts what it injected.
//
// Faults (what a real backend, after its adapter, can hand the core):
//   transient   TransientStorageError before the call reaches the store: 500
//               InternalError, 503 SlowDown, ECONNRESET, or (get) a body the
//               adapter saw end early
//   throttle    ThrottledError (the provider's rate limit)
//   lost-reply  put/delete: the call reached the store and took effect, then
//               the reply was lost (TransientStorageError); the caller cannot
//               tell it from `transient`
//   permanent   PermanentError (403 AccessDenied, EIO): not retried
//   delay       the call is held for a few ms, then proceeds
//   truncate    get: a prefix of the object is returned as if whole (a cut
//               body nobody noticed); put: a prefix is stored and success
//               reported (a torn write); list: the listing breaks off part-way
//               with a TransientStorageError
//   corrupt     get: one bit flipped in the returned copy (the stored object
//               is never altered); put: one bit flipped in what is stored
//               (bit rot at rest) and success reported
//
// Determinism: each (operation, key class) pair draws from its own stream of
// the seeded RNG, so the n-th get of a chunk gets the same decision whatever
// the interleaving with other classes. Concurrent calls of one class may take
// their turns in a different order from run to run, and the vault's own keys
// (chunk ids, backup ids) are random per vault, so a seed replays the fault
// pattern, not the exact objects.
//
// localRoot is hidden unless `exposeLocalRoot` is set: the chunk-pool workers
// then cannot write or read the vault's files themselves and hand every sealed
// chunk to the main thread, which stores it through this wrapper (backups), and
// restores read through it on the main thread. With localRoot exposed, chunk
// writes and restore reads of a local vault bypass every injected fault.
// Any other method of the wrapped storage (e.g. a backend's housekeeping) and
// any extra argument (e.g. a future `get(key, { maxBytes })`) is passed
// through untouched.
import type { ObjectWriter, Storage, StoredObject } from '../../functions/core/ports.ts';
import { PermanentError, ThrottledError, TransientStorageError } from '../../functions/core/errors.ts';
import { SeededRandom } from './seeded-random.ts';

export type StorageOp = 'get' | 'put' | 'list' | 'has' | 'delete';
export const STORAGE_OPS: readonly StorageOp[] = ['get', 'put', 'list', 'has', 'delete'];

export type FaultKind = 'transient' | 'throttle' | 'lost-reply' | 'permanent' | 'delay' | 'truncate' | 'corrupt';
export const FAULT_KINDS: readonly FaultKind[] = ['transient', 'throttle', 'lost-reply', 'permanent', 'delay', 'truncate', 'corrupt'];

/** Which faults make sense for which operation. */
const APPLICABLE: Record<StorageOp, ReadonlySet<FaultKind>> = {
  get: new Set(['transient', 'throttle', 'permanent', 'delay', 'truncate', 'corrupt']),
  put: new Set(['transient', 'throttle', 'lost-reply', 'permanent', 'delay', 'truncate', 'corrupt']),
  list: new Set(['transient', 'throttle', 'permanent', 'delay', 'truncate']),
  has: new Set(['transient', 'throttle', 'permanent', 'delay']),
  delete: new Set(['transient', 'throttle', 'lost-reply', 'permanent', 'delay']),
};

/** The key classes faults are selected by; any other key is class "other". */
export const KEY_CLASSES = ['packs/', 'index/', 'chunks/', 'manifests/', 'vault.json', 'locks/'] as const;
export type KeyClass = (typeof KEY_CLASSES)[number] | 'other';

export function keyClass(key: string): KeyClass {
  for (const c of KEY_CLASSES) if (key.startsWith(c)) return c;
  return 'other';
}

export interface FaultRule {
  /** Operations the rule applies to. @default every operation */
  readonly ops?: readonly StorageOp[];
  /**
   * Key prefixes the rule applies to (for list: the listed prefix), e.g. ['chunks/', 'vault.json'].
   * @default every key
   */
  readonly prefixes?: readonly string[];
  /** Fraction of the matching calls that get a fault, 0..1. */
  readonly rate: number;
  /** The faults to choose from, with relative weights; a fault that does not apply to the operation is never chosen. */
  readonly kinds: Partial<Record<FaultKind, number>>;
}

export interface FaultyStorageOptions {
  readonly seed: number;
  /** The first rule matching a call's operation and key decides for it. */
  readonly rules: readonly FaultRule[];
  /** Range of injected delays in ms. @default [1, 15] */
  readonly delayMs?: readonly [number, number];
  /** Pass the wrapped storage's localRoot through (see the header). @default false */
  readonly exposeLocalRoot?: boolean;
}

export interface InjectedFault {
  seq: number;
  op: StorageOp;
  key: string;
  kind: FaultKind;
  detail: string;
}

export interface FaultStats {
  calls: Record<StorageOp, number>;
  injected: Record<FaultKind, number>;
  /** Injected faults per operation and kind, e.g. byOp.put['lost-reply']. */
  byOp: Record<StorageOp, Partial<Record<FaultKind, number>>>;
}

function zeroes<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
}

const TRANSIENT_CAUSES = [
  { text: '500 InternalError: We encountered an internal error. Please try again.', name: 'InternalError', status: 500 },
  { text: '503 SlowDown: Please reduce your request rate.', name: 'SlowDown', status: 503 },
  { text: 'read ECONNRESET', name: 'Error', code: 'ECONNRESET' },
] as const;
const PERMANENT_CAUSES = [
  { text: '403 AccessDenied: Access Denied', name: 'AccessDenied', status: 403 },
  { text: 'EIO: i/o error', name: 'Error', code: 'EIO' },
] as const;

type Cause = { text: string; name: string; status?: number; code?: string };

function sdkLike(c: Cause): Error {
  return Object.assign(new Error(c.text), { name: c.name, code: c.code, $metadata: c.status ? { httpStatusCode: c.status } : undefined });
}

function concat(data: Uint8Array | readonly Uint8Array[]): Buffer {
  return data instanceof Uint8Array ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.concat(data as Uint8Array[]);
}

/** A copy of `data` with one bit flipped at a position drawn from `rng`. */
export function flipBit(data: Uint8Array, rng: SeededRandom): { out: Buffer; bit: number } {
  const out = Buffer.from(data); // a copy: never the caller's or the store's buffer
  const bit = Math.floor(rng.next() * out.length * 8);
  out[bit >>> 3] ^= 1 << (bit & 7);
  return { out, bit };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Decision {
  kind: FaultKind;
  rng: SeededRandom;
}

export class FaultyStorage implements Storage {
  readonly url: string;
  readonly localRoot?: string;
  readonly stats: FaultStats = {
    calls: zeroes(STORAGE_OPS),
    injected: zeroes(FAULT_KINDS),
    byOp: { get: {}, put: {}, list: {}, has: {}, delete: {} },
  };
  /** Every fault injected, in order. */
  readonly log: InjectedFault[] = [];
  /** Keys whose read was truncated or corrupted (the caller got wrong bytes). */
  readonly badReads = new Set<string>();
  /** Keys stored truncated or corrupted (damage at rest), with success reported. */
  readonly damagedAtRest = new Set<string>();
  private enabled = true;
  private rules: readonly FaultRule[];
  private seq = 0;
  private readonly streams = new Map<string, SeededRandom>();
  private readonly delayMs: readonly [number, number];

  constructor(readonly inner: Storage, readonly options: FaultyStorageOptions) {
    this.url = inner.url;
    if (options.exposeLocalRoot && inner.localRoot !== undefined) this.localRoot = inner.localRoot;
    this.delayMs = options.delayMs ?? [1, 15];
    this.rules = options.rules;
    for (const r of options.rules) {
      if (!(r.rate >= 0 && r.rate <= 1)) throw new RangeError(`FaultRule.rate: expected 0..1, got ${r.rate}`);
    }
    // Methods beyond the five (a backend's housekeeping, e.g. sweeping temporary objects) pass through.
    for (let p = Object.getPrototypeOf(inner); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
      for (const name of Object.getOwnPropertyNames(p)) {
        if (name === 'constructor' || name in this) continue;
        const v = (inner as unknown as Record<string, unknown>)[name];
        if (typeof v === 'function') {
          Object.defineProperty(this, name, { value: (...a: unknown[]) => (v as (...x: unknown[]) => unknown).apply(inner, a), enumerable: false });
        }
      }
    }
  }

  /**
   * Objects written in pieces (file:// packs) go through put() at commit, so they meet the
   * same faults as any put; the pieces are only held until then. (Not passed through to the
   * inner storage, which would write around the faults.)
   */
  async openWrite(key: string): Promise<ObjectWriter> {
    const pieces: Uint8Array[] = [];
    return {
      write: async (parts) => { pieces.push(...parts.map((p) => Uint8Array.from(p))); },
      commit: () => this.put(key, pieces),
      abort: async () => { pieces.length = 0; },
    };
  }

  /** Replaces the rules from the next call on (the RNG streams go on). */
  setRules(rules: readonly FaultRule[]): void {
    this.rules = rules;
  }

  /** Stops injecting (calls still counted); `resume` starts again. */
  pause(): void { this.enabled = false; }
  resume(): void { this.enabled = true; }

  /** Total faults injected (every kind). */
  get totalInjected(): number {
    return FAULT_KINDS.reduce((a, k) => a + this.stats.injected[k], 0);
  }

  /** Injected faults logged since `mark` (a value of `log.length`). */
  since(mark: number): InjectedFault[] {
    return this.log.slice(mark);
  }

  private decide(op: StorageOp, key: string): Decision | undefined {
    this.stats.calls[op]++;
    if (!this.enabled) return undefined;
    const rule = this.rules.find((r) =>
      (!r.ops || r.ops.includes(op)) && (!r.prefixes || r.prefixes.some((p) => key.startsWith(p))));
    if (!rule) return undefined;
    const stream = `${op}:${keyClass(key)}`;
    let rng = this.streams.get(stream);
    if (!rng) this.streams.set(stream, (rng = new SeededRandom(this.options.seed, stream)));
    // Three draws per call whatever happens, so one call's outcome never shifts the next one's.
    const hit = rng.next() < rule.rate;
    const pickSeed = rng.nextU32();
    const detailSeed = rng.nextU32();
    if (!hit) return undefined;
    const weights: Partial<Record<FaultKind, number>> = {};
    for (const [k, w] of Object.entries(rule.kinds) as [FaultKind, number][]) if (APPLICABLE[op].has(k)) weights[k] = w;
    const kind = new SeededRandom(pickSeed, 'kind').weighted(weights);
    if (!kind) return undefined;
    return { kind, rng: new SeededRandom(detailSeed, 'detail') };
  }

  private record(op: StorageOp, key: string, kind: FaultKind, detail: string): void {
    this.stats.injected[kind]++;
    this.stats.byOp[op][kind] = (this.stats.byOp[op][kind] ?? 0) + 1;
    this.log.push({ seq: ++this.seq, op, key, kind, detail });
  }

  private transient(op: StorageOp, key: string, d: Decision, lost = false): TransientStorageError | ThrottledError {
    if (d.kind === 'throttle') {
      this.record(op, key, 'throttle', '503 SlowDown (throttled)');
      return new ThrottledError(`${this.url}: ${op} ${key}: 503 SlowDown: Please reduce your request rate. (injected)`, { cause: sdkLike(TRANSIENT_CAUSES[1]) });
    }
    const c: Cause = op === 'get' && d.rng.next() < 0.25
      ? { text: 'body ended early (truncated response noticed by the adapter)', name: 'Error', code: 'ECONNRESET' }
      : d.rng.pick(TRANSIENT_CAUSES);
    this.record(op, key, lost ? 'lost-reply' : 'transient', c.text);
    return new TransientStorageError(`${this.url}: ${op} ${key}: ${c.text}${lost ? ' (after the store took effect)' : ''} (injected)`, { cause: sdkLike(c) });
  }

  private permanent(op: StorageOp, key: string, d: Decision): PermanentError {
    const c = d.rng.pick(PERMANENT_CAUSES);
    this.record(op, key, 'permanent', c.text);
    return new PermanentError(`${this.url}: ${op} ${key}: ${c.text} (injected)`, { cause: sdkLike(c) });
  }

  private async delay(op: StorageOp, key: string, d: Decision): Promise<void> {
    const ms = this.delayMs[0] + Math.floor(d.rng.next() * (this.delayMs[1] - this.delayMs[0] + 1));
    this.record(op, key, 'delay', `${ms} ms`);
    await sleep(ms);
  }

  async get(key: string, ...rest: unknown[]): Promise<Buffer> {
    const d = this.decide('get', key);
    if (d?.kind === 'transient' || d?.kind === 'throttle') throw this.transient('get', key, d);
    if (d?.kind === 'permanent') throw this.permanent('get', key, d);
    if (d?.kind === 'delay') await this.delay('get', key, d);
    const data = await (this.inner.get as (k: string, ...r: unknown[]) => Promise<Buffer>).call(this.inner, key, ...rest);
    if (d?.kind === 'truncate' && data.length > 0) {
      const keep = Math.floor(d.rng.next() * data.length);
      this.record('get', key, 'truncate', `returned ${keep} of ${data.length} bytes`);
      this.badReads.add(key);
      return Buffer.from(data.subarray(0, keep));
    }
    if (d?.kind === 'corrupt' && data.length > 0) {
      const { out, bit } = flipBit(data, d.rng);
      this.record('get', key, 'corrupt', `bit ${bit} of ${data.length * 8} flipped in the returned copy`);
      this.badReads.add(key);
      return out;
    }
    return data;
  }

  /** A ranged read: drawn from the `get` streams, with the faults of a get (a cut or flipped range). */
  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    const d = this.decide('get', key);
    if (d?.kind === 'transient' || d?.kind === 'throttle') throw this.transient('get', key, d);
    if (d?.kind === 'permanent') throw this.permanent('get', key, d);
    if (d?.kind === 'delay') await this.delay('get', key, d);
    const data = await this.inner.getRange(key, offset, length);
    if (d?.kind === 'truncate' && data.length > 0) {
      const keep = Math.floor(d.rng.next() * data.length);
      this.record('get', key, 'truncate', `returned ${keep} of ${data.length} bytes of a range`);
      this.badReads.add(key);
      return Buffer.from(data.subarray(0, keep));
    }
    if (d?.kind === 'corrupt' && data.length > 0) {
      const { out, bit } = flipBit(data, d.rng);
      this.record('get', key, 'corrupt', `bit ${bit} of ${data.length * 8} flipped in the returned range`);
      this.badReads.add(key);
      return out;
    }
    return data;
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[], ...rest: unknown[]): Promise<void> {
    const d = this.decide('put', key);
    const put = (x: Uint8Array | readonly Uint8Array[]) =>
      (this.inner.put as (k: string, v: typeof x, ...r: unknown[]) => Promise<void>).call(this.inner, key, x, ...rest);
    if (d?.kind === 'transient' || d?.kind === 'throttle') throw this.transient('put', key, d);
    if (d?.kind === 'permanent') throw this.permanent('put', key, d);
    if (d?.kind === 'delay') await this.delay('put', key, d);
    if (d?.kind === 'truncate' || d?.kind === 'corrupt') {
      const whole = concat(data);
      if (whole.length > 0) {
        let stored: Buffer;
        if (d.kind === 'truncate') {
          stored = Buffer.from(whole.subarray(0, Math.floor(d.rng.next() * whole.length)));
          this.record('put', key, 'truncate', `stored ${stored.length} of ${whole.length} bytes, reported success`);
        } else {
          const f = flipBit(whole, d.rng);
          stored = f.out;
          this.record('put', key, 'corrupt', `bit ${f.bit} of ${whole.length * 8} flipped in the stored object, reported success`);
        }
        this.damagedAtRest.add(key);
        return put(stored);
      }
    }
    await put(data);
    // A later clean write of the same key heals damage at rest.
    if (d?.kind !== 'truncate' && d?.kind !== 'corrupt') this.damagedAtRest.delete(key);
    if (d?.kind === 'lost-reply') throw this.transient('put', key, d, true);
  }

  async has(key: string, ...rest: unknown[]): Promise<boolean> {
    const d = this.decide('has', key);
    if (d?.kind === 'transient' || d?.kind === 'throttle') throw this.transient('has', key, d);
    if (d?.kind === 'permanent') throw this.permanent('has', key, d);
    if (d?.kind === 'delay') await this.delay('has', key, d);
    return (this.inner.has as (k: string, ...r: unknown[]) => Promise<boolean>).call(this.inner, key, ...rest);
  }

  async delete(key: string, ...rest: unknown[]): Promise<void> {
    const d = this.decide('delete', key);
    if (d?.kind === 'transient' || d?.kind === 'throttle') throw this.transient('delete', key, d);
    if (d?.kind === 'permanent') throw this.permanent('delete', key, d);
    if (d?.kind === 'delay') await this.delay('delete', key, d);
    await (this.inner.delete as (k: string, ...r: unknown[]) => Promise<void>).call(this.inner, key, ...rest);
    this.damagedAtRest.delete(key);
    if (d?.kind === 'lost-reply') throw this.transient('delete', key, d, true);
  }

  async *list(prefix: string, ...rest: unknown[]): AsyncIterable<StoredObject> {
    const d = this.decide('list', prefix);
    if (d?.kind === 'transient' || d?.kind === 'throttle') throw this.transient('list', prefix, d);
    if (d?.kind === 'permanent') throw this.permanent('list', prefix, d);
    if (d?.kind === 'delay') await this.delay('list', prefix, d);
    const it = (this.inner.list as (p: string, ...r: unknown[]) => AsyncIterable<StoredObject>).call(this.inner, prefix, ...rest);
    if (d?.kind !== 'truncate') {
      yield* it;
      return;
    }
    // The listing breaks off after a few objects (a reset between pages).
    const limit = Math.floor(d.rng.next() * 8);
    let n = 0;
    for await (const o of it) {
      if (n === limit) break;
      n++;
      yield o;
    }
    this.record('list', prefix, 'truncate', `listing broke off after ${n} objects`);
    throw new TransientStorageError(`${this.url}: list ${prefix}: read ECONNRESET after ${n} objects (injected)`, { cause: sdkLike(TRANSIENT_CAUSES[2]) });
  }
}

/** Adds up the stats of several wrappers (for the suite's figures). */
export function sumStats(all: readonly FaultyStorage[]): FaultStats {
  const s: FaultStats = { calls: zeroes(STORAGE_OPS), injected: zeroes(FAULT_KINDS), byOp: { get: {}, put: {}, list: {}, has: {}, delete: {} } };
  for (const f of all) {
    for (const op of STORAGE_OPS) {
      s.calls[op] += f.stats.calls[op];
      for (const [k, n] of Object.entries(f.stats.byOp[op]) as [FaultKind, number][]) s.byOp[op][k] = (s.byOp[op][k] ?? 0) + n;
    }
    for (const k of FAULT_KINDS) s.injected[k] += f.stats.injected[k];
  }
  return s;
}
