// ChunkPool: worker threads that chunk, hash, compress, seal and (on a local
// vault) store whole files (chunk-worker.ts), so that files are backed up in
// parallel on several cores while the main thread only keeps the accounts. On
// other backends the main thread stores the sealed chunks; each worker then
// has at most `maxInflightBytes` of sealed output waiting to be stored (shared
// counter, Atomics), so memory stays bounded. Used by the files and sqlite
// drivers through BackupWriter.writeFile; where workers cannot start (one core,
// MEMVAULT_WORKERS=0, or a bundled Lambda, which does not ship the worker
// file), writeFile streams on the main thread.
import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
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

interface Slot {
  worker: Worker;
  inflight: Int32Array;
  /** The worker is reading (chunking, sealing) a file; its chunk commits may still be running. */
  reading: boolean;
}

const WORKER_URL = new URL('./chunk-worker.ts', import.meta.url);

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
  private queue: ({ type: 'file'; jobId: number; path: string; listed: ListedFile } | { type: 'restore'; jobId: number; entry: RestoreEntry; tmp: string; mode?: number; mtimeNs?: string })[] = [];
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
      const slot: Slot = { worker, inflight: new Int32Array(credit), reading: false };
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
    const job = this.jobs.get(m.jobId);
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
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.reading) continue;
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
    return Promise.all(slots.map((s) => s.worker.terminate())).then(() => undefined);
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
    // Where each chunk is (pack key, offset, length), each pack's header checked once (a
    // damaged header refuses the restore, named): the worker reads the ranges.
    const chunks = await Promise.all((entry.chunks ?? []).map(async (c) => {
      const loc = await this.vault!.locateChecked(c.id);
      return { id: c.id, size: c.size, pack: packKey(loc.pack), offset: loc.offset, length: loc.length };
    }));
    if (this.failure) throw this.failure;
    const jobId = this.nextJob++;
    return new Promise((resolve, reject) => {
      this.jobs.set(jobId, { onChunk: () => {}, resolve: () => resolve(), reject });
      this.queue.push({ type: 'restore', jobId, entry: { path: entry.path, size: entry.size, sha256: entry.sha256, chunks }, tmp, mode: o.mode, mtimeNs: o.mtimeNs });
      this.dispatch();
    });
  }

  /**
   * Stops the workers. Jobs not finished reject with `err` (default: the pool was closed);
   * later jobs reject at once. Safe to call more than once.
   */
  async close(err?: Error): Promise<void> {
    await this.fail(err ?? new PermanentError('the chunk pool was closed'));
  }
}

