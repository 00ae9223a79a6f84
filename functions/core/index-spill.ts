// The chunk index beyond its memory budget: sorted runs of index entries in a
// local file, found through a compact in-memory filter (issue 11).
//
// A run is a sorted array of the index's fixed 48-byte entries (id, pack
// number, offset, length, codec; see chunk-index.ts) written to a scratch file
// ($MEMVAULT_INDEX_DIR, else the temporary directory; unlinked as soon as it is
// opened, so nothing is left behind, even after a crash). In memory a run keeps
// only, per entry, 16 bits of its id (a fingerprint), plus a directory of where
// each value of the id's first d bits starts (d ~ log2(n) - 4, at most 16):
// ~2 bytes per id. A lookup:
//   1. the directory gives the entries whose id starts like the wanted one
//      (~16 of them), a binary search finds those with its next 16 bits;
//   2. none (the common answer for a new chunk): not stored, from memory alone;
//   3. some (the id, or ~1 in 4000 for an absent id): read those entries from
//      the file (one pread of 48 bytes, usually) and compare the whole id.
// So a lookup never says "stored" unless an entry with that exact id is in the
// index; the filter only decides whether the file is read. The page cache
// keeps the hot part of the file; it is not part of the process's memory.
//
// Loading a vault's index past the budget (SpillBuilder): entries are
// partitioned by their id's first byte into 256 bucket files, then each bucket
// (1/256 of the index) is sorted in memory and appended to the run: memory is
// the 256 write buffers (8 MiB), one bucket, and the filter.
import { closeSync, ftruncateSync, mkdtempSync, openSync, readSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ENTRY = 48;

/** A scratch file, unlinked at once; closed when its owner is collected or close() is called. */
export class ScratchFile {
  readonly fd: number;
  size = 0;
  private closed = false;
  constructor(dir = process.env.MEMVAULT_INDEX_DIR || os.tmpdir()) {
    const d = mkdtempSync(path.join(dir, 'memvault-index-'));
    const f = path.join(d, 'run');
    this.fd = openSync(f, 'w+', 0o600);
    unlinkSync(f);
    rmdirSync(d);
  }
  append(buf: Buffer, len = buf.length): number {
    const at = this.size;
    let o = 0;
    while (o < len) o += writeSync(this.fd, buf, o, len - o, at + o);
    this.size += len;
    return at;
  }
  read(buf: Buffer, len: number, at: number): void {
    let o = 0;
    while (o < len) {
      const r = readSync(this.fd, buf, o, len - o, at + o);
      if (r === 0) throw new Error(`index scratch file: short read at ${at + o}`);
      o += r;
    }
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/** Bits of the id's first byte(s) the directory is indexed by, for n entries. */
function dirBits(n: number): number {
  return Math.min(16, Math.max(4, Math.ceil(Math.log2(Math.max(n, 1))) - 4));
}

/** A sorted run of entries in a scratch file, with its in-memory filter. */
export class SpilledRun {
  readonly bits: number;
  readonly dir: Uint32Array;
  readonly fp: Uint16Array;
  count = 0;
  readonly file: ScratchFile;
  /** Byte offset of the run's first entry in the file. */
  readonly base: number;
  private readonly one = Buffer.alloc(ENTRY * 4);

  constructor(file: ScratchFile, base: number, capacity: number) {
    this.file = file;
    this.base = base;
    this.bits = dirBits(capacity);
    this.dir = new Uint32Array((1 << this.bits) + 1);
    this.fp = new Uint16Array(capacity);
  }

  /** Appends sorted entries (each id greater than the last one added); call done() after the last. */
  push(sorted: Buffer, n: number): void {
    const shift = 32 - this.bits;
    for (let i = 0; i < n; i++) {
      const w = sorted.readUInt32BE(i * ENTRY);
      this.dir[(w >>> shift) + 1]++;
      this.fp[this.count + i] = (w << this.bits) >>> 16;
    }
    this.file.append(sorted, n * ENTRY);
    this.count += n;
  }

  done(): void {
    for (let b = 0; b < this.dir.length - 1; b++) this.dir[b + 1] += this.dir[b];
  }

  /** Bytes of memory this run keeps. */
  get memory(): number {
    return this.dir.byteLength + this.count * 2;
  }

  /** The entry number of `id` in this run, or -1. `into` receives the entry. */
  find(id: Buffer, into?: Buffer): number {
    const w = id.readUInt32BE(0);
    const f = (w << this.bits) >>> 16;
    const b = w >>> (32 - this.bits);
    let lo = this.dir[b];
    let hi = this.dir[b + 1];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.fp[mid] < f) lo = mid + 1;
      else hi = mid;
    }
    const end = this.dir[b + 1];
    while (lo < end && this.fp[lo] === f) {
      let k = lo + 1;
      while (k < end && k - lo < 4 && this.fp[k] === f) k++;
      this.file.read(this.one, (k - lo) * ENTRY, this.base + lo * ENTRY);
      for (let j = 0; j < k - lo; j++) {
        if (this.one.compare(id, 0, 32, j * ENTRY, j * ENTRY + 32) === 0) {
          if (into) this.one.copy(into, 0, j * ENTRY, (j + 1) * ENTRY);
          return lo + j;
        }
      }
      lo = k;
    }
    return -1;
  }

  /** Every entry, in order, `block` entries per read. */
  *scan(block = 16384): IterableIterator<[Buffer, number]> {
    const buf = Buffer.alloc(block * ENTRY);
    for (let i = 0; i < this.count; i += block) {
      const n = Math.min(block, this.count - i);
      this.file.read(buf, n * ENTRY, this.base + i * ENTRY);
      for (let j = 0; j < n; j++) yield [buf, j * ENTRY];
    }
  }
}

const BUCKETS = 256;
const BUCKET_BUFFER = 32 * 1024 - (32 * 1024) % ENTRY;

/**
 * Builds one run from entries in any order (loading an index past its budget): partitions them
 * by the id's first byte into buckets (blocks of a bucket appended to one scratch file as its
 * buffer fills), then sorts one bucket at a time. mark()/rollback() forget what was added since
 * the mark (an index object that turned out damaged).
 */
export class SpillBuilder {
  private file: ScratchFile | null = null;
  private readonly bufs: Buffer[] = [];
  private readonly fill = new Uint32Array(BUCKETS);
  /** Per bucket: its blocks in the file, as [offset, bytes] pairs. */
  private readonly blocks: number[][] = Array.from({ length: BUCKETS }, () => []);
  private readonly counts = new Float64Array(BUCKETS);
  private marked: { blocks: number[]; counts: Float64Array; size: number; total: number } | null = null;
  total = 0;
  private readonly dir: string | undefined;

  constructor(dir?: string) {
    this.dir = dir;
  }

  add(entries: Buffer, n: number): void {
    for (let i = 0; i < n; i++) {
      const b = entries[i * ENTRY];
      const buf = (this.bufs[b] ??= Buffer.allocUnsafe(BUCKET_BUFFER));
      entries.copy(buf, this.fill[b], i * ENTRY, (i + 1) * ENTRY);
      this.fill[b] += ENTRY;
      this.counts[b]++;
      if (this.fill[b] === BUCKET_BUFFER) this.flush(b);
    }
    this.total += n;
  }

  private flush(b: number): void {
    if (this.fill[b] === 0) return;
    this.file ??= new ScratchFile(this.dir);
    this.blocks[b].push(this.file.append(this.bufs[b], this.fill[b]), this.fill[b]);
    this.fill[b] = 0;
  }

  /** Remembers the state (every buffer flushed, so what follows is in blocks of its own). */
  mark(): void {
    for (let b = 0; b < BUCKETS; b++) this.flush(b);
    this.marked = { blocks: this.blocks.map((x) => x.length), counts: this.counts.slice(), size: this.file?.size ?? 0, total: this.total };
  }

  rollback(): void {
    const m = this.marked;
    if (!m) throw new Error('SpillBuilder.rollback without mark');
    for (let b = 0; b < BUCKETS; b++) {
      this.blocks[b].length = m.blocks[b];
      this.fill[b] = 0;
    }
    this.counts.set(m.counts);
    this.total = m.total;
    if (this.file) {
      ftruncateSync(this.file.fd, m.size);
      this.file.size = m.size;
    }
  }

  /**
   * The run: every bucket sorted (by `sort`, which also drops duplicate ids, keeping the first
   * added, and returns how many remain) and appended in order; the bucket file is closed.
   */
  finish(sort: (buf: Buffer, n: number) => number): SpilledRun {
    const run = new SpilledRun(new ScratchFile(this.dir), 0, this.total);
    for (let b = 0; b < BUCKETS; b++) {
      const n = this.counts[b];
      if (n === 0) continue;
      const buf = Buffer.allocUnsafe(n * ENTRY);
      let o = 0;
      const bl = this.blocks[b];
      for (let k = 0; k < bl.length; k += 2) {
        this.file!.read(buf.subarray(o), bl[k + 1], bl[k]);
        o += bl[k + 1];
      }
      if (this.fill[b] > 0) o += this.bufs[b].copy(buf, o, 0, this.fill[b]);
      if (o !== n * ENTRY) throw new Error(`index spill: bucket ${b} holds ${o} bytes, expected ${n * ENTRY}`);
      run.push(buf, sort(buf, n));
      this.bufs[b] = Buffer.alloc(0);
    }
    run.done();
    this.close();
    return run;
  }

  /** Closes the bucket file (after a failure, or when finished). */
  close(): void {
    this.file?.close();
  }
}
