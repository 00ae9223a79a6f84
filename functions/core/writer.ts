// BackupWriter: turns byte streams into chunks in the vault.
//
// stream -> content-defined chunks -> keyed id -> (already in the vault? skip)
//        -> zstd (unless incompressible) -> AES-256-GCM -> appended to a pack (packs.ts)
// Chunks are encoded on the thread pool while the producer goes on chunking;
// it waits while `maxInflightBytes` of chunks (or `concurrency` chunks) are in
// flight, and the pack writer holds at most a few packs, so memory stays
// bounded whatever the size of the stream. drain() makes every chunk durable
// and indexed (packs, then their index object): the manifest comes after it.
import { createHash } from 'node:crypto';
import type { Vault } from './vault.ts';
import { CutFinder, SNIFF_BYTES, chunkStream, chunkerFor } from './chunker.ts';
import type { BackupStats, ChunkRef, Entry } from './manifest.ts';
import { IntegrityError, MemvaultError, PermanentError } from './errors.ts';
import { PackWriter } from './packs.ts';
import type { KnownChunks } from './chunk-index.ts';
import { ChunkPool, largeFileBytes, type PoolChunk } from './chunk-pool.ts';
import { promises as fs } from 'node:fs';
import { SOURCE_OPEN_FLAGS, SourceChangedError, openChange, sourceChange, type ListedFile } from './source-file.ts';

/** Chunks of a large file out to the workers at once, per worker (see writeLarge). */
const PARTS_OUT = 4;

/** A backup's stats as the writer counts them (the manifest adds the duration). */
export type WriterStats = Omit<BackupStats, 'durationMs'>;

/**
 * Read buffer for a file of `size` bytes: the file plus one byte (to see the
 * end), at most 4 MiB. A read stream allocates a whole buffer per read, so a
 * 4 MiB buffer for every small file would cost the garbage collector dearly.
 */
function readSize(size: number): number {
  return Math.max(16 * 1024, Math.min(4 * 1024 * 1024, size + 1));
}

/**
 * A failure to store a chunk, as an error of the backup: it names the chunk
 * and the vault, and carries no file error code, so a driver does not take it
 * for a problem with the file it was reading.
 */
function storeError(err: unknown, id: string, url: string): Error {
  if (err instanceof MemvaultError) return err;
  return new PermanentError(`storing chunk ${id} in ${url}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

export interface StreamResult {
  size: number;
  sha256: string;
  chunks: ChunkRef[];
}

export class BackupWriter {
  readonly stats: WriterStats = {
    bytesRead: 0, bytesTotal: 0, bytesUnchanged: 0, newBytes: 0, bytesStored: 0, chunksTotal: 0, chunksNew: 0, entries: 0,
  };
  private inflight = new Set<Promise<void>>();
  private inflightBytes = 0;
  private failure: unknown;
  /** Where new chunks go: packs, then an index object at drain(). */
  readonly packs: PackWriter;
  /** Called after each chunk with the running totals (for progress output). */
  onProgress?: (s: WriterStats) => void;

  constructor(
    readonly vault: Vault,
    /** Chunk ids already in the vault (and ones this writer adds): the vault's ChunkIndex, or a Set. */
    private readonly known: KnownChunks,
    private readonly concurrency = 16,
    // 8 MiB: each byte in flight costs about three (chunk, compressed, sealed) until the garbage
    // collector frees it; 16 MiB was 3% faster but peaked ~30 MiB higher on a 1 GiB backup.
    private readonly maxInflightBytes = 8 * 1024 * 1024,
    o: { packBytes?: number } = {},
  ) {
    this.packs = new PackWriter(vault.storage, vault.keys.dataKey, known, { targetBytes: o.packBytes });
  }

  /**
   * Stores a stream's bytes and returns its chunk list and checksum. `metadata`: the
   * backup's own records (entry parts), not counted as data read or as an entry.
   */
  async writeStream(src: AsyncIterable<Uint8Array>, o: { metadata?: boolean } = {}): Promise<StreamResult> {
    const hash = createHash('sha256');
    const chunks: ChunkRef[] = [];
    let size = 0;
    for await (const chunk of chunkStream(src, this.vault.keys.gear, this.vault.chunker)) {
      if (this.failure) throw this.failure;
      hash.update(chunk);
      size += chunk.length;
      const ref: ChunkRef = { id: '', size: chunk.length };
      chunks.push(ref);
      if (!o.metadata) {
        this.stats.chunksTotal++;
        this.stats.bytesRead += chunk.length;
      }
      await this.schedule(chunk, ref);
      this.onProgress?.(this.stats);
    }
    await this.settle();
    if (!o.metadata) {
      this.stats.bytesTotal += size;
      this.stats.entries++;
    }
    return { size, sha256: hash.digest('hex'), chunks };
  }

  /** Stores a record of the backup itself (an entry part), deduplicated and packed like data. */
  async writeMetadata(data: Buffer): Promise<StreamResult> {
    return this.writeStream((async function* () { yield data; })(), { metadata: true });
  }

  private pool: ChunkPool | null | undefined;

  /** How many files writeFile can usefully take at once (the pool's workers, or 1 without a pool). */
  get fileParallelism(): number {
    this.pool ??= ChunkPool.start(this.vault, this.known);
    return this.pool ? Math.max(2, this.pool.size) : 1;
  }

  /**
   * Stores the bytes of the file the caller listed (lstat: size, device, inode). The file is
   * opened without following a symlink and without blocking on a FIFO, and the open file must
   * be that regular file: else a SourceChangedError (code ESOURCECHANGED), nothing read.
   * With a chunk pool (several cores), a worker thread chunks, hashes and seals the file while
   * this thread stores what is new; otherwise the file is streamed through writeStream here.
   * A failure that is not the file's own (a chunk that cannot be stored, a worker that died)
   * is the backup's: the writer stops its workers and every later call fails with it.
   */
  async writeFile(file: string, listed: ListedFile): Promise<StreamResult> {
    if (this.failure) throw this.failure;
    this.pool ??= ChunkPool.start(this.vault, this.known);
    if (!this.pool) {
      let fh: fs.FileHandle;
      try {
        fh = await fs.open(file, SOURCE_OPEN_FLAGS);
      } catch (err) {
        throw openChange(err) ?? err;
      }
      try {
        const change = sourceChange(await fh.stat({ bigint: true }), listed);
        if (change) throw new SourceChangedError(change);
        return await this.writeStream(fh.createReadStream({ highWaterMark: readSize(listed.size), autoClose: false }));
      } finally {
        await fh.close();
      }
    }
    try {
      if (listed.size >= largeFileBytes()) return await this.oneLargeAtATime(() => this.writeLarge(this.pool!, file, listed));
      return await this.writePooled(this.pool, file, listed);
    } catch (err) {
      // A file's own error (it vanished, is unreadable, changed) carries its code: the driver
      // reports the file and goes on. Anything else ends the backup, and the workers with it.
      if (!(err as NodeJS.ErrnoException).code || err instanceof MemvaultError) await this.abort(err);
      throw err;
    }
  }

  /**
   * What the main thread does with each chunk a worker hands back (whole files and large
   * files alike): counts it, and appends a new sealed chunk to the pack (in arrival order, one
   * at a time); `puts` are those appends, `failure()` the first store failure.
   */
  private chunkSink(file: string) {
    const puts: Promise<void>[] = [];
    let failure: unknown;
    // Appends to the pack in arrival order; one at a time (add may wait for an upload slot).
    let appending: Promise<void> = Promise.resolve();
    const onChunk = (c: PoolChunk, done: () => void) => {
      this.stats.chunksTotal++;
      this.stats.bytesRead += c.size;
      if (c.stored !== undefined) {
        // Stored by the worker. Another worker may have stored the same chunk
        // from another file (same content, harmless); count it once.
        if (!this.known.has(c.id)) {
          this.known.add(c.id);
          this.stats.chunksNew++;
          this.stats.newBytes += c.size;
          this.stats.bytesStored += c.stored;
        }
        done();
      } else if (this.known.has(c.id)) {
        done();
      } else if (!c.sealed) {
        failure ??= new MemvaultError(`${file}: chunk ${c.id} was skipped by a worker but is not in the vault`);
        done();
      } else {
        const sealed = c.sealed;
        this.known.add(c.id);
        this.stats.chunksNew++;
        this.stats.newBytes += c.size;
        appending = appending.then(() => this.packs.add(c.id, [sealed])).then(
          () => { this.stats.bytesStored += sealed.length; },
          (err) => { failure ??= storeError(err, c.id, this.vault.storage.url); this.known.delete(c.id); },
        ).finally(done);
        puts.push(appending);
      }
      this.onProgress?.(this.stats);
    };
    return { onChunk, puts, failure: () => failure };
  }

  private async writePooled(pool: ChunkPool, file: string, listed: ListedFile): Promise<StreamResult> {
    const sink = this.chunkSink(file);
    const result = pool.file(file, listed, sink.onChunk);
    // The chunks' puts settle before the file's result counts; a store failure outranks the file's own.
    const r = await result.finally(() => Promise.all(sink.puts)).catch((err) => { throw sink.failure() ?? err; });
    if (sink.failure()) throw sink.failure();
    this.stats.bytesTotal += r.size;
    this.stats.entries++;
    return r;
  }

  /** The large file being written, if any: one at a time (each takes every worker, and a ring). */
  private largeTurn: Promise<unknown> = Promise.resolve();

  private oneLargeAtATime<T>(f: () => Promise<T>): Promise<T> {
    const run = this.largeTurn.then(f, f);
    this.largeTurn = run.catch(() => undefined);
    return run;
  }

  /**
   * A large file on all the workers at once. This thread reads the file once, in order, into a
   * ring shared with the workers, computes its SHA-256 and finds the cut points (the gear hash
   * pass, cheap); each chunk goes, as a range of the ring, to whichever worker has room, which
   * computes its keyed id and seals it. Chunks are appended to packs as they come back, and
   * listed in file order. Memory: the ring (the largest chunk and two reads, 12 MiB
   * by default) plus each worker's sealed output in flight (maxInflightBytes each); a range of
   * the ring is read into again only once its chunk is back. The bytes hashed, cut and sealed
   * are the same bytes, read once: a file changing while it is read is backed up as read, as
   * on the other paths. A failure of a worker fails the backup; every chunk out is waited for first.
   */
  private async writeLarge(pool: ChunkPool, file: string, listed: ListedFile): Promise<StreamResult> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(file, SOURCE_OPEN_FLAGS);
    } catch (err) {
      throw openChange(err) ?? err;
    }
    const sink = this.chunkSink(file);
    const out = new Map<number, { p: Promise<void>; off: number; end: number }>();
    let failure: unknown;
    try {
      const change = sourceChange(await fh.stat({ bigint: true }), listed);
      if (change) throw new SourceChangedError(change);
      const params = this.vault.chunker;
      const read = 2 * 1024 * 1024;
      const ringBytes = params.max + 2 * read;
      const ring = new SharedArrayBuffer(ringBytes);
      const win = Buffer.from(ring);
      const hash = createHash('sha256');
      const chunks: ChunkRef[] = [];
      const limit = PARTS_OUT * Math.max(1, pool.size);
      let finder: CutFinder | null = null;
      let size = 0;
      let start = 0; // the chunk being cut starts here
      let len = 0; // bytes in the ring
      /** Waits until no chunk out lies in [a, b) of the ring (or fewer than `max` are out). */
      const waitFree = async (a: number, b: number, max = Infinity) => {
        for (;;) {
          if (failure) throw failure;
          const busy = [...out.values()].filter((c) => c.off < b && c.end > a);
          if (busy.length === 0 && out.size < max) return;
          await Promise.race(busy.length > 0 ? busy.map((c) => c.p) : [...out.values()].map((c) => c.p));
        }
      };
      for (let seq = 0; ;) {
        if (win.length - len < read) {
          // The chunk being cut (at most the largest chunk) moves to the front of the ring.
          await waitFree(0, len - start);
          win.copyWithin(0, start, len);
          finder!.rebase(start);
          len -= start;
          start = 0;
        }
        await waitFree(len, len + read);
        const { bytesRead: n } = await fh.read(win, len, read, null);
        if (n > 0) hash.update(win.subarray(len, len + n));
        len += n;
        // The file's first bytes decide the chunk sizes (as in chunkStream and the workers).
        if (!finder && (len >= SNIFF_BYTES || n === 0)) finder = new CutFinder(this.vault.keys.gear, chunkerFor(win.subarray(0, len), params));
        for (let cut; finder && (cut = finder.next(win, start, len, n === 0)) >= 0; start = cut) {
          await waitFree(0, 0, limit);
          const ref: ChunkRef = { id: '', size: cut - start };
          chunks.push(ref);
          const key = seq++;
          const p = pool.seal(ring, start, cut - start, size, (c, done) => { ref.id = c.id; sink.onChunk(c, done); }).then(
            () => { out.delete(key); },
            (err) => { out.delete(key); failure ??= err; },
          );
          out.set(key, { p, off: start, end: cut });
          size += cut - start;
        }
        if (n === 0) break;
      }
      await Promise.all([...out.values()].map((c) => c.p));
      if (failure) throw failure;
      await Promise.all(sink.puts);
      if (sink.failure()) throw sink.failure();
      this.stats.bytesTotal += size;
      this.stats.entries++;
      return { size, sha256: hash.digest('hex'), chunks };
    } catch (err) {
      // Every chunk out comes back (or its worker ends) and every append settles before the
      // file's result: nothing of it is still being stored when the caller goes on. A store
      // failure outranks the file's own.
      await Promise.all([...out.values()].map((c) => c.p));
      await Promise.all(sink.puts);
      throw sink.failure() ?? failure ?? err;
    } finally {
      await fh.close();
    }
  }

  /** Fails the writer with `err`: the workers are stopped, later writes throw it. */
  private async abort(err: unknown): Promise<void> {
    this.failure ??= err;
    const pool = this.pool;
    if (pool) await pool.close(err instanceof Error ? err : new Error(String(err)));
  }

  /**
   * Stops the chunk pool's workers, if any were started, and settles the packs: after a
   * failure what was appended is flushed if it can be (a later backup of this process may
   * skip those chunks as stored), else forgotten (no longer known).
   */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
    await Promise.all(this.inflight).catch(() => undefined);
    await this.packs.flush().catch(() => this.packs.abandon());
  }

  /** Stores a small in-memory buffer as a stream. */
  async writeBuffer(data: Buffer): Promise<StreamResult> {
    return this.writeStream((async function* () { yield data; })());
  }

  /** Records an entry reused from the parent backup without reading it. */
  reuse(entry: Entry): void {
    this.stats.entries++;
    this.stats.bytesTotal += entry.size;
    this.stats.bytesUnchanged += entry.size;
    this.stats.chunksTotal += entry.chunks?.length ?? 0;
  }

  /** Records an entry without content (directory, symlink). */
  recordMeta(): void {
    this.stats.entries++;
  }

  /**
   * Hashes (keyed), and if the vault lacks the chunk, compresses, encrypts and
   * uploads it, on the thread pool while the caller goes on chunking. At most
   * `maxInflightBytes` (and `concurrency` chunks) are in flight; one chunk
   * larger than that bound goes alone.
   */
  private async schedule(chunk: Buffer, ref: ChunkRef): Promise<void> {
    while (this.inflight.size > 0 &&
        (this.inflight.size >= this.concurrency || this.inflightBytes + chunk.length > this.maxInflightBytes)) {
      await Promise.race(this.inflight);
    }
    if (this.failure) throw this.failure;
    this.inflightBytes += chunk.length;
    const p: Promise<void> = (async () => {
      const id = await this.vault.chunkIdAsync(chunk);
      ref.id = id;
      if (this.known.has(id)) return;
      this.known.add(id);
      this.stats.chunksNew++;
      this.stats.newBytes += chunk.length;
      try {
        const enc = await this.vault.encodeChunk(chunk, id);
        await this.packs.add(id, enc.parts);
        this.stats.bytesStored += enc.size;
      } catch (err) {
        this.known.delete(id);
        throw storeError(err, id, this.vault.storage.url);
      }
    })().catch((err) => {
      this.failure ??= err;
    }).finally(() => {
      this.inflightBytes -= chunk.length;
      this.inflight.delete(p);
    });
    this.inflight.add(p);
  }

  /** Waits for every chunk in flight to reach its pack; throws the first failure. */
  private async settle(): Promise<void> {
    await Promise.all(this.inflight);
    if (this.failure) throw this.failure;
  }

  /**
   * Makes every chunk written so far durable and findable (packs uploaded, then their index
   * object); throws the first failure. The manifest that needs them comes after.
   */
  async drain(): Promise<void> {
    await this.settle();
    try {
      await this.packs.flush();
    } catch (err) {
      this.failure ??= err;
      throw err;
    }
  }
}

/**
 * Reads the bytes of an entry back from the vault, chunk by chunk, checking
 * each chunk (authentication and size; its keyed id too when the entry has no
 * SHA-256) and, at the end, the entry's size and SHA-256.
 * Fetches and decodes ahead (on the thread pool) up to `prefetchBytes` of
 * chunks, at least one.
 */
export async function* readEntry(vault: Vault, entry: Entry, prefetchBytes = 16 * 1024 * 1024): AsyncGenerator<Buffer> {
  const chunks = entry.chunks ?? [];
  const hash = createHash('sha256');
  const pending: { p: Promise<Buffer>; size: number }[] = [];
  let pendingBytes = 0;
  let next = 0;
  const fill = () => {
    while (next < chunks.length && (pending.length === 0 || pendingBytes + chunks[next].size <= prefetchBytes)) {
      // A run of chunks read together (Vault.getChunks reads neighbours of one pack in one request).
      const run: ChunkRef[] = [];
      let runBytes = 0;
      while (next < chunks.length && run.length < 64 && (run.length === 0 || (runBytes + chunks[next].size <= 4 * 1024 * 1024 && pendingBytes + runBytes + chunks[next].size <= prefetchBytes))) {
        runBytes += chunks[next].size;
        run.push(chunks[next++]);
      }
      // GCM authentication per chunk and, when the entry has one, its SHA-256 at the end
      // (below): then the keyed id need not be recomputed for every chunk.
      const all = vault.getChunks(run, { checkId: !entry.sha256 });
      all.catch(() => undefined); // handled when awaited
      run.forEach((c, i) => {
        const p = all.then((l) => l[i]);
        p.catch(() => undefined);
        pending.push({ p, size: c.size });
      });
      pendingBytes += runBytes;
    }
  };
  let size = 0;
  fill();
  while (pending.length > 0) {
    const head = pending.shift()!;
    const data = await head.p;
    pendingBytes -= head.size;
    // Refilled once half is consumed, so the next run of neighbours is read in one request.
    if (pendingBytes <= prefetchBytes / 2) fill();
    hash.update(data);
    size += data.length;
    yield data;
  }
  if (size !== entry.size) {
    throw new IntegrityError(`${entry.path}: restored ${size} bytes, manifest says ${entry.size}`);
  }
  if (entry.sha256 && hash.digest('hex') !== entry.sha256) {
    throw new IntegrityError(`${entry.path}: checksum mismatch after restore`);
  }
}
