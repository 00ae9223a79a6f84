// BackupWriter: turns byte streams into chunks in the vault.
//
// stream -> content-defined chunks -> keyed id -> (already in the vault? skip)
//        -> zstd (unless incompressible) -> AES-256-GCM -> storage.put
// Up to `concurrency` chunks are encoded and uploaded at once; the producer
// waits when that many are in flight, so memory stays at about
// (concurrency + 1) x max chunk size whatever the size of the stream.
import { createHash } from 'node:crypto';
import type { Vault } from './vault.ts';
import { chunkStream } from './chunker.ts';
import type { ChunkRef, Entry } from './manifest.ts';
import { IntegrityError } from './errors.ts';

export interface WriterStats {
  bytesRead: number;
  bytesTotal: number;
  bytesUnchanged: number;
  newBytes: number;
  bytesStored: number;
  chunksTotal: number;
  chunksNew: number;
  entries: number;
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
  private failure: unknown;
  /** Called after each chunk with the running totals (for progress output). */
  onProgress?: (s: WriterStats) => void;

  constructor(
    readonly vault: Vault,
    /** Chunk ids already in the vault (and ones this writer adds). */
    private readonly known: Set<string>,
    private readonly concurrency = 6,
  ) {}

  /** Stores a stream's bytes and returns its chunk list and checksum. */
  async writeStream(src: AsyncIterable<Uint8Array>): Promise<StreamResult> {
    const hash = createHash('sha256');
    const chunks: ChunkRef[] = [];
    let size = 0;
    for await (const chunk of chunkStream(src, this.vault.keys.gear, this.vault.chunker)) {
      if (this.failure) throw this.failure;
      hash.update(chunk);
      size += chunk.length;
      const ref: ChunkRef = { id: '', size: chunk.length };
      chunks.push(ref);
      this.stats.chunksTotal++;
      this.stats.bytesRead += chunk.length;
      await this.schedule(chunk, ref);
      this.onProgress?.(this.stats);
    }
    await this.drain();
    this.stats.bytesTotal += size;
    this.stats.entries++;
    return { size, sha256: hash.digest('hex'), chunks };
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
   * `concurrency` chunks are in flight.
   */
  private async schedule(chunk: Buffer, ref: ChunkRef): Promise<void> {
    while (this.inflight.size >= this.concurrency) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
    const p: Promise<void> = (async () => {
      const id = await this.vault.chunkIdAsync(chunk);
      ref.id = id;
      if (this.known.has(id)) return;
      this.known.add(id);
      this.stats.chunksNew++;
      this.stats.newBytes += chunk.length;
      try {
        const enc = await this.vault.encodeChunk(chunk, id);
        await this.vault.putChunk(enc);
        this.stats.bytesStored += enc.blob.length;
      } catch (err) {
        this.known.delete(id);
        throw err;
      }
    })().catch((err) => {
      this.failure ??= err;
    }).finally(() => {
      this.inflight.delete(p);
    });
    this.inflight.add(p);
  }

  /** Waits for every upload; throws the first failure. */
  async drain(): Promise<void> {
    await Promise.all(this.inflight);
    if (this.failure) throw this.failure;
  }
}

/**
 * Reads the bytes of an entry back from the vault, chunk by chunk, checking
 * each chunk (authentication + id) and, at the end, the entry's SHA-256.
 * Fetches ahead up to `prefetch` chunks.
 */
export async function* readEntry(vault: Vault, entry: Entry, prefetch = 4): AsyncGenerator<Buffer> {
  const chunks = entry.chunks ?? [];
  const hash = createHash('sha256');
  const pending: Promise<Buffer>[] = [];
  let next = 0;
  const fill = () => {
    while (pending.length < prefetch && next < chunks.length) {
      const p = vault.getChunk(chunks[next++].id);
      p.catch(() => undefined); // handled when awaited
      pending.push(p);
    }
  };
  let size = 0;
  fill();
  while (pending.length > 0) {
    const data = await pending.shift()!;
    fill();
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
