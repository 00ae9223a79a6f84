// Content-defined chunking, FastCDC style (Xia et al., 2016).
//
// A rolling gear hash h = (h << 1) + gear[byte] is computed over the bytes of
// the current chunk after its minimum size; a boundary is declared where the
// masked hash is zero. Normalized chunking uses a harder mask (more bits)
// before the average size and an easier one after it, which narrows the size
// distribution around the average. The gear table comes from the vault secret,
// so boundaries (and thus chunk sizes) reveal nothing about the content to
// someone without the key. Memory: at most one chunk (max size) is buffered.

export interface ChunkerParams {
  min: number;
  avg: number;
  max: number;
}

export const DEFAULT_CHUNKER: ChunkerParams = { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 };

function highMask(bits: number): number {
  return ((2 ** bits - 1) * 2 ** (32 - bits)) | 0;
}

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
/** Bytes of a stream's start that chunkerFor looks at. */
export const SNIFF_BYTES = SQLITE_MAGIC.length;

/**
 * Chunk sizes for a stream that starts with `head` (at least SNIFF_BYTES, or
 * the whole stream): a quarter of the vault's for SQLite database files, else
 * the vault's. A database updates pages in place all over its file, so most
 * 1 MiB chunks hold a changed page after a day of writes; quarter-size chunks
 * store about a third less of it again (the benchmark's 4 GiB memory database:
 * 237 instead of 375 MiB after 1% of new rows). Decided by content, so a file
 * always gets the same cut points, on every path.
 */
export function chunkerFor(head: Uint8Array, p: ChunkerParams): ChunkerParams {
  if (head.length < SQLITE_MAGIC.length || !SQLITE_MAGIC.equals(head.subarray(0, SQLITE_MAGIC.length))) return p;
  const q = (n: number) => Math.max(4096, Math.floor(n / 4));
  return { min: q(p.min), avg: q(p.avg), max: q(p.max) };
}

function checkParams(p: ChunkerParams): void {
  if (!(p.min > 0 && p.min <= p.avg && p.avg <= p.max)) throw new Error(`invalid chunker params ${JSON.stringify(p)}`);
}

/**
 * Cuts a stream that comes in buffers: a chunk within one buffer is a slice of
 * it, one spanning buffers is joined. Cut points are CutFinder's.
 */
export class Chunker {
  private parts: Buffer[] = [];
  private size = 0;
  private readonly finder: CutFinder;

  // No parameter properties here: this module also runs in worker threads
  // under Node's own type stripping (chunk-worker.ts), which allows only erasable syntax.
  constructor(gear: Uint32Array, p: ChunkerParams = DEFAULT_CHUNKER) {
    this.finder = new CutFinder(gear, p);
  }

  /** Feeds bytes; returns the chunks completed by them. */
  push(buf: Buffer): Buffer[] {
    const out: Buffer[] = [];
    // The pending chunk began `size` bytes before this buffer.
    let start = -this.size;
    for (let cut; (cut = this.finder.next(buf, start, buf.length, false)) >= 0; start = cut) {
      const tail = buf.subarray(Math.max(0, start), cut);
      out.push(this.parts.length === 0 ? tail : Buffer.concat([...this.parts, tail], this.size + tail.length));
      this.parts = [];
      this.size = 0;
    }
    if (start < buf.length) {
      this.parts.push(buf.subarray(Math.max(0, start)));
      this.size += buf.length - Math.max(0, start);
    }
    this.finder.rebase(buf.length);
    return out;
  }

  /** Returns the last, possibly short, chunk (or null when nothing is pending). */
  finish(): Buffer | null {
    if (this.size === 0) return null;
    const last = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    this.finder.reset();
    return last;
  }
}

/**
 * The same cut points as Chunker, found in place in one contiguous buffer (the
 * chunk-pool workers read files into a window and hash, seal and write each
 * chunk straight from it, with no copy). The current chunk starts at `start`;
 * `next(buf, start, end, eof)` scans what was not scanned yet and returns the
 * chunk's end, or -1 when it needs bytes beyond `end`. After a cut, the next
 * chunk starts at the returned offset; `rebase(delta)` follows the window
 * moving its bytes `delta` to the left.
 */
export class CutFinder {
  private pos = 0;
  private h = 0;
  private readonly maskS: number;
  private readonly maskL: number;
  private readonly gear: Uint32Array;
  private readonly p: ChunkerParams;

  constructor(gear: Uint32Array, p: ChunkerParams = DEFAULT_CHUNKER) {
    this.gear = gear;
    this.p = p;
    checkParams(p);
    const bits = Math.round(Math.log2(p.avg));
    this.maskS = highMask(bits + 2);
    this.maskL = highMask(bits - 2);
  }

  next(buf: Uint8Array, start: number, end: number, eof: boolean): number {
    const { min, avg, max } = this.p;
    const gear = this.gear;
    let h = this.h;
    let i = Math.max(this.pos, start + min);
    if (this.pos < start + min) h = 0;
    let cut = -1;
    const lim1 = Math.min(end, start + avg);
    for (; i < lim1; i++) {
      h = ((h << 1) + gear[buf[i]]) | 0;
      if ((h & this.maskS) === 0) { cut = i + 1; break; }
    }
    if (cut < 0 && i >= start + avg) {
      const lim2 = Math.min(end, start + max);
      for (; i < lim2; i++) {
        h = ((h << 1) + gear[buf[i]]) | 0;
        if ((h & this.maskL) === 0) { cut = i + 1; break; }
      }
      if (cut < 0 && i >= start + max) cut = start + max;
    }
    if (cut < 0) {
      if (!eof) {
        this.pos = Math.max(i, this.pos);
        this.h = h;
        return -1;
      }
      cut = end > start ? end : -1;
    }
    this.pos = cut;
    this.h = 0;
    return cut;
  }

  rebase(delta: number): void {
    this.pos -= delta;
  }

  /** Forgets the current chunk: the next starts afresh. */
  reset(): void {
    this.pos = 0;
    this.h = 0;
  }
}

/** Splits an async byte stream into chunks (sizes per chunkerFor its first bytes). */
export async function* chunkStream(src: AsyncIterable<Uint8Array>, gear: Uint32Array, p: ChunkerParams = DEFAULT_CHUNKER): AsyncGenerator<Buffer> {
  let c: Chunker | null = null;
  let head: Buffer[] = [];
  let headSize = 0;
  for await (const b of src) {
    const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    if (!c) {
      head.push(buf);
      headSize += buf.length;
      if (headSize < SNIFF_BYTES) continue;
      const first = head.length === 1 ? head[0] : Buffer.concat(head, headSize);
      head = [];
      c = new Chunker(gear, chunkerFor(first, p));
      for (const chunk of c.push(first)) yield chunk;
      continue;
    }
    for (const chunk of c.push(buf)) yield chunk;
  }
  if (!c) {
    // Shorter than SNIFF_BYTES: one chunk (or none).
    if (headSize > 0) yield head.length === 1 ? head[0] : Buffer.concat(head, headSize);
    return;
  }
  const last = c.finish();
  if (last) yield last;
}
