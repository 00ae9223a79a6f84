// ChunkPool: worker threads that chunk, hash, compress, seal and (on a local
// vault) store whole files (chunk-worker.ts), so that files are backed up in
// parallel on several cores while the main thread only keeps the accounts. On
// other backends the main thread stores the sealed chunks; each worker then
// has at most `maxInflightBytes` of sealed output waiting to be stored (shared
// counter, Atomics), so memory stays bounded. Used by the files and sqlite
// drivers through BackupWriter.writeFile; where workers cannot start (one core,
// MEMVAULT_WORKERS=0, or a bundled Lambda, which does not ship the worker
// file), writeFile streams on the main thread.
//
// One large file (MEMVAULT_LARGE_FILE_BYTES, 64 MiB by default: model weights,
// checkpoints) would run at one worker's pace, so it is split instead: the
// main thread reads it once into a ring shared with the workers, hashes it and
// finds its cut points, and each chunk goes to whichever worker has room
// (seal: keyed id, zstd, AES-GCM); see BackupWriter.writeLarge. Its restore from a
// local vault is split the same way (restoreLarge): runs of chunks written at
// their offsets by every worker, the file read back here for its SHA-256.
// Part jobs go before whole files, dealt round-robin, at most two per worker.
import { Worker } from 'node:worker_threads';
import { closeSync, constants as fsc, existsSync, fchmodSync, fstatSync, futimesSync, openSync, read, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Vault } from './vault.ts';
import type { ChunkRef } from './manifest.ts';
import { ConfigError, IntegrityError, PermanentError } from './errors.ts';
import type { ListedFile } from './source-file.ts';
import type { ChunkIndex, KnownChunks } from './chunk-index.ts';
import { packKey } from './packs.ts';

export interface PoolChunk {
  id: string;
  size: number;
  /** The sealed object for the main thread to store, or null (already in the vault, or stored by the worker). */
  sealed: Buffer | null;
  /** Set when the worker stored the chunk itself: the object's size. */
  stored?: number;
}

interface Job {
  onChunk(c: PoolChunk, done: () => void): void;
  resolve(r: { size: number; sha256: string; chunks: ChunkRef[] }): void;
  reject(err: Error): void;
}

/** An entry to restore, as the manifest has it. */
export interface RestoreEntry {
  path: string;
  size: number;
  sha256?: string;
  chunks?: ChunkRef[];
}

/** An entry of a restore batch: written to `tmp` (created by the worker), mode and time set. */
export interface BatchItem {
  entry: RestoreEntry;
  tmp: string;
  mode?: number;
  mtimeNs?: string;
}

interface Slot {
  worker: Worker;
  inflight: Int32Array;
  /** The worker is reading (chunking, sealing) a file; its chunk commits may still be running. */
  reading: boolean;
  /** Part jobs (chunks of a large file, see seal and restoreLarge) sent to the worker and not answered. */
  parts: number;
  index: number;
}

/** Part jobs a worker holds at once: one running, one waiting, so it never idles between them. */
const PARTS_PER_WORKER = 2;

const readAt = (fd: number, buf: Buffer, length: number, position: number): Promise<number> =>
  new Promise((resolve, reject) => read(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));

const WORKER_URL = new URL('./chunk-worker.ts', import.meta.url);

/** A chunk of a restore part: where it is in the vault and where it goes in the file. */
export interface PartChunk {
  id: string;
  size: number;
  pack: string;
  offset: number;
  length: number;
  pos: number;
}

/**
 * MEMVAULT_LARGE_FILE_BYTES: files (and restored entries) of at least this many bytes are
 * split over all the workers, chunk by chunk, instead of going to one worker whole. Default
 * 64 MiB: below it a file is a few dozen chunks and a worker per file keeps the cores busy
 * (bench/large-file.ts measured the crossover; see bench/RESULTS.md).
 */
export function largeFileBytes(v = process.env.MEMVAULT_LARGE_FILE_BYTES): number {
  if (!v) return 64 * 1024 * 1024;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`MEMVAULT_LARGE_FILE_BYTES: expected a positive number of bytes, got "${v}"`);
  return n;
}

/**
 * MEMVAULT_WORKERS: a number of workers (0: none, everything on the main
 * thread), or "auto" (one per core, at most 4). Unset: two where there are at
 * least two cores (each worker costs about 20 MiB of memory), else none.
 */
export function workersFromEnv(v: string | undefined): number {
  if (!v) return os.availableParallelism() >= 2 ? 2 : 0;
  if (v === 'auto') return Math.min(4, Math.max(1, os.availableParallelism()));
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new ConfigError(`MEMVAULT_WORKERS: expected a number of worker threads (0-64) or "auto", got "${v}"`);
  return n;
}

export class ChunkPool {
  private slots: Slot[] = [];
  private jobs = new Map<number, Job>();
  private nextJob = 1;
  /** Whether the workers are referenced (they are while jobs are pending). */
  private referenced = false;
  /** Set once the pool cannot go on (a worker died, or close()): every job, queued or new, rejects with it. */
  private failure: Error | undefined;
  /** Files waiting for a worker: each worker takes the next when it has read its current one. */
  private queue: ({ type: 'file'; jobId: number; path: string; listed: ListedFile } | { type: 'restore'; jobId: number; entry: RestoreEntry; tmp: string; mode?: number; mtimeNs?: string } | { type: 'restore-batch'; jobId: number; items: BatchItem[] })[] = [];
  /** Part jobs of large files waiting for a worker: served before whole files. */
  private partQueue: ({ type: 'seal'; jobId: number; ring: SharedArrayBuffer; off: number; len: number; pos: number } | { type: 'restore-part'; jobId: number; fd: number; checkId: boolean; chunks: PartChunk[] })[] = [];
  /** Settles once every worker has stopped (after a failure or close()). */
  private stopped: Promise<void> = Promise.resolve();
  /** Chunks of large files each worker has handled (sealed or restored): how the work was spread. */
  readonly partChunks: number[] = [];
  private localRoot: string | null = null;
  private vault: Vault | null = null;

  private constructor() {}

  /**
   * Starts `size` workers; null (stream on the main thread) where workers are off or cannot run.
   * Default: $MEMVAULT_WORKERS (see workersFromEnv).
   */
  /** A pool for restores: only for a local (file://) vault, which the workers read themselves. */
  static forRestore(vault: Vault): ChunkPool | null {
    return vault.storage.localRoot ? ChunkPool.start(vault, [], { restore: true }) : null;
  }

  /**
   * Backups: the workers seal new chunks and hand them to the main thread, which appends
   * them to packs. They skip chunks the vault has by searching the index's sorted entry
   * buffer, shared with them (no copy of the ids per worker).
   */
  static start(vault: Vault, known: KnownChunks | Iterable<string>, o: { size?: number; maxInflightBytes?: number; restore?: boolean } = {}): ChunkPool | null {
    const size = o.size ?? workersFromEnv(process.env.MEMVAULT_WORKERS);
    if (size < 1 || WORKER_URL.protocol !== 'file:' || !existsSync(fileURLToPath(WORKER_URL))) return null;
    const pool = new ChunkPool();
    pool.localRoot = vault.storage.localRoot ?? null;
    pool.vault = vault;
    const shared = typeof (known as Partial<ChunkIndex>).shared === 'function' ? (known as ChunkIndex).shared() : null;
    const knownIds = shared ? shared.more : [...(known as Iterable<string>)];
    for (let i = 0; i < size; i++) {
      const credit = new SharedArrayBuffer(4);
      const worker = new Worker(WORKER_URL, {
        workerData: {
          idKey: vault.keys.idKey, dataKey: vault.keys.dataKey, gear: vault.keys.gear, params: vault.chunker,
          known: knownIds, sharedIndex: shared?.entries ?? null, sharedCount: shared?.count ?? 0,
          localRoot: o.restore ? vault.storage.localRoot ?? null : null, credit, maxInflight: o.maxInflightBytes ?? 16 * 1024 * 1024,
        },
        // Node's own type stripping runs the worker (no loader hooks in workers).
        execArgv: [],
        // The worker's own objects are few and small, but for its set of ids not in the shared
        // index (about 200 bytes each); its data is in buffers outside the heap. A small heap limit keeps
        // the garbage collector prompt.
        resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 + Math.ceil(knownIds.length * 200 / 2 ** 20) },
      });
      const slot: Slot = { worker, inflight: new Int32Array(credit), reading: false, parts: 0, index: i };
      pool.partChunks.push(0);
      worker.on('message', (m) => pool.onMessage(slot, m));
      // A worker that throws outside a job, runs out of memory or exits ends the pool: its jobs
      // would never finish. The others are stopped, every job fails naming the cause.
      worker.on('error', (err) => pool.fail(new PermanentError(`chunk worker failed: ${err.message}`, { cause: err })));
      worker.on('exit', (code) => pool.fail(new PermanentError(`chunk worker exited (code ${code})`)));
      // Idle workers never keep the process alive (a failed backup exits with its error);
      // busy ones do, until their jobs' results arrive (holdWhileBusy). After the listeners:
      // adding a 'message' listener refs the worker again.
      worker.unref();
      pool.slots.push(slot);
    }
    return pool;
  }

  get size(): number {
    return this.slots.length;
  }

  private onMessage(slot: Slot, m: any): void {
    if (m.type === 'read') {
      slot.reading = false;
      this.dispatch();
      return;
    }
    if (m.part) {
      // A part job answered: the worker can take another.
      slot.parts--;
      if (m.type === 'done') this.partChunks[slot.index] += m.chunks;
      queueMicrotask(() => this.dispatch());
    }
    let job = this.jobs.get(m.jobId);
    // A restore batch's error says which entry it was (the caller names that file).
    if (job && m.type === 'error' && typeof m.index === 'number') {
      const inner = job;
      job = { ...inner, reject: (err: Error) => inner.reject(Object.assign(err, { batchIndex: m.index as number })) };
    }
    if (!job) {
      // A job that already failed: its worker must not wait for credit this thread never returns.
      if (m.type === 'chunk' && m.sealed) {
        Atomics.sub(slot.inflight, 0, (m.sealed as ArrayBuffer).byteLength);
        Atomics.notify(slot.inflight, 0);
      }
      return;
    }
    if (m.type === 'chunk') {
      const sealed = m.sealed ? Buffer.from(m.sealed as ArrayBuffer) : null;
      job.onChunk({ id: m.id, size: m.size, sealed, stored: m.stored }, () => {
        if (sealed) {
          Atomics.sub(slot.inflight, 0, sealed.length);
          Atomics.notify(slot.inflight, 0);
        }
      });
    } else {
      this.jobs.delete(m.jobId);
      this.holdWhileBusy();
      if (m.type === 'done') job.resolve({ size: m.size, sha256: m.sha256, chunks: m.chunks });
      // A chunk of a large file that could not be sealed: the backup's failure, not the file's.
      else if (m.phase === 'part') job.reject(new PermanentError(`chunk worker: ${m.message}`));
      // A failed read names the file's error code (the driver reports the file); a failed
      // store fails the backup.
      else if (m.phase === 'store') job.reject(new PermanentError(m.message));
      else if (m.phase === 'integrity') job.reject(new IntegrityError(m.message, m.objectKey));
      // A restore: `target` marks an error of the restore target's file system (the caller names
      // the file and the target), `vault` one reading the local vault.
      else if (m.phase === 'vault') job.reject(new PermanentError(`reading the vault file://${this.localRoot}: ${m.message}`));
      else job.reject(Object.assign(new Error(m.message), { code: m.code, ...(m.phase === 'target' ? { target: true } : {}) }));
    }
  }

  /** Gives queued files to the workers that are not reading one. */
  private dispatch(): void {
    if (this.failure) return this.rejectAll(this.failure);
    this.holdWhileBusy();
    // Chunks of large files first, to workers not reading a whole file; a worker with parts
    // takes no whole file (it would hold up the large file's ring or its restore).
    // Round by round, the least busy first, so that two parts go to two workers.
    for (let round = 0; round < PARTS_PER_WORKER && this.partQueue.length > 0; round++) {
      for (const slot of this.slots) {
        if (this.partQueue.length === 0 || slot.reading || slot.parts > round) continue;
        slot.parts++;
        slot.worker.postMessage(this.partQueue.shift()!);
      }
    }
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.reading || slot.parts > 0) continue;
      const next = this.queue.shift()!;
      slot.reading = true;
      slot.worker.postMessage(next);
    }
  }

  /** Refs the workers while jobs wait for them (their results keep the process alive), unrefs them when idle. */
  private holdWhileBusy(): void {
    const busy = this.jobs.size > 0;
    if (busy === this.referenced) return;
    this.referenced = busy;
    for (const s of this.slots) {
      if (busy) s.worker.ref();
      else s.worker.unref();
    }
  }

  private rejectAll(err: Error): void {
    this.queue = [];
    this.partQueue = [];
    const jobs = [...this.jobs.values()];
    this.jobs.clear();
    for (const j of jobs) j.reject(err);
  }

  /** Ends the pool with `err` (the first cause wins): jobs rejected, workers terminated. */
  private fail(err: Error): Promise<void> {
    if (!this.failure) this.failure = err;
    this.rejectAll(this.failure);
    const slots = this.slots;
    this.slots = [];
    const stopping = Promise.all(slots.map((s) => s.worker.terminate())).then(() => undefined);
    this.stopped = Promise.all([this.stopped, stopping]).then(() => undefined);
    return stopping;
  }

  /** Whether the pool has failed or been closed (and with what). */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** Settles once the workers stopped by a failure or close() have ended (none writes any more). */
  whenStopped(): Promise<void> {
    return this.stopped;
  }

  /**
   * Seals one chunk of a large file on the next worker with room: `len` bytes at `off` of
   * `ring` (a buffer shared with the workers, which only read it), the chunk at `pos` of its
   * file. onChunk gets its id and sealed object (null when the vault has it); from then on
   * the worker no longer reads those bytes of the ring. Rejects if the worker fails.
   */
  seal(ring: SharedArrayBuffer, off: number, len: number, pos: number, onChunk: Job['onChunk']): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const jobId = this.nextJob++;
    return new Promise((resolve, reject) => {
      this.jobs.set(jobId, { onChunk, resolve: () => resolve(), reject });
      this.partQueue.push({ type: 'seal', jobId, ring, off, len, pos });
      this.dispatch();
    });
  }

  /** Restores a run of chunks into the open file `fd`, each at its `pos`, on the next worker with room. */
  private restorePart(fd: number, chunks: PartChunk[], checkId: boolean): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const jobId = this.nextJob++;
    return new Promise((resolve, reject) => {
      this.jobs.set(jobId, { onChunk: () => {}, resolve: () => resolve(), reject });
      this.partQueue.push({ type: 'restore-part', jobId, fd, checkId, chunks });
      this.dispatch();
    });
  }

  /**
   * Processes one file on the next worker that is free (a worker that has read its file takes
   * the next while its last chunks are being committed); onChunk gets every chunk.
   */
  file(path: string, listed: ListedFile, onChunk: Job['onChunk']): Promise<{ size: number; sha256: string; chunks: ChunkRef[] }> {
    const jobId = this.nextJob++;
    return new Promise((resolve, reject) => {
      this.jobs.set(jobId, { onChunk, resolve, reject });
      this.queue.push({ type: 'file', jobId, path, listed });
      this.dispatch();
    });
  }

  /**
   * Restores an entry from the local vault into the new file `tmp` on the next free worker
   * (created O_EXCL | O_NOFOLLOW in a directory the caller has checked; every chunk checked,
   * size and SHA-256 checked; `mode` and `mtimeNs` set on the descriptor). The caller renames
   * it into place. A damaged or missing chunk rejects with an IntegrityError naming it; an
   * error of the target file system carries `code` and `target: true`; `tmp` is removed on
   * every failure.
   */
  async restore(entry: RestoreEntry, tmp: string, o: { mode?: number; mtimeNs?: string } = {}): Promise<void> {
    const chunks = await this.locate(entry);
    if (this.failure) throw this.failure;
    if (entry.size >= largeFileBytes() && chunks.length > 1) return this.restoreLarge(entry, chunks, tmp, o);
    const jobId = this.nextJob++;
    return new Promise((resolve, reject) => {
      this.jobs.set(jobId, { onChunk: () => {}, resolve: () => resolve(), reject });
      this.queue.push({ type: 'restore', jobId, entry: { path: entry.path, size: entry.size, sha256: entry.sha256, chunks }, tmp, mode: o.mode, mtimeNs: o.mtimeNs });
      this.dispatch();
    });
  }

  /**
   * Where each chunk of an entry is (pack key, offset, length), each pack's header checked
   * once (a damaged header refuses the restore, named): the worker reads the ranges.
   */
  private async locate(entry: RestoreEntry): Promise<PartChunk[]> {
    let pos = 0;
    return Promise.all((entry.chunks ?? []).map(async (c) => {
      const at = pos;
      pos += c.size;
      const loc = await this.vault!.locateChecked(c.id);
      return { id: c.id, size: c.size, pack: packKey(loc.pack), offset: loc.offset, length: loc.length, pos: at };
    }));
  }

  /**
   * Restores small entries on one worker, one after the other, each as restore() does (its
   * temporary written, checked, mode and time set); the caller renames them into place. One
   * message each way for the batch instead of per file, and the pack read stays open between
   * neighbouring files. On a failure no temporary of the batch is left, and the error carries
   * `batchIndex`, the entry that failed.
   */
  async restoreBatch(items: BatchItem[]): Promise<void> {
    const located = await Promise.all(items.map(async (it, i) => {
      try {
        return { ...it, entry: { path: it.entry.path, size: it.entry.size, sha256: it.entry.sha256, chunks: await this.locate(it.entry) } };
      } catch (err) {
        throw Object.assign(err as Error, { batchIndex: i });
      }
    }));
    if (this.failure) throw this.failure;
    const jobId = this.nextJob++;
    return new Promise((resolve, reject) => {
      this.jobs.set(jobId, { onChunk: () => {}, resolve: () => resolve(), reject });
      this.queue.push({ type: 'restore-batch', jobId, items: located });
      this.dispatch();
    });
  }

  /**
   * Restores a large entry on all the workers: runs of its chunks (about 4 MiB each, in file
   * order) go to whichever worker has room, which writes them at their offsets (pwrite) into
   * `tmp`, created here O_EXCL | O_NOFOLLOW. This thread reads back the part of the file that
   * is complete from its start, as the parts arrive, for the entry's SHA-256, then checks size
   * and SHA-256 and sets mode and time. At most two parts per worker are out at a time, so
   * memory does not grow with the file. On any failure every part out is waited for (none
   * writes into a closed descriptor) and `tmp` is removed.
   */
  private async restoreLarge(entry: RestoreEntry, chunks: PartChunk[], tmp: string, o: { mode?: number; mtimeNs?: string }): Promise<void> {
    let fd: number;
    try {
      fd = openSync(tmp, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw Object.assign(err as Error, { target: true });
    }
    // Parts: runs of neighbouring chunks, in file order.
    const parts: { chunks: PartChunk[]; end: number }[] = [];
    for (let i = 0; i < chunks.length;) {
      const run: PartChunk[] = [];
      let bytes = 0;
      while (i < chunks.length && run.length < 32 && (run.length === 0 || bytes + chunks[i].size <= 4 * 1024 * 1024)) {
        bytes += chunks[i].size;
        run.push(chunks[i++]);
      }
      parts.push({ chunks: run, end: run.at(-1)!.pos + run.at(-1)!.size });
    }
    const out = new Set<Promise<void>>();
    const finished = new Array<boolean>(parts.length).fill(false);
    let failure: unknown;
    let complete = 0; // parts done from the start
    let hashed = 0;
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    /** Hashes the file up to the end of the parts done from its start (read back: what is on disk). */
    const hashUpTo = async (end: number) => {
      while (hashed < end) {
        const n = await readAt(fd, buf, Math.min(buf.length, end - hashed), hashed);
        if (n === 0) throw new IntegrityError(`${entry.path}: restored file ends at ${hashed} bytes, before ${end}`);
        hash.update(buf.subarray(0, n));
        hashed += n;
      }
    };
    try {
      const limit = PARTS_PER_WORKER * Math.max(1, this.slots.length);
      for (let i = 0; i < parts.length && !failure; i++) {
        while (out.size >= limit && !failure) await Promise.race(out);
        if (failure) break;
        const index = i;
        const p: Promise<void> = this.restorePart(fd, parts[i].chunks, !entry.sha256).then(
          () => { finished[index] = true; },
          (err) => { failure ??= err; },
        ).finally(() => out.delete(p));
        out.add(p);
        while (complete < parts.length && finished[complete]) complete++;
        if (complete > 0 && !failure) await hashUpTo(parts[complete - 1].end).catch((err) => { failure ??= err; });
      }
      await Promise.all(out);
      if (failure) throw failure;
      await hashUpTo(entry.size);
      const size = fstatSync(fd).size;
      if (size !== entry.size) throw new IntegrityError(`${entry.path}: restored ${size} bytes, manifest says ${entry.size}`);
      if (entry.sha256 && hash.digest('hex') !== entry.sha256) throw new IntegrityError(`${entry.path}: checksum mismatch after restore`);
      try {
        if (o.mode !== undefined) fchmodSync(fd, o.mode);
        if (o.mtimeNs) {
          const t = Number(BigInt(o.mtimeNs) / 1000n) / 1e6;
          futimesSync(fd, t, t);
        }
      } catch (err) {
        throw Object.assign(err as Error, { target: true });
      }
    } catch (err) {
      // Parts still out finish (or their workers end) before the descriptor is closed.
      await Promise.all(out);
      if (this.failure) await this.stopped;
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw err;
    }
    closeSync(fd);
  }

  /**
   * Stops the workers. Jobs not finished reject with `err` (default: the pool was closed);
   * later jobs reject at once. Safe to call more than once.
   */
  async close(err?: Error): Promise<void> {
    await this.fail(err ?? new PermanentError('the chunk pool was closed'));
  }
}

