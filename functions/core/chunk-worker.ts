// A worker thread of the chunk pool (chunk-pool.ts). Backups: reads one file at a time
// and does all the work of a backup for it — content-defined chunking, the
// file's SHA-256, each chunk's keyed id, and, for chunks the vault did not have
// when the backup started, zstd (unless incompressible), AES-256-GCM and, on a
// local vault (file://), the write of the object itself (temporary file,
// fsync, rename: FileStorage.put's protocol; the fsyncs run on the thread pool
// while the worker goes on, and a file is reported done once its chunks are
// durable and in place). On other backends the sealed
// object goes to the main thread, which stores it. The object layout is
// exactly that of Vault.encodeChunk: [kind][12-byte nonce][ciphertext][tag],
// with kind + object key as associated data.
//
// Restores from a local vault: writes one entry at a time, each chunk read (its range of its pack),
// authenticated, decompressed and checked, the entry's SHA-256 checked at the end,
// into a new temporary file (O_EXCL | O_NOFOLLOW, in a directory the main
// thread has checked) whose mode and times are set on the descriptor; the main
// thread renames it into place (TargetTree.publish).
//
// Parts of one large file (chunk-pool.ts): `seal` seals one chunk that the main
// thread has cut, straight from the ring it shares; `restore-part` restores a
// run of chunks into the main thread's open temporary file at their offsets.
//
// Memory: the file is read into one window of (largest chunk + one read)
// bytes; cut points are found in place (CutFinder) and each chunk is hashed,
// sealed and written straight from the window, so no chunk is copied or kept.
//
// This file runs under Node's own type stripping (workers do not inherit the
// CLI's loader): erasable TypeScript only, and imports of such modules only.
import { parentPort, workerData } from 'node:worker_threads';
import { closeSync, constants as fsc, fchmodSync, fstatSync, futimesSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createHash, createHmac } from 'node:crypto';
import { SOURCE_OPEN_FLAGS, SourceChangedError, openChange, sourceChange, type ListedFile } from './source-file.ts';
import { CutFinder, SNIFF_BYTES, chunkerFor, type ChunkerParams } from './chunker.ts';
import { chunkKey, commitChunkFile, encodeChunkSync, maxSealedChunkBytes, openChunkSync, sealChunkParts, writeChunkFileSync, type PendingChunkFile } from './chunk-codec.ts';
import { OPEN_OBJECT, refusedLink, verifyDirectoriesSync } from './local-objects.ts';
import { tooLargeMessage } from './ports.ts';

interface Init {
  idKey: Uint8Array;
  dataKey: Uint8Array;
  gear: Uint32Array;
  params: ChunkerParams;
  known: string[];
  /** The chunk index's sorted 48-byte entries (id first), shared with the main thread. */
  sharedIndex: SharedArrayBuffer | null;
  sharedCount: number;
  /** The vault directory when the vault is local (file://): chunks are written here. */
  localRoot: string | null;
  /** [0]: bytes this worker has posted that the main thread has not stored yet. */
  credit: SharedArrayBuffer;
  maxInflight: number;
}

const READ = 2 * 1024 * 1024;
/** Error codes worth another try when writing a chunk file. */
const TRANSIENT = new Set(['EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'EINTR']);

const init = workerData as Init;
const idKey = Buffer.from(init.idKey);
const dataKey = Buffer.from(init.dataKey);
const known = new Set(init.known);
init.known.length = 0; // the set holds them now
/**
 * Ids this worker sealed in this run, remembered only up to this many (about
 * 150 bytes of heap each), then forgotten: the set must not grow with the number
 * of chunks a backup makes (200k new chunks were ~30 MiB over two workers). A
 * duplicate sealed again after that costs CPU only: the main thread drops a
 * chunk it already has (writer.chunkSink).
 */
const SEALED_MEMORY = 32_768;
const sealedHere = new Set<string>();
function remember(id: string): void {
  if (sealedHere.size >= SEALED_MEMORY) sealedHere.clear();
  sealedHere.add(id);
}
const sharedIndex = init.sharedIndex ? Buffer.from(init.sharedIndex) : null;

/** Known: sealed by this worker, or in the shared index (binary search of its sorted ids). */
function isKnown(id: string): boolean {
  if (known.has(id) || sealedHere.has(id)) return true;
  if (!sharedIndex) return false;
  const want = Buffer.from(id, 'hex');
  let lo = 0;
  let hi = init.sharedCount - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = sharedIndex.compare(want, 0, 32, mid * 48, mid * 48 + 32);
    if (c === 0) return true;
    if (c > 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return false;
}
const inflight = new Int32Array(init.credit);
const win = Buffer.allocUnsafeSlow(init.params.max + READ);
const dirs = new Set<string>();

// Every chunk leaves buffers outside the heap (cipher and zstd output, each up
// to a chunk's size) that V8 frees only when it collects, and it collects late,
// by the growth of external memory: each worker could hold 30-60 MiB of dead
// buffers. A full collection of this small heap every 16 MiB of chunk data
// (a few ms) keeps a restore of 4 GiB at ~210 instead of ~245 MiB.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as (o: { type: 'major' }) => void;
let sinceCollected = 0;
function processed(bytes: number): void {
  sinceCollected += bytes;
  if (sinceCollected >= 16 * 1024 * 1024) {
    sinceCollected = 0;
    collectGarbage({ type: 'major' });
  }
}

/** Blocks while the main thread has too much of this worker's output still to store. */
function waitForRoom(bytes: number, max = init.maxInflight): void {
  for (;;) {
    const cur = Atomics.load(inflight, 0);
    if (cur === 0 || cur + bytes <= max) break;
    Atomics.wait(inflight, 0, cur, 1000);
  }
  Atomics.add(inflight, 0, bytes);
}

/** Writes a chunk file, trying again (after 50, 100 ms) on a transient error. */
function writeChunk(id: string, parts: Buffer[]): PendingChunkFile {
  for (let attempt = 1; ; attempt++) {
    try {
      return writeChunkFileSync(init.localRoot!, id, parts, dirs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (attempt >= 3 || !code || !TRANSIENT.has(code)) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50 * attempt);
    }
  }
}

class StoreError extends Error {}

function storeError(id: string, err: unknown): StoreError {
  const e = err as NodeJS.ErrnoException;
  return Object.assign(new StoreError(`storing chunk ${id} in ${init.localRoot}: ${e.message}`), { code: e.code });
}

/** Chunk files of this worker waiting for their fsync; bounded, they hold a descriptor each but no memory. */
const committing = new Set<Promise<void>>();
const MAX_COMMITTING = 16;

/**
 * Opens the file the main thread listed, and only that one: no symlink followed, no FIFO
 * waited on, and the open file must be the listed regular file (source-file.ts).
 */
function openListed(path: string, listed: ListedFile): number {
  let fd: number;
  try {
    fd = openSync(path, SOURCE_OPEN_FLAGS);
  } catch (err) {
    throw openChange(err) ?? err;
  }
  try {
    const change = sourceChange(fstatSync(fd, { bigint: true }), listed);
    if (change) throw new SourceChangedError(change);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return fd;
}

async function processFile(jobId: number, path: string, listed: ListedFile): Promise<void> {
  // This file's chunk commits: its result goes out once they have settled, so that every
  // chunk message of the job comes before it.
  const commits: Promise<void>[] = [];
  let failure: unknown = null;
  let result: { size: number; sha256: string; chunks: { id: string; size: number }[] } | null = null;
  try {
    const fd = openListed(path, listed);
    try {
      result = await chunkFile(jobId, fd, commits);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    failure = err;
  }
  // Read: the pool may send the next file now.
  parentPort!.postMessage({ type: 'read', jobId });
  void Promise.allSettled(commits).then((settled) => {
    const bad = settled.find((r) => r.status === 'rejected');
    const err = failure ?? (bad && (bad as PromiseRejectedResult).reason);
    if (err) {
      const e = err as NodeJS.ErrnoException;
      parentPort!.postMessage({ type: 'error', jobId, message: e.message, code: e.code, phase: err instanceof StoreError ? 'store' : 'read' });
    } else {
      parentPort!.postMessage({ type: 'done', jobId, ...result! });
    }
  });
}

async function chunkFile(jobId: number, fd: number, commits: Promise<void>[]) {
  let finder: CutFinder | null = null;
  const hash = createHash('sha256');
  const chunks: { id: string; size: number }[] = [];
  let size = 0;
  const emit = (chunk: Buffer) => {
    processed(chunk.length);
    const id = createHmac('sha256', idKey).update(chunk).digest('hex');
    chunks.push({ id, size: chunk.length });
    if (isKnown(id)) {
      parentPort!.postMessage({ type: 'chunk', jobId, id, size: chunk.length, sealed: null });
      return;
    }
    remember(id);
    if (init.localRoot) {
      let pending: PendingChunkFile;
      try {
        pending = writeChunk(id, sealChunkParts(dataKey, chunk, id));
      } catch (err) {
        sealedHere.delete(id);
        throw storeError(id, err);
      }
      // Counted as stored now (a later chunk with this id may come before the commit
      // ends); if the commit fails, so does this file's job, and with it the backup.
      parentPort!.postMessage({ type: 'chunk', jobId, id, size: chunk.length, sealed: null, stored: pending.size });
      const p: Promise<void> = commitChunkFile(pending).then(
        () => {},
        (err) => { sealedHere.delete(id); throw storeError(id, err); },
      ).finally(() => committing.delete(p));
      p.catch(() => {}); // reported through `commits`
      committing.add(p);
      commits.push(p);
      return;
    }
    const sealed = encodeChunkSync(dataKey, chunk, id);
    waitForRoom(sealed.byteLength);
    parentPort!.postMessage({ type: 'chunk', jobId, id, size: chunk.length, sealed }, [sealed]);
  };
  let start = 0;
  let len = 0;
  for (;;) {
    if (win.length - len < READ) {
      // The pending chunk (shorter than the largest chunk) moves to the front.
      win.copyWithin(0, start, len);
      finder!.rebase(start);
      len -= start;
      start = 0;
    }
    const n = readSync(fd, win, len, READ, null);
    if (n > 0) hash.update(win.subarray(len, len + n));
    len += n;
    size += n;
    // The file's first bytes decide the chunk sizes (as in chunkStream).
    if (!finder && (len >= SNIFF_BYTES || n === 0)) finder = new CutFinder(init.gear, chunkerFor(win.subarray(0, len), init.params));
    for (let cut; finder && (cut = finder.next(win, start, len, n === 0)) >= 0; start = cut) {
      emit(win.subarray(start, cut));
      while (committing.size >= MAX_COMMITTING) await Promise.race(committing).catch(() => {});
    }
    if (n === 0) break;
  }
  return { size, sha256: hash.digest('hex'), chunks };
}

/** Opens a vault object for reading, never through a symlink inside the vault (refused naming the object). */
function openObjectSync(key: string): number {
  try {
    verifyDirectoriesSync(init.localRoot!, key, dirs, false);
    return openSync(join(init.localRoot!, key), OPEN_OBJECT);
  } catch (err) {
    const link = refusedLink(key, err);
    if (link) throw Object.assign(new Error(`file://${init.localRoot}: cannot read ${key}: ${link.message}`), { objectKey: link.objectKey });
    throw err;
  }
}

/**
 * Reads a chunk object into the read window (no allocation; it is free during a restore), or a new buffer if larger.
 * Never through a symlink inside the vault; an object larger than `maxBytes` is refused before it is read.
 */
function readObject(key: string, maxBytes: number): Buffer {
  const url = `file://${init.localRoot}`;
  const fd = openObjectSync(key);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw Object.assign(new Error(`${url}: ${key} is not a regular file`), { objectKey: key });
    if (st.size > maxBytes) throw Object.assign(new Error(tooLargeMessage(url, key, st.size, maxBytes)), { objectKey: key });
    const size = st.size;
    const buf = size <= win.length ? win.subarray(0, size) : Buffer.allocUnsafe(size);
    for (let off = 0; off < size;) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) return buf.subarray(0, off);
      off += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** The open pack of the restore (consecutive chunks mostly share one). */
let rangeFile: { key: string; fd: number; size: number } | null = null;

/** Reads `length` bytes of a pack at `offset` into the read window (or a new buffer if larger); never through a symlink. */
function readRange(key: string, offset: number, length: number): Buffer {
  const url = `file://${init.localRoot}`;
  if (!rangeFile || rangeFile.key !== key) {
    if (rangeFile) { closeSync(rangeFile.fd); rangeFile = null; }
    const fd = openObjectSync(key);
    const st = fstatSync(fd);
    if (!st.isFile()) { closeSync(fd); throw Object.assign(new Error(`${url}: ${key} is not a regular file`), { objectKey: key }); }
    rangeFile = { key, fd, size: st.size };
  }
  if (offset + length > rangeFile.size) throw Object.assign(new Error(`${url}: pack ${key} ends before bytes ${offset}-${offset + length - 1}; it is truncated or damaged`), { objectKey: key });
  const buf = length <= win.length ? win.subarray(0, length) : Buffer.allocUnsafe(length);
  for (let off = 0; off < length;) {
    const n = readSync(rangeFile.fd, buf, off, length - off, offset + off);
    if (n === 0) return buf.subarray(0, off);
    off += n;
  }
  return buf;
}

function closeRange(): void {
  if (rangeFile) { closeSync(rangeFile.fd); rangeFile = null; }
}

interface RestoreJob {
  type: 'restore';
  jobId: number;
  entry: { path: string; size: number; sha256?: string; chunks: { id: string; size: number; pack: string; offset: number; length: number }[] };
  /** A new file to create (it must not exist) in a directory the main thread has checked. */
  tmp: string;
  mode?: number;
  mtimeNs?: string;
}

/** Small entries restored one after the other by one job (the pack file stays open between them). */
interface RestoreBatchJob {
  type: 'restore-batch';
  jobId: number;
  items: Omit<RestoreJob, 'type' | 'jobId'>[];
}

/** An error of the restore target's file system (not of the vault): the main thread names the file. */
function targetError(err: unknown): Error {
  return Object.assign(err as Error, { target: true });
}

/**
 * Restores one entry from the local vault: each chunk read, authenticated,
 * decompressed and checked, written to the new file `tmp` (created O_EXCL |
 * O_NOFOLLOW: nothing planted there is followed); then the entry's size and
 * SHA-256 are checked and the mode and time set on the descriptor. On any failure
 * `tmp` is removed. restoreEntryFile (components/restore-file.ts) does the same on
 * the main thread, for other backends, and renames the file into place.
 */
function restoreEntry(m: RestoreJob): void {
  let fd: number;
  try {
    fd = openSync(m.tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw targetError(err);
  }
  try {
    const hash = createHash('sha256');
    let pos = 0;
    for (const c of m.entry.chunks) {
      const key = c.pack;
      const blob = readSealedChunk(c);
      // The entry's SHA-256 (checked at the end) stands for the chunks' keyed ids.
      let data: Buffer;
      try {
        data = openChunkSync(dataKey, blob, c.id, c.size, m.entry.sha256 ? undefined : idKey);
      } catch (err) {
        throw Object.assign(new Error(`chunk ${c.id} in pack ${key}: ${(err as Error).message}`), { objectKey: key });
      }
      hash.update(data);
      try {
        for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off, pos + off);
      } catch (err) {
        throw targetError(err);
      }
      pos += data.length;
      processed(data.length);
    }
    if (pos !== m.entry.size) throw Object.assign(new Error(`${m.entry.path}: restored ${pos} bytes, manifest says ${m.entry.size}`), { objectKey: undefined });
    if (m.entry.sha256 && hash.digest('hex') !== m.entry.sha256) throw Object.assign(new Error(`${m.entry.path}: checksum mismatch after restore`), { objectKey: undefined });
    try {
      if (m.mode !== undefined) fchmodSync(fd, m.mode);
      if (m.mtimeNs) {
        const t = Number(BigInt(m.mtimeNs) / 1000n) / 1e6;
        futimesSync(fd, t, t);
      }
    } catch (err) {
      throw targetError(err);
    }
  } catch (err) {
    closeSync(fd);
    rmSync(m.tmp, { force: true });
    throw err;
  }
  closeSync(fd);
}

/**
 * One chunk of a large file (chunk-pool.ts, BackupWriter): the main thread found its cut
 * points and holds its bytes in a shared ring; this worker computes the keyed id and, when
 * the vault lacks the chunk, compresses and seals it. Its bytes are only read, and the reply
 * (the chunk message) tells the main thread that the ring may reuse them.
 */
interface SealJob {
  type: 'seal';
  jobId: number;
  ring: SharedArrayBuffer;
  off: number;
  len: number;
  /** The chunk's offset in its file (for error messages). */
  pos: number;
}

/** Test seam: MEMVAULT_TEST_FAIL_SEAL=<offset> fails the seal of the chunk at that file offset. */
const failSealAt = process.env.MEMVAULT_TEST_FAIL_SEAL;

function sealPart(m: SealJob): void {
  const chunk = Buffer.from(m.ring, m.off, m.len);
  if (failSealAt !== undefined && Number(failSealAt) === m.pos) throw new Error(`injected failure sealing the chunk at offset ${m.pos}`);
  processed(m.len);
  const id = createHmac('sha256', idKey).update(chunk).digest('hex');
  if (isKnown(id)) {
    parentPort!.postMessage({ type: 'chunk', jobId: m.jobId, id, size: m.len, sealed: null });
    return;
  }
  remember(id);
  const sealed = encodeChunkSync(dataKey, chunk, id);
  // Every worker seals for the one file: half the usual room each keeps the main thread's
  // backlog of sealed chunks about that of one worker on a whole file.
  waitForRoom(sealed.byteLength, init.maxInflight / 2);
  parentPort!.postMessage({ type: 'chunk', jobId: m.jobId, id, size: m.len, sealed }, [sealed]);
}

/**
 * A run of chunks of a large entry to restore: each read from its pack, authenticated,
 * decompressed and checked, then written at its offset (pwrite) into the temporary file
 * `fd`, which the main thread created (O_EXCL | O_NOFOLLOW) and keeps open until every
 * part has answered; it checks the whole file's size and SHA-256 itself.
 */
interface RestorePartJob {
  type: 'restore-part';
  jobId: number;
  fd: number;
  checkId: boolean;
  chunks: { id: string; size: number; pack: string; offset: number; length: number; pos: number }[];
}

/** A chunk's sealed bytes from its pack (a size past what its plaintext size allows is refused unread). */
function readSealedChunk(c: { id: string; size: number; pack: string; offset: number; length: number }): Buffer {
  try {
    if (c.length > maxSealedChunkBytes(c.size)) throw Object.assign(new Error(tooLargeMessage(`file://${init.localRoot}`, `${c.pack} chunk ${c.id}`, c.length, maxSealedChunkBytes(c.size))), { objectKey: c.pack });
    return readRange(c.pack, c.offset, c.length);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw Object.assign(new Error(`chunk ${c.id}: its pack ${c.pack} is missing from file://${init.localRoot}`), { objectKey: c.pack });
    throw err;
  }
}

function restorePart(m: RestorePartJob): void {
  for (const c of m.chunks) {
    const key = c.pack;
    const blob = readSealedChunk(c);
    let data: Buffer;
    try {
      data = openChunkSync(dataKey, blob, c.id, c.size, m.checkId ? idKey : undefined);
    } catch (err) {
      throw Object.assign(new Error(`chunk ${c.id} in pack ${key}: ${(err as Error).message}`), { objectKey: key });
    }
    try {
      for (let off = 0; off < data.length;) off += writeSync(m.fd, data, off, data.length - off, c.pos + off);
    } catch (err) {
      throw targetError(err);
    }
    processed(data.length);
  }
}

/** Runs a part job (seal, restore-part) and answers it: done, or the error with its phase. */
function runPart(m: SealJob | RestorePartJob): void {
  try {
    try {
      if (m.type === 'seal') sealPart(m);
      else restorePart(m);
    } finally {
      if (m.type === 'restore-part') closeRange();
    }
    parentPort!.postMessage({ type: 'done', jobId: m.jobId, part: true, chunks: m.type === 'seal' ? 1 : m.chunks.length });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { objectKey?: string; target?: boolean };
    const phase = m.type === 'seal' ? 'part' : 'objectKey' in e ? 'integrity' : e.target ? 'target' : 'vault';
    parentPort!.postMessage({ type: 'error', jobId: m.jobId, part: true, message: e.message, code: e.code, phase, objectKey: e.objectKey });
  }
}

// One job at a time: the read window is shared. A file's result may still wait
// for its commits while the next file is read.
let queue: Promise<void> = Promise.resolve();
parentPort!.on('message', (m: { type: 'file'; jobId: number; path: string; listed: ListedFile } | RestoreJob | RestoreBatchJob | SealJob | RestorePartJob) => {
  if (m.type === 'seal' || m.type === 'restore-part') {
    queue = queue.then(() => runPart(m));
    return;
  }
  if (m.type === 'restore') {
    queue = queue.then(() => {
      try {
        try {
          restoreEntry(m);
        } finally {
          closeRange();
        }
        parentPort!.postMessage({ type: 'read', jobId: m.jobId });
        parentPort!.postMessage({ type: 'done', jobId: m.jobId, size: m.entry.size });
      } catch (err) {
        const e = err as NodeJS.ErrnoException & { objectKey?: string; target?: boolean };
        parentPort!.postMessage({ type: 'read', jobId: m.jobId });
        parentPort!.postMessage({ type: 'error', jobId: m.jobId, message: e.message, code: e.code, phase: 'objectKey' in e ? 'integrity' : e.target ? 'target' : 'vault', objectKey: e.objectKey });
      }
    });
    return;
  }
  if (m.type === 'restore-batch') {
    // Each entry as a restore job; on a failure the temporaries written before it are removed
    // too (none was renamed into place: the main thread does that after the batch) and the
    // error says which entry failed.
    queue = queue.then(() => {
      let i = 0;
      let size = 0;
      try {
        try {
          for (; i < m.items.length; i++) {
            restoreEntry({ type: 'restore', jobId: m.jobId, ...m.items[i] });
            size += m.items[i].entry.size;
          }
        } finally {
          closeRange();
        }
        parentPort!.postMessage({ type: 'read', jobId: m.jobId });
        parentPort!.postMessage({ type: 'done', jobId: m.jobId, size });
      } catch (err) {
        for (let k = 0; k < i; k++) rmSync(m.items[k].tmp, { force: true });
        const e = err as NodeJS.ErrnoException & { objectKey?: string; target?: boolean };
        parentPort!.postMessage({ type: 'read', jobId: m.jobId });
        parentPort!.postMessage({ type: 'error', jobId: m.jobId, index: i, message: e.message, code: e.code, phase: 'objectKey' in e ? 'integrity' : e.target ? 'target' : 'vault', objectKey: e.objectKey });
      }
    });
    return;
  }
  queue = queue.then(() => processFile(m.jobId, m.path, m.listed));
});
