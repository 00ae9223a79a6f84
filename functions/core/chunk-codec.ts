// How a chunk is encoded and sealed: the rules shared by the vault (on the
// main thread, with zstd and AES on the thread pool) and the chunk-pool
// workers (synchronously, in their own thread). One definition, so both write
// the same objects: [kind][12-byte nonce][ciphertext][16-byte tag], kind +
// object key as associated data, kind telling whether the plaintext is zstd.
//
// Runs under Node's own type stripping in workers: erasable TypeScript and
// built-in imports only.
import zlib from 'node:zlib';
import path from 'node:path';
import { createCipheriv, createDecipheriv, createHmac, randomFillSync } from 'node:crypto';
import { closeSync, fsync, openSync, rename, rmSync, writevSync } from 'node:fs';
import { OPEN_TEMPORARY, describeFileError, refusedLink, temporaryName, verifyDirectoriesSync } from './local-objects.ts';
import { promisify } from 'node:util';

/** Header byte of a sealed chunk: how its plaintext is encoded. */
export const CHUNK_RAW = 2;
export const CHUNK_ZSTD = 3;

/** Largest zstd output buffer. */
export const ZSTD_CHUNK = 2 * 1024 * 1024;

/**
 * Most bytes sealing adds to a chunk: header byte, 12-byte nonce, 16-byte tag,
 * and the flag byte that chunks sealed before the header carried the encoding
 * had inside. A chunk stored raw is the largest (zstd output is kept only when
 * smaller), so no sealed chunk of `size` plaintext bytes exceeds size + this.
 */
export const CHUNK_OVERHEAD = 1 + 12 + 16 + 1;

/** The largest object a chunk of `size` plaintext bytes can be stored as. */
export function maxSealedChunkBytes(size: number): number {
  return size + CHUNK_OVERHEAD;
}

export function chunkKey(id: string): string {
  return `chunks/${id.slice(0, 2)}/${id}`;
}

export function chunkAad(kind: number, key: string): Buffer {
  const b = Buffer.allocUnsafe(1 + Buffer.byteLength(key));
  b[0] = kind;
  b.write(key, 1);
  return b;
}

/**
 * zstd level for a chunk from a probe of its first 64 KiB: 0 (store raw: under
 * 10% saved, e.g. float32 weights save ~7%), 1 (saves 10-50%, e.g. database
 * pages: level 3 would take 1.5x the time to save 2-3% more) or 3 (text, logs).
 */
export function compressionLevel(data: Buffer): number {
  if (data.length < 256 * 1024) return 3;
  const sample = data.subarray(0, 64 * 1024);
  const z = zlib.zstdCompressSync(sample, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } });
  if (z.length >= sample.length * 0.9) return 0;
  return z.length >= sample.length * 0.5 ? 1 : 3;
}

/** zstd options with one output buffer sized for the worst case (no 2 MiB buffer for a small chunk, no pieces to join). */
export function zstdOptions(inputLength: number, level: number): zlib.ZstdOptions {
  return { chunkSize: Math.min(ZSTD_CHUNK, inputLength + (inputLength >> 8) + 1024), params: { [zlib.constants.ZSTD_c_compressionLevel]: level } };
}

/** Keeps zstd output only when it saves at least 3%. */
export function worthCompressing(compressed: number, original: number): boolean {
  return compressed < original * 0.97;
}

/**
 * Compresses (per compressionLevel) and seals a chunk synchronously; returns
 * the object as parts: header (kind, nonce), ciphertext, final block, tag.
 */
export function sealChunkParts(dataKey: Buffer, data: Buffer, id: string): Buffer[] {
  let kind = CHUNK_RAW;
  let payload = data;
  const level = compressionLevel(data);
  if (level > 0) {
    const z = zlib.zstdCompressSync(data, zstdOptions(data.length, level));
    if (worthCompressing(z.length, data.length)) { payload = z; kind = CHUNK_ZSTD; }
  }
  const head = Buffer.allocUnsafe(13);
  head[0] = kind;
  randomFillSync(head, 1, 12);
  const c = createCipheriv('aes-256-gcm', dataKey, head.subarray(1, 13));
  c.setAAD(chunkAad(kind, chunkKey(id)));
  const body = c.update(payload);
  const fin = c.final();
  return [head, body, fin, c.getAuthTag()];
}

/** Compresses (per compressionLevel) and seals a chunk synchronously into one ArrayBuffer. */
export function encodeChunkSync(dataKey: Buffer, data: Buffer, id: string): ArrayBuffer {
  const parts = sealChunkParts(dataKey, data, id);
  const ab = new ArrayBuffer(parts.reduce((n, p) => n + p.length, 0));
  const out = Buffer.from(ab);
  let n = 0;
  for (const p of parts) n += p.copy(out, n);
  return ab;
}

/** A chunk file written to its temporary name, not yet durable nor in place. */
export interface PendingChunkFile {
  fd: number;
  tmp: string;
  dest: string;
  size: number;
  /** The object's key, for messages. */
  key: string;
}

/**
 * Writes a sealed chunk into a vault directory (file://) under a temporary
 * name in its final directory (local-objects.ts: O_EXCL|O_NOFOLLOW, the
 * directories on the way checked not to be symlinks), synchronously.
 * commitChunkFile then makes it durable and puts it in place: together,
 * FileStorage.put's protocol (write, fsync, rename), with the fsync waited for
 * on the thread pool while the worker goes on. `dirs` remembers the
 * directories already checked or made. Errors name the chunk's key (and keep
 * their code); the temporary file is removed on failure.
 */
export function writeChunkFileSync(root: string, id: string, parts: readonly Buffer[], dirs: Set<string>): PendingChunkFile {
  const key = chunkKey(id);
  const dest = path.join(root, key);
  const tmp = temporaryName(dest);
  let size = 0;
  for (const p of parts) size += p.length;
  let fd: number;
  try {
    verifyDirectoriesSync(root, key, dirs, true);
    fd = openSync(tmp, OPEN_TEMPORARY, 0o600);
  } catch (err) {
    throw cannotWrite(key, err);
  }
  try {
    let rest = parts.filter((p) => p.length > 0);
    while (rest.length > 0) {
      let n = writevSync(fd, rest);
      while (rest.length > 0 && n >= rest[0].length) n -= rest.shift()!.length;
      if (n > 0) rest[0] = rest[0].subarray(n);
    }
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw cannotWrite(key, err);
  }
  return { fd, tmp, dest, size, key };
}

/** "cannot write chunks/ab/<id>: no space left on device (ENOSPC)", with the code (and the key of a refused link) kept. */
function cannotWrite(key: string, err: unknown): Error {
  const e = err as NodeJS.ErrnoException;
  const link = refusedLink(key, err); // a symlink or non-directory inside the vault: named, as damage
  if (link) return Object.assign(new Error(`cannot write ${key}: ${link.message}`, { cause: err }), { code: link.code, objectKey: link.objectKey });
  return Object.assign(new Error(`cannot write ${key}: ${describeFileError(err)}`, { cause: err }), { code: e.code });
}

const fsyncAsync = promisify(fsync);
const renameAsync = promisify(rename);

/** fsync (on the thread pool), close, rename into place; the temporary file is removed on failure. Returns the object's size. */
export async function commitChunkFile(p: PendingChunkFile): Promise<number> {
  try {
    try {
      await fsyncAsync(p.fd);
    } finally {
      closeSync(p.fd);
    }
    await renameAsync(p.tmp, p.dest);
  } catch (err) {
    rmSync(p.tmp, { force: true });
    throw cannotWrite(p.key, err);
  }
  return p.size;
}

/** Header byte of chunks sealed before they carried their encoding there: a flag byte (0 raw, 1 zstd) leads the plaintext. */
const LEGACY = 1;

/** A damaged or missing chunk, as the worker reports it: `objectKey` names the object. */
export interface ChunkDamage extends Error {
  objectKey: string;
}

function damage(message: string, objectKey: string): ChunkDamage {
  return Object.assign(new Error(message), { objectKey });
}

/**
 * Opens a sealed chunk synchronously (the sync twin of Vault.decodeChunk, with
 * its messages): authenticates it, bound to its key, decompresses it and checks
 * its size and, when `idKey` is given, its keyed id. Throws a ChunkDamage.
 */
export function openChunkSync(dataKey: Buffer, blob: Buffer, id: string, size: number, idKey?: Buffer): Buffer {
  const key = chunkKey(id);
  let kind = blob[0];
  if (blob.length < 1 + 12 + 16 || (kind !== CHUNK_RAW && kind !== CHUNK_ZSTD && kind !== LEGACY)) {
    throw damage(`${key}: not a memvault object (bad header or truncated)`, key);
  }
  let plain: Buffer;
  try {
    const d = createDecipheriv('aes-256-gcm', dataKey, blob.subarray(1, 13));
    d.setAAD(kind === LEGACY ? Buffer.from(key) : chunkAad(kind, key));
    d.setAuthTag(blob.subarray(blob.length - 16));
    const body = d.update(blob.subarray(13, blob.length - 16));
    const fin = d.final();
    plain = fin.length ? Buffer.concat([body, fin]) : body;
  } catch {
    throw damage(`${key}: authentication failed (object corrupt, truncated or moved)`, key);
  }
  if (kind === LEGACY) {
    kind = plain[0] === 0 ? CHUNK_RAW : plain[0] === 1 ? CHUNK_ZSTD : -1;
    plain = plain.subarray(1);
  }
  let data: Buffer;
  if (kind === CHUNK_RAW) data = plain;
  else if (kind === CHUNK_ZSTD) {
    try {
      data = zlib.zstdDecompressSync(plain, { chunkSize: Math.min(ZSTD_CHUNK, Math.max(64 * 1024, size)) });
    } catch {
      throw damage(`chunk ${id}: cannot decompress`, key);
    }
  } else throw damage(`chunk ${id}: unknown encoding`, key);
  if (idKey && createHmac('sha256', idKey).update(data).digest('hex') !== id) throw damage(`chunk ${id}: content does not match its id`, key);
  if (data.length !== size) throw damage(`chunk ${id}: ${data.length} bytes, the manifest says ${size}`, key);
  return data;
}
