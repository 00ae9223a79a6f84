// A worker thread of the chunk pool (chunk-pool.ts): reads one file at a time
// and does all the work of a backup for it — content-defined chunking, the
// file's SHA-256, each chunk's keyed id, and, for chunks the vault did not have
// when the backup started, zstd (unless incompressible), AES-256-GCM and, on a
// local vault (file://), the write of the object itself (temporary file,
// fsync, rename: FileStorage.put's protocol). On other backends the sealed
// object goes to the main thread, which stores it. The object layout is
// exactly that of Vault.encodeChunk: [kind][12-byte nonce][ciphertext][tag],
// with kind + object key as associated data.
//
// Memory: the file is read into one window of (largest chunk + one read)
// bytes; cut points are found in place (CutFinder) and each chunk is hashed,
// sealed and written straight from the window, so no chunk is copied or kept.
//
// This file runs under Node's own type stripping (workers do not inherit the
// CLI's loader): erasable TypeScript only, and imports of such modules only.
import { parentPort, workerData } from 'node:worker_threads';
import { openSync, readSync, closeSync } from 'node:fs';
import { createHash, createHmac } from 'node:crypto';
import { CutFinder, type ChunkerParams } from './chunker.ts';
import { encodeChunkSync, sealChunkParts, writeChunkFileSync } from './chunk-codec.ts';

interface Init {
  idKey: Uint8Array;
  dataKey: Uint8Array;
  gear: Uint32Array;
  params: ChunkerParams;
  known: string[];
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
const inflight = new Int32Array(init.credit);
const win = Buffer.allocUnsafeSlow(init.params.max + READ);
const dirs = new Set<string>();

/** Blocks while the main thread has too much of this worker's output still to store. */
function waitForRoom(bytes: number): void {
  for (;;) {
    const cur = Atomics.load(inflight, 0);
    if (cur === 0 || cur + bytes <= init.maxInflight) break;
    Atomics.wait(inflight, 0, cur, 1000);
  }
  Atomics.add(inflight, 0, bytes);
}

/** Writes a chunk file, trying again (after 50, 100 ms) on a transient error. */
function store(id: string, parts: Buffer[]): number {
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

function processFile(jobId: number, path: string): void {
  const fd = openSync(path, 'r');
  try {
    const finder = new CutFinder(init.gear, init.params);
    const hash = createHash('sha256');
    const chunks: { id: string; size: number }[] = [];
    let size = 0;
    const emit = (chunk: Buffer) => {
      const id = createHmac('sha256', idKey).update(chunk).digest('hex');
      chunks.push({ id, size: chunk.length });
      if (known.has(id)) {
        parentPort!.postMessage({ type: 'chunk', jobId, id, size: chunk.length, sealed: null });
        return;
      }
      known.add(id);
      if (init.localRoot) {
        let stored: number;
        try {
          stored = store(id, sealChunkParts(dataKey, chunk, id));
        } catch (err) {
          known.delete(id);
          const e = err as NodeJS.ErrnoException;
          throw Object.assign(new StoreError(`storing chunk ${id} in ${init.localRoot}: ${e.message}`), { code: e.code });
        }
        parentPort!.postMessage({ type: 'chunk', jobId, id, size: chunk.length, sealed: null, stored });
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
        finder.rebase(start);
        len -= start;
        start = 0;
      }
      const n = readSync(fd, win, len, READ, null);
      if (n > 0) hash.update(win.subarray(len, len + n));
      len += n;
      size += n;
      for (let cut; (cut = finder.next(win, start, len, n === 0)) >= 0; start = cut) emit(win.subarray(start, cut));
      if (n === 0) break;
    }
    parentPort!.postMessage({ type: 'done', jobId, size, sha256: hash.digest('hex'), chunks });
  } finally {
    closeSync(fd);
  }
}

parentPort!.on('message', (m: { type: 'file'; jobId: number; path: string }) => {
  try {
    processFile(m.jobId, m.path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ type: 'error', jobId: m.jobId, message: e.message, code: e.code, phase: err instanceof StoreError ? 'store' : 'read' });
  }
});
