// A worker thread of the chunk pool (chunk-pool.ts): reads one file at a time
// and does all the CPU work of a backup for it — content-defined chunking,
// the file's SHA-256, each chunk's keyed id, and, for chunks the vault did not
// have when the backup started, zstd (unless incompressible) and AES-256-GCM —
// so that with two or more cores, files are processed in parallel and the main
// thread only stores sealed chunks. The object layout is exactly that of
// Vault.encodeChunk: [kind][12-byte nonce][ciphertext][16-byte tag], with
// kind + object key as associated data.
//
// This file runs under Node's own type stripping (workers do not inherit the
// CLI's loader): erasable TypeScript only, and imports of such modules only.
import { parentPort, workerData } from 'node:worker_threads';
import { openSync, readSync, closeSync } from 'node:fs';
import { createHash, createHmac } from 'node:crypto';
import { Chunker, type ChunkerParams } from './chunker.ts';
import { encodeChunkSync } from './chunk-codec.ts';

interface Init {
  idKey: Uint8Array;
  dataKey: Uint8Array;
  gear: Uint32Array;
  params: ChunkerParams;
  known: string[];
  /** [0]: bytes this worker has posted that the main thread has not stored yet. */
  credit: SharedArrayBuffer;
  maxInflight: number;
}

const READ = 4 * 1024 * 1024;

const init = workerData as Init;
const idKey = Buffer.from(init.idKey);
const dataKey = Buffer.from(init.dataKey);
const known = new Set(init.known);
const inflight = new Int32Array(init.credit);
const ring = Array.from({ length: Math.ceil(init.params.max / READ) + 2 }, () => Buffer.allocUnsafeSlow(READ));


/** Blocks while the main thread has too much of this worker's output still to store. */
function waitForRoom(bytes: number): void {
  for (;;) {
    const cur = Atomics.load(inflight, 0);
    if (cur === 0 || cur + bytes <= init.maxInflight) break;
    Atomics.wait(inflight, 0, cur, 1000);
  }
  Atomics.add(inflight, 0, bytes);
}

function processFile(jobId: number, path: string): void {
  const fd = openSync(path, 'r');
  try {
    const chunker = new Chunker(init.gear, init.params);
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
      const sealed = encodeChunkSync(dataKey, chunk, id);
      waitForRoom(sealed.byteLength);
      parentPort!.postMessage({ type: 'chunk', jobId, id, size: chunk.length, sealed }, [sealed]);
    };
    for (let k = 0; ; k++) {
      // A ring of read buffers instead of a new one per read: a pending chunk (at most the
      // maximum chunk size) spans at most three consecutive reads, so the fourth is free.
      const buf = ring[k % ring.length];
      const n = readSync(fd, buf, 0, READ, null);
      if (n === 0) break;
      const data = buf.subarray(0, n);
      hash.update(data);
      size += n;
      for (const c of chunker.push(data)) emit(c);
    }
    const last = chunker.finish();
    if (last) emit(last);
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
    parentPort!.postMessage({ type: 'error', jobId: m.jobId, message: e.message, code: e.code });
  }
});
