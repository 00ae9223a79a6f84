// How a chunk is encoded and sealed: the rules shared by the vault (on the
// main thread, with zstd and AES on the thread pool) and the chunk-pool
// workers (synchronously, in their own thread). One definition, so both write
// the same objects: [kind][12-byte nonce][ciphertext][16-byte tag], kind +
// object key as associated data, kind telling whether the plaintext is zstd.
//
// Runs under Node's own type stripping in workers: erasable TypeScript and
// built-in imports only.
import zlib from 'node:zlib';
import { createCipheriv, randomFillSync } from 'node:crypto';

/** Header byte of a sealed chunk: how its plaintext is encoded. */
export const CHUNK_RAW = 2;
export const CHUNK_ZSTD = 3;

/** Largest zstd output buffer. */
export const ZSTD_CHUNK = 2 * 1024 * 1024;

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
 * 10% saved, e.g. float32 weights save ~7%), 1 (saves 10-20%) or 3.
 */
export function compressionLevel(data: Buffer): number {
  if (data.length < 256 * 1024) return 3;
  const sample = data.subarray(0, 64 * 1024);
  const z = zlib.zstdCompressSync(sample, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } });
  if (z.length >= sample.length * 0.9) return 0;
  return z.length >= sample.length * 0.8 ? 1 : 3;
}

/** zstd options with one output buffer sized for the worst case (no 2 MiB buffer for a small chunk, no pieces to join). */
export function zstdOptions(inputLength: number, level: number): zlib.ZstdOptions {
  return { chunkSize: Math.min(ZSTD_CHUNK, inputLength + (inputLength >> 8) + 1024), params: { [zlib.constants.ZSTD_c_compressionLevel]: level } };
}

/** Keeps zstd output only when it saves at least 3%. */
export function worthCompressing(compressed: number, original: number): boolean {
  return compressed < original * 0.97;
}

/** Compresses (per compressionLevel) and seals a chunk synchronously into one ArrayBuffer. */
export function encodeChunkSync(dataKey: Buffer, data: Buffer, id: string): ArrayBuffer {
  let kind = CHUNK_RAW;
  let payload = data;
  const level = compressionLevel(data);
  if (level > 0) {
    const z = zlib.zstdCompressSync(data, zstdOptions(data.length, level));
    if (worthCompressing(z.length, data.length)) { payload = z; kind = CHUNK_ZSTD; }
  }
  const ab = new ArrayBuffer(13 + payload.length + 16);
  const out = Buffer.from(ab);
  out[0] = kind;
  randomFillSync(out, 1, 12);
  const c = createCipheriv('aes-256-gcm', dataKey, out.subarray(1, 13));
  c.setAAD(chunkAad(kind, chunkKey(id)));
  let n = 13 + c.update(payload).copy(out, 13);
  n += c.final().copy(out, n);
  c.getAuthTag().copy(out, n);
  return ab;
}
