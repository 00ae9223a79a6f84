// The chunk index: where each chunk lives (pack, offset, length, codec).
//
// On storage: append-only index objects `index/<32 hex>`, each sealed with the
// vault's data key (AES-256-GCM, its own key as associated data), written only
// after every pack it names is durable and before any manifest that needs its
// chunks. Layout of the plaintext:
//   "MVI2" | u32 packs | packs x 16-byte pack id | u32 n | n x entry
//   entry: 32-byte chunk id | u32 pack number | u32 offset | u32 length | u8 codec
// Prune merges them (one new object with every surviving entry, then the old
// ones deleted) under the exclusive prune lock.
//
// In memory (ChunkIndex): one sorted Buffer of fixed 48-byte entries (id,
// pack number, offset, length, codec) in a SharedArrayBuffer, binary-searched,
// plus a small table of pack ids: ~48 bytes per chunk id instead of ~130 for a
// Set of hex strings, and the chunk-pool workers search the same memory.
// Entries added during a run go to a small map, merged into the sorted
// buffer every 64 Ki entries. Ids appended to a pack that is not durable yet
// are "pending": known for dedup in this run, not findable for a restore.
//
// Memory budget ($MEMVAULT_INDEX_MEMORY, default 64 MiB, i.e. ~1.4M ids in
// memory): an index whose sorted buffer would exceed it is kept instead as
// sorted runs in a local scratch file with ~2 bytes per id in memory
// (index-spill.ts): lookups of absent ids answer from memory, the others read
// the entry from the file, so "stored" is only ever said of an exact entry.
// The chunk-pool workers then get no shared buffer and seal every chunk they
// read; the main thread's lookup (writer.ts) still skips the stored ones.
// The index objects in the vault are the same either way.
import { randomBytes } from 'node:crypto';
import { ConfigError, IntegrityError, NotFoundError, errorMessage } from './errors.ts';
import { ScratchFile, SpillBuilder, SpilledRun } from './index-spill.ts';
import { open, seal } from './crypto.ts';
import type { Storage } from './ports.ts';

export const INDEX_PREFIX = 'index/';
export const ENTRY_BYTES = 48;
const MAGIC = 'MVI2';
const FILE_ENTRY = 32 + 4 + 4 + 4 + 1;
/** Largest index object read (~1.4M entries per 64 MiB). */
export const MAX_INDEX_BYTES = 128 * 1024 * 1024;
/**
 * Entries per index object prune writes (~11 MB sealed): loading decodes one object at a time,
 * so this bounds the transient memory of a load (objects of up to MAX_INDEX_BYTES still open).
 */
export const INDEX_ENTRIES_PER_OBJECT = 250_000;
/** Default memory budget of the sorted entries (MEMVAULT_INDEX_MEMORY). */
export const DEFAULT_INDEX_MEMORY = 64 * 1024 * 1024;

/** The index memory budget in bytes from MEMVAULT_INDEX_MEMORY (`64M`, `1G`, `67108864`). */
export function indexMemoryFromEnv(v = process.env.MEMVAULT_INDEX_MEMORY): number {
  if (v === undefined || v.trim() === '') return DEFAULT_INDEX_MEMORY;
  const m = /^(\d+)\s*([KMG]?)(i?B)?$/i.exec(v.trim());
  if (!m) throw new ConfigError(`MEMVAULT_INDEX_MEMORY: expected a size in bytes such as 64M or 1G, got ${JSON.stringify(v)}`);
  return Number(m[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
}

// Scratch files of indexes that were dropped without close().
const scratch = new FinalizationRegistry<ScratchFile>((f) => f.close());

export interface ChunkLoc {
  pack: string;
  offset: number;
  length: number;
  /** Codec byte of the sealed chunk (2 raw, 3 zstd). */
  kind: number;
}

export function indexKey(id: string): string {
  return `${INDEX_PREFIX}${id}`;
}

export function newObjectId(): string {
  return randomBytes(16).toString('hex');
}

export function parseIndexKey(key: string): string | null {
  const m = /^index\/([0-9a-f]{32})$/.exec(key);
  return m ? m[1] : null;
}

/** The set of ids a backup treats as stored (a ChunkIndex, or a plain Set in tests and one-off writers). */
export interface KnownChunks {
  has(id: string): boolean;
  add(id: string): unknown;
  delete(id: string): unknown;
}

/** Encodes and seals an index object for `entries` (id -> location). */
export function encodeIndexObject(dataKey: Buffer, key: string, entries: Iterable<[string, ChunkLoc]>): Buffer {
  const packNo = new Map<string, number>();
  const list: [string, ChunkLoc][] = [];
  for (const e of entries) {
    list.push(e);
    if (!packNo.has(e[1].pack)) packNo.set(e[1].pack, packNo.size);
  }
  const buf = Buffer.alloc(4 + 4 + packNo.size * 16 + 4 + list.length * FILE_ENTRY);
  let o = buf.write(MAGIC, 0, 'latin1');
  o = buf.writeUInt32LE(packNo.size, o);
  for (const p of packNo.keys()) o += Buffer.from(p, 'hex').copy(buf, o);
  o = buf.writeUInt32LE(list.length, o);
  for (const [id, l] of list) {
    o += Buffer.from(id, 'hex').copy(buf, o);
    o = buf.writeUInt32LE(packNo.get(l.pack)!, o);
    o = buf.writeUInt32LE(l.offset, o);
    o = buf.writeUInt32LE(l.length, o);
    o = buf.writeUInt8(l.kind, o);
  }
  return seal(dataKey, buf, key);
}

/** Opens an index object and calls `each` per entry. Throws an IntegrityError naming it. */
export function decodeIndexObject(dataKey: Buffer, key: string, blob: Buffer, each: (id: Buffer, pack: string, offset: number, length: number, kind: number) => void): void {
  const buf = open(dataKey, blob, key);
  const bad = (why: string): never => { throw new IntegrityError(`${key}: ${why}`, key); };
  if (buf.length < 12 || buf.toString('latin1', 0, 4) !== MAGIC) bad('not an index object');
  const np = buf.readUInt32LE(4);
  let o = 8;
  if (buf.length < o + np * 16 + 4) bad('truncated');
  const packs: string[] = [];
  for (let i = 0; i < np; i++, o += 16) packs.push(buf.toString('hex', o, o + 16));
  const n = buf.readUInt32LE(o);
  o += 4;
  if (buf.length !== o + n * FILE_ENTRY) bad('length does not match its entry count');
  for (let i = 0; i < n; i++, o += FILE_ENTRY) {
    const p = buf.readUInt32LE(o + 32);
    if (p >= np) bad(`entry ${i} names pack ${p} of ${np}`);
    each(buf.subarray(o, o + 32), packs[p], buf.readUInt32LE(o + 36), buf.readUInt32LE(o + 40), buf[o + 44]);
  }
}

/** Binary search of a sorted entry buffer: the entry number of `id`, or -1. */
export function searchEntries(buf: Buffer, count: number, id: Buffer): number {
  let lo = 0;
  let hi = count - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = buf.compare(id, 0, 32, mid * ENTRY_BYTES, mid * ENTRY_BYTES + 32);
    if (c === 0) return mid;
    if (c > 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return -1;
}

export interface IndexDamage {
  key: string;
  problem: string;
}

export class ChunkIndex implements KnownChunks {
  private buf: Buffer = Buffer.alloc(0);
  private count = 0;
  /** Bytes the sorted buffer may take before the index goes to scratch-file runs. */
  memoryBudget = Infinity;
  /** Past the budget: sorted runs in a scratch file (index-spill.ts). */
  private runs: SpilledRun[] = [];
  private file: ScratchFile | null = null;
  private readonly entry = Buffer.alloc(ENTRY_BYTES);
  private packs: string[] = [];
  private packNo = new Map<string, number>();
  /** Indexed during this run, not yet merged into `buf`. */
  private extra = new Map<string, ChunkLoc>();
  /** Appended to a pack of this run that is not indexed yet: known for dedup only. */
  private pending = new Set<string>();
  /** Index objects this index was loaded from. */
  objects: string[] = [];
  /** Index objects that did not open (their chunks are unknown). */
  damaged: IndexDamage[] = [];
  /** Packs index entries name that were not in the listing (their chunks are not counted as present). */
  missingPacks = new Set<string>();

  has(id: string): boolean {
    return this.pending.has(id) || this.extra.has(id) || this.stored(Buffer.from(id, 'hex'));
  }

  /** In the sorted buffer or a run (the entry, for a run, left in this.entry). */
  private stored(id: Buffer): boolean {
    if (searchEntries(this.buf, this.count, id) >= 0) return true;
    for (const r of this.runs) if (r.find(id, this.entry) >= 0) return true;
    return false;
  }

  /** Whether the index is kept in scratch-file runs (past its memory budget). */
  get spilled(): boolean { return this.runs.length > 0; }

  /** Bytes of memory the indexed entries take (sorted buffer, or the runs' filters; not this run's map). */
  get memory(): number {
    return this.buf.length + this.runs.reduce((s, r) => s + r.memory, 0);
  }

  /** Closes the scratch file (the index is unusable after). */
  close(): void {
    this.file?.close();
    this.runs = [];
  }
  add(id: string): void { this.pending.add(id); }
  delete(id: string): void { this.pending.delete(id); }

  /** Where an indexed chunk is (pending ones are not findable). */
  get(id: string): ChunkLoc | undefined {
    const e = this.extra.get(id);
    if (e) return e;
    const want = Buffer.from(id, 'hex');
    const i = searchEntries(this.buf, this.count, want);
    if (i >= 0) return this.at(i);
    for (const r of this.runs) if (r.find(want, this.entry) >= 0) return this.locOf(this.entry, 0);
    return undefined;
  }

  private locOf(b: Buffer, o: number): ChunkLoc {
    return { pack: this.packs[b.readUInt32LE(o + 32)], offset: b.readUInt32LE(o + 36), length: b.readUInt32LE(o + 40), kind: b[o + 44] };
  }

  private at(i: number): ChunkLoc {
    const o = i * ENTRY_BYTES;
    return { pack: this.packs[this.buf.readUInt32LE(o + 32)], offset: this.buf.readUInt32LE(o + 36), length: this.buf.readUInt32LE(o + 40), kind: this.buf[o + 44] };
  }

  /** Indexed chunks (pending ones not counted). */
  get size(): number { return this.count + this.extra.size + this.runs.reduce((s, r) => s + r.count, 0); }

  /** Records a chunk as indexed (its index object is durable). */
  insert(id: string, loc: ChunkLoc): void {
    this.pending.delete(id);
    if (this.extra.has(id) || this.stored(Buffer.from(id, 'hex'))) return;
    this.extra.set(id, loc);
    if (this.extra.size >= 65536) this.compact();
  }

  private numberOf(pack: string): number {
    let n = this.packNo.get(pack);
    if (n === undefined) {
      n = this.packs.length;
      this.packs.push(pack);
      this.packNo.set(pack, n);
    }
    return n;
  }

  /** Merges `extra` into the sorted buffer. */
  private compact(): void {
    if (this.extra.size === 0) return;
    const add = Buffer.alloc(this.extra.size * ENTRY_BYTES);
    let n = 0;
    for (const [id, l] of this.extra) {
      writeEntry(add, n++, Buffer.from(id, 'hex'), this.numberOf(l.pack), l.offset, l.length, l.kind);
    }
    sortEntries(add, n);
    this.extra.clear();
    if (this.file) {
      // Past the budget: the added entries become one more run.
      const run = new SpilledRun(this.file, this.file.size, n);
      run.push(add, n);
      run.done();
      this.runs.push(run);
      return;
    }
    if ((this.count + n) * ENTRY_BYTES > this.memoryBudget) {
      // Crossing the budget: the sorted buffer and the added entries go to the scratch file.
      this.spill();
      const run = new SpilledRun(this.file!, this.file!.size, n);
      run.push(add, n);
      run.done();
      this.runs.push(run);
      return;
    }
    const out = Buffer.from(new SharedArrayBuffer((this.count + n) * ENTRY_BYTES));
    let i = 0, j = 0, k = 0;
    while (i < this.count || j < n) {
      // compare: the sign of (old entry - added entry); the smaller goes first.
      const takeOld = j >= n || (i < this.count && this.buf.compare(add, j * ENTRY_BYTES, j * ENTRY_BYTES + 32, i * ENTRY_BYTES, i * ENTRY_BYTES + 32) <= 0);
      if (takeOld) this.buf.copy(out, k++ * ENTRY_BYTES, i * ENTRY_BYTES, ++i * ENTRY_BYTES);
      else add.copy(out, k++ * ENTRY_BYTES, j * ENTRY_BYTES, ++j * ENTRY_BYTES);
    }
    this.buf = out;
    this.count = k;
  }

  /** Moves the sorted buffer into a run of a new scratch file. */
  private spill(): void {
    this.file = new ScratchFile();
    scratch.register(this, this.file, this);
    if (this.count > 0) {
      const run = new SpilledRun(this.file, 0, this.count);
      run.push(this.buf, this.count);
      run.done();
      this.runs.push(run);
    }
    this.buf = Buffer.alloc(0);
    this.count = 0;
  }

  /** Every indexed entry. */
  *entries(): IterableIterator<[string, ChunkLoc]> {
    this.compact();
    for (let i = 0; i < this.count; i++) yield [this.buf.toString('hex', i * ENTRY_BYTES, i * ENTRY_BYTES + 32), this.at(i)];
    // Runs: each sorted, one after the other (an id is in one run only: insert() checks).
    for (const r of this.runs) for (const [b, o] of r.scan()) yield [b.toString('hex', o, o + 32), this.locOf(b, o)];
  }

  /** Ids (for the pool's workers): the sorted buffer to search, and the ids not in it. */
  shared(): { entries: SharedArrayBuffer | null; count: number; more: string[] } {
    this.compact();
    // Spilled: nothing to share; the workers seal every chunk, the main thread skips stored ones.
    if (this.file) return { entries: null, count: 0, more: [...this.pending] };
    const sab = this.buf.buffer instanceof SharedArrayBuffer ? this.buf.buffer : null;
    return { entries: sab, count: sab ? this.count : 0, more: [...this.pending, ...(sab ? [] : [...this.entries()].map((e) => e[0]))] };
  }

  /** Builds the sorted buffer from raw entries (loading). */
  static fromRaw(raw: Buffer, n: number, packs: string[], memoryBudget = Infinity): ChunkIndex {
    const ix = new ChunkIndex();
    ix.memoryBudget = memoryBudget;
    ix.packs = packs;
    ix.packNo = new Map(packs.map((p, i) => [p, i]));
    if (n * ENTRY_BYTES > memoryBudget) {
      const b = new SpillBuilder();
      b.add(raw, n);
      ix.adoptRun(b.finish(sortUnique));
      return ix;
    }
    const out = Buffer.from(new SharedArrayBuffer(n * ENTRY_BYTES));
    raw.copy(out, 0, 0, n * ENTRY_BYTES);
    ix.buf = out.subarray(0, sortUnique(out, n) * ENTRY_BYTES);
    ix.count = ix.buf.length / ENTRY_BYTES;
    return ix;
  }

  /** Takes a run built from loaded entries (its scratch file becomes this index's). */
  private adoptRun(run: SpilledRun): void {
    this.file = run.file;
    scratch.register(this, this.file, this);
    this.runs = [run];
  }

  /** Loading past the budget (loadIndex): the index made of a SpillBuilder's run. */
  static fromBuilder(b: SpillBuilder, packs: string[], memoryBudget: number): ChunkIndex {
    const ix = new ChunkIndex();
    ix.memoryBudget = memoryBudget;
    ix.packs = packs;
    ix.packNo = new Map(packs.map((p, i) => [p, i]));
    ix.adoptRun(b.finish(sortUnique));
    return ix;
  }
}

/** Sorts n entries in place and drops duplicate ids (keeping the first): how many remain. */
function sortUnique(buf: Buffer, n: number): number {
  sortEntries(buf, n);
  // Duplicates (a chunk indexed twice, e.g. after a merge that crashed): keep the first.
  let k = 0;
  for (let i = 0; i < n; i++) {
    if (k > 0 && buf.compare(buf, i * ENTRY_BYTES, i * ENTRY_BYTES + 32, (k - 1) * ENTRY_BYTES, (k - 1) * ENTRY_BYTES + 32) === 0) continue;
    if (k !== i) buf.copy(buf, k * ENTRY_BYTES, i * ENTRY_BYTES, (i + 1) * ENTRY_BYTES);
    k++;
  }
  return k;
}

function writeEntry(buf: Buffer, i: number, id: Buffer, pack: number, offset: number, length: number, kind: number): void {
  const o = i * ENTRY_BYTES;
  id.copy(buf, o, 0, 32);
  buf.writeUInt32LE(pack, o + 32);
  buf.writeUInt32LE(offset, o + 36);
  buf.writeUInt32LE(length, o + 40);
  buf[o + 44] = kind;
}

/**
 * Sorts fixed-size entries in place by id: a counting sort on the ids' first two bytes (ids are
 * uniform: ~15 per bucket at 1M ids), then each bucket by the whole id; one copy of the entries.
 */
function sortEntries(buf: Buffer, n: number): void {
  if (n < 2) return;
  if (n < 32768) {
    // Small (a bucket of a spilled index, whose ids share their first byte): compare sort.
    const perm = new Uint32Array(n);
    for (let i = 0; i < n; i++) perm[i] = i;
    // buf.compare(target, ...) orders the source (y) against the target (x): y - x; negated.
    perm.sort((x, y) => -buf.compare(buf, x * ENTRY_BYTES, x * ENTRY_BYTES + 32, y * ENTRY_BYTES, y * ENTRY_BYTES + 32));
    const copy = Buffer.from(buf.subarray(0, n * ENTRY_BYTES));
    for (let i = 0; i < n; i++) copy.copy(buf, i * ENTRY_BYTES, perm[i] * ENTRY_BYTES, (perm[i] + 1) * ENTRY_BYTES);
    return;
  }
  const start = new Uint32Array(65537);
  for (let i = 0; i < n; i++) start[buf.readUInt16BE(i * ENTRY_BYTES) + 1]++;
  for (let b = 0; b < 65536; b++) start[b + 1] += start[b];
  const perm = new Uint32Array(n);
  const fill = start.slice(0, 65536);
  for (let i = 0; i < n; i++) perm[fill[buf.readUInt16BE(i * ENTRY_BYTES)]++] = i;
  const cmp = (a: number, b: number) => buf.compare(buf, a * ENTRY_BYTES, a * ENTRY_BYTES + 32, b * ENTRY_BYTES, b * ENTRY_BYTES + 32);
  for (let b = 0; b < 65536; b++) {
    const lo = start[b];
    const hi = start[b + 1];
    if (hi - lo > 1) perm.subarray(lo, hi).sort((x, y) => -cmp(x, y));
  }
  const copy = Buffer.from(buf.subarray(0, n * ENTRY_BYTES));
  for (let i = 0; i < n; i++) copy.copy(buf, i * ENTRY_BYTES, perm[i] * ENTRY_BYTES, (perm[i] + 1) * ENTRY_BYTES);
}

/**
 * Loads every index object of a vault. Objects that do not open are recorded
 * (`damaged`), never trusted; entries naming a pack absent from `packs` (the
 * listing of packs/, when given) are left out (`missingPacks`): a chunk whose
 * pack is gone is not present, for dedup or anything else.
 */
export async function loadIndex(storage: Storage, dataKey: Buffer, o: { packs?: Map<string, number>; memory?: number } = {}): Promise<ChunkIndex> {
  const budget = o.memory ?? indexMemoryFromEnv();
  const keys: string[] = [];
  const damaged: IndexDamage[] = [];
  for await (const x of storage.list(INDEX_PREFIX)) {
    if (parseIndexKey(x.key)) keys.push(x.key);
    else damaged.push({ key: x.key, problem: 'not an index object name' });
  }
  keys.sort();
  let raw = Buffer.alloc(64 * ENTRY_BYTES);
  let n = 0;
  const packs: string[] = [];
  const packNo = new Map<string, number>();
  const missing = new Set<string>();
  const objects: string[] = [];
  // Past the budget, entries go to bucket files instead of `raw` (index-spill.ts).
  let spill = null as SpillBuilder | null;
  try {
    for (const key of keys) {
      let blob: Buffer;
      try {
        blob = await storage.get(key, { maxBytes: MAX_INDEX_BYTES });
      } catch (err) {
        if (err instanceof NotFoundError) continue; // merged away while we listed
        if (err instanceof IntegrityError) { damaged.push({ key, problem: errorMessage(err) }); continue; }
        throw err;
      }
      const start = n;
      spill?.mark();
      try {
        decodeIndexObject(dataKey, key, blob, (id, pack, offset, length, kind) => {
          if (o.packs && !o.packs.has(`packs/${pack.slice(0, 2)}/${pack}`)) { missing.add(pack); return; }
          let p = packNo.get(pack);
          if (p === undefined) { p = packs.length; packs.push(pack); packNo.set(pack, p); }
          if (spill && (n + 1) * ENTRY_BYTES > raw.length) {
            spill.add(raw, n);
            n = 0;
          }
          if (!spill && (n + 1) * ENTRY_BYTES > raw.length) {
            if ((n + 1) * ENTRY_BYTES > budget) {
              // The objects read so far stay whole: a damaged one rolls back only its own entries.
              spill = new SpillBuilder();
              spill.add(raw, start);
              spill.mark();
              spill.add(raw.subarray(start * ENTRY_BYTES), n - start);
              // From now on `raw` only stages entries for the bucket files.
              n = 0;
              raw = Buffer.alloc(4096 * ENTRY_BYTES);
              writeEntry(raw, n++, id, p, offset, length, kind);
              return;
            }
            const bigger = Buffer.alloc(Math.min(raw.length * 2, Math.max(ENTRY_BYTES, Math.floor(budget / ENTRY_BYTES) * ENTRY_BYTES)));
            raw.copy(bigger);
            raw = bigger;
          }
          writeEntry(raw, n++, id, p, offset, length, kind);
        });
        if (spill) { spill.add(raw, n); n = 0; }
        objects.push(key);
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        // nothing of a damaged object counts
        if (spill) { n = 0; spill.rollback(); } else n = start;
        damaged.push({ key, problem: errorMessage(err) });
      }
    }
  } catch (err) {
    spill?.close();
    throw err;
  }
  const ix = spill ? ChunkIndex.fromBuilder(spill, packs, budget) : ChunkIndex.fromRaw(raw, n, packs, budget);
  ix.objects = objects;
  ix.damaged = damaged;
  ix.missingPacks = missing;
  return ix;
}
