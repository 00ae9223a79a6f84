// Pack files: many sealed chunks per object, so a tree of small files is a few
// objects of megabytes, not one object per chunk (after restic's packs).
//
//   packs/<id[0:2]>/<id>   [chunk][chunk]...[sealed header][u32 LE header length]
//
// Each chunk is stored exactly as a chunk object of memvault/1 was (crypto.ts:
// [codec][nonce][ciphertext][tag], bound to its chunk id), so a chunk moves
// between packs (repack, migrate) as opaque bytes. The header lists every
// chunk (id, offset, length, codec) and is sealed with the vault key, bound to
// the pack's own key: a pack is checked, and the index rebuilt, from the pack
// alone.
//
// PackWriter: chunks are appended to an open pack; at the target size it is
// sealed and uploaded while the next one fills (at most `maxUploads` uploads in
// flight). Where the storage can write an object in pieces (file://:
// Storage.openWrite, a temporary file renamed at commit) the open pack goes to
// it in pieces of 1 MiB as chunks arrive, so a pack costs about that much
// memory; elsewhere (S3, Azure) it is held until uploaded: memory is bounded
// by (maxUploads + 1) x the target size. Every `indexEvery` durable packs (default 4, 64 MiB) an index
// object naming them is written, so a long backup that is killed leaves most
// of its chunks findable for the next one; flush() uploads the open pack,
// waits for every upload, and writes the index object for the rest: an index
// entry never points at a pack that is not durable, and a manifest is written
// only after flush().
// A failed upload or index write takes its chunks out of the known set again,
// so nothing relies on them; what was written is at worst an unreferenced pack.
import type { ObjectWriter, Storage } from './ports.ts';
import { open, seal } from './crypto.ts';
import { IntegrityError, MemvaultError, PermanentError, errorMessage } from './errors.ts';
import { type ChunkIndex, type ChunkLoc, type KnownChunks, encodeIndexObject, indexKey, newObjectId } from './chunk-index.ts';

export const PACK_PREFIX = 'packs/';
/**
 * Default pack size: 16 MiB, as restic. Measured (bench/pack-size.ts, 5,000 files of 0.5-8 KiB
 * plus 40 MiB, file://, 2 shared cores): 4 MiB packs 18 objects, 8 MiB 11, 16 MiB 8, with
 * backup and restore times within the noise of each other (2-5 s); bigger packs mean fewer
 * objects and requests, and memory holds at most 3 packs per backup (48 MiB).
 * MEMVAULT_PACK_BYTES overrides it (at least 64 KiB, at most 1 GiB).
 */
export const DEFAULT_PACK_BYTES = 16 * 1024 * 1024;
const HEADER_MAGIC = 'MVP2';
const HEADER_ENTRY = 32 + 4 + 4 + 1;
/** Largest pack header read: ~40 bytes per chunk, a pack of 1 GiB of 64 KiB chunks is 16 Ki chunks. */
export const MAX_PACK_HEADER_BYTES = 16 * 1024 * 1024;

export function packKey(id: string): string {
  return `packs/${id.slice(0, 2)}/${id}`;
}

export function parsePackKey(key: string): string | null {
  const m = /^packs\/[0-9a-f]{2}\/([0-9a-f]{32})$/.exec(key);
  return m ? m[1] : null;
}

export function packBytesFromEnv(v = process.env.MEMVAULT_PACK_BYTES): number {
  if (!v) return DEFAULT_PACK_BYTES;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 64 * 1024 || n > 1024 ** 3) throw new PermanentError(`MEMVAULT_PACK_BYTES: expected a pack size in bytes between 65536 and 1073741824, got "${v}"`);
  return n;
}

export interface PackEntry {
  id: string;
  offset: number;
  length: number;
  kind: number;
}

/** The sealed header and its length word, appended to a pack's chunks. */
export function packTrailer(dataKey: Buffer, key: string, entries: readonly PackEntry[]): Buffer {
  const plain = Buffer.alloc(8 + entries.length * HEADER_ENTRY);
  plain.write(HEADER_MAGIC, 0, 'latin1');
  plain.writeUInt32LE(entries.length, 4);
  let o = 8;
  for (const e of entries) {
    o += Buffer.from(e.id, 'hex').copy(plain, o);
    o = plain.writeUInt32LE(e.offset, o);
    o = plain.writeUInt32LE(e.length, o);
    o = plain.writeUInt8(e.kind, o);
  }
  const sealed = seal(dataKey, plain, key);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(sealed.length);
  return Buffer.concat([sealed, len]);
}

/** Opens a pack's sealed header (without its length word); IntegrityError naming the pack. */
export function openPackHeader(dataKey: Buffer, key: string, sealed: Buffer, dataBytes: number): PackEntry[] {
  let plain: Buffer;
  try {
    plain = open(dataKey, sealed, key);
  } catch (err) {
    throw new IntegrityError(`pack ${key}: its header does not open (${errorMessage(err)})`, key);
  }
  if (plain.length < 8 || plain.toString('latin1', 0, 4) !== HEADER_MAGIC || plain.length !== 8 + plain.readUInt32LE(4) * HEADER_ENTRY) {
    throw new IntegrityError(`pack ${key}: its header is not a pack header`, key);
  }
  const n = plain.readUInt32LE(4);
  const out: PackEntry[] = [];
  let end = 0;
  for (let i = 0, o = 8; i < n; i++, o += HEADER_ENTRY) {
    const e = { id: plain.toString('hex', o, o + 32), offset: plain.readUInt32LE(o + 32), length: plain.readUInt32LE(o + 36), kind: plain[o + 40] };
    if (e.offset < end || e.offset + e.length > dataBytes) throw new IntegrityError(`pack ${key}: its header places chunk ${e.id} outside the pack`, key);
    end = e.offset + e.length;
    out.push(e);
  }
  return out;
}

/** Reads and opens a pack's header with two ranged reads (the length word, then the header). */
export async function readPackHeader(storage: Storage, dataKey: Buffer, key: string, size: number): Promise<PackEntry[]> {
  if (size < 4 + 29) throw new IntegrityError(`pack ${key}: ${size} bytes, too short to be a pack`, key);
  const len = (await storage.getRange(key, size - 4, 4)).readUInt32LE(0);
  if (len < 29 || len > Math.min(MAX_PACK_HEADER_BYTES, size - 4)) throw new IntegrityError(`pack ${key}: its header length ${len} does not fit the pack (${size} bytes)`, key);
  const sealed = await storage.getRange(key, size - 4 - len, len);
  return openPackHeader(dataKey, key, sealed, size - 4 - len);
}

/** Splits a whole pack object into its header entries (checked) and data. */
export function parsePack(dataKey: Buffer, key: string, blob: Buffer): PackEntry[] {
  if (blob.length < 4 + 29) throw new IntegrityError(`pack ${key}: ${blob.length} bytes, too short to be a pack`, key);
  const len = blob.readUInt32LE(blob.length - 4);
  if (len < 29 || len > blob.length - 4) throw new IntegrityError(`pack ${key}: its header length ${len} does not fit the pack (${blob.length} bytes)`, key);
  return openPackHeader(dataKey, key, blob.subarray(blob.length - 4 - len, blob.length - 4), blob.length - 4 - len);
}

interface OpenPack {
  id: string;
  /** Chunks not yet handed to `sink` (all of them when there is no sink). */
  parts: Buffer[];
  partsBytes: number;
  entries: PackEntry[];
  size: number;
  /** Where the pack is written in pieces as it fills (Storage.openWrite), opened with its first chunk. */
  sink?: Promise<ObjectWriter>;
  /** The pieces handed to the sink, in order; the first failure is kept in `error`. */
  writing: Promise<void>;
  error?: unknown;
}

/** Bytes of an open pack held before they go to its sink (Storage.openWrite). */
const STREAM_PIECE = 1024 * 1024;

interface Durable {
  id: string;
  entries: PackEntry[];
}

export interface PackWriterOptions {
  /** @default packBytesFromEnv() */
  targetBytes?: number;
  /** Packs uploading at once. @default 2 */
  maxUploads?: number;
  /** Write open packs in pieces where the storage can (Storage.openWrite). @default true */
  stream?: boolean;
  /** Write an index object whenever this many packs are durable and not indexed. @default 4 */
  indexEvery?: number;
  /** Called once per pack stored (stored bytes). */
  onPackStored?: (key: string, bytes: number) => void;
  /** Test hook: called before each step (pack upload, index write) with its key; a throw is a crash there. */
  step?: (what: 'pack' | 'index', key: string) => void | Promise<void>;
}

export class PackWriter {
  private current: OpenPack | null = null;
  private uploads = new Set<Promise<void>>();
  private durable: Durable[] = [];
  private failure: unknown;
  private flushing: Promise<void> = Promise.resolve();
  readonly targetBytes: number;
  private readonly maxUploads: number;
  /** Packs and index objects written (for stats and tests). */
  readonly written: { packs: string[]; indexes: string[] } = { packs: [], indexes: [] };

  constructor(
    private readonly storage: Storage,
    private readonly dataKey: Buffer,
    /** Where appended ids are known (pending) and, once indexed, inserted. */
    private readonly known: KnownChunks,
    private readonly o: PackWriterOptions = {},
  ) {
    this.targetBytes = o.targetBytes ?? packBytesFromEnv();
    this.maxUploads = o.maxUploads ?? 2;
  }

  /** Bytes of the open pack so far. */
  get openBytes(): number { return this.current?.size ?? 0; }

  /** Bytes of the open pack held in memory (not yet handed to its sink). */
  get heldBytes(): number { return this.current?.partsBytes ?? 0; }

  /**
   * Appends a sealed chunk (its parts, as Vault.encodeChunk or the workers make them). The
   * caller has marked `id` known; on a later failure it is unmarked here. Waits while
   * `maxUploads` full packs are uploading.
   */
  async add(id: string, parts: readonly Buffer[]): Promise<void> {
    if (this.failure) throw this.failure;
    const p = (this.current ??= this.openPack());
    let length = 0;
    for (const b of parts) { if (b.length) { p.parts.push(b); length += b.length; } }
    p.entries.push({ id, offset: p.size, length, kind: parts[0][0] });
    p.size += length;
    p.partsBytes += length;
    // Adds may overlap (several files' chunks): the pack is taken off `current` before any
    // await, so exactly one add uploads it.
    if (p.size >= this.targetBytes) {
      this.current = null;
      while (this.uploads.size >= this.maxUploads) await Promise.race(this.uploads);
      this.upload(p);
      if (this.failure) throw this.failure;
    } else if (p.sink && p.partsBytes >= STREAM_PIECE) {
      this.pour(p);
      // At most about one piece waits behind the one being written.
      await p.writing;
    }
  }

  private openPack(): OpenPack {
    const id = newObjectId();
    const p: OpenPack = { id, parts: [], partsBytes: 0, entries: [], size: 0, writing: Promise.resolve() };
    if (this.storage.openWrite && this.o.stream !== false) {
      p.sink = this.storage.openWrite(packKey(id));
      p.sink.catch((err) => { p.error ??= err; });
    }
    return p;
  }

  /** Hands the chunks held so far to the pack's sink, after the pieces before them. */
  private pour(p: OpenPack, tail: Buffer[] = []): void {
    const piece = [...p.parts, ...tail];
    p.parts = [];
    p.partsBytes = 0;
    p.writing = p.writing.then(async () => {
      if (p.error) return;
      try {
        await (await p.sink!).write(piece);
      } catch (err) {
        p.error ??= err;
      }
    });
  }

  private upload(p: OpenPack): void {
    const key = packKey(p.id);
    const u: Promise<void> = (async () => {
      await this.o.step?.('pack', key);
      const trailer = packTrailer(this.dataKey, key, p.entries);
      if (p.sink) {
        this.pour(p, [trailer]);
        await p.writing;
        if (p.error) throw p.error;
        await (await p.sink).commit();
      } else {
        await this.storage.put(key, [...p.parts, trailer]);
      }
      this.written.packs.push(key);
      this.o.onPackStored?.(key, p.size + trailer.length);
      this.durable.push({ id: p.id, entries: p.entries });
      // Index objects for disjoint sets of packs may be written concurrently (each takes what is durable).
      if (this.durable.length >= (this.o.indexEvery ?? 4)) await this.writeIndex();
    })().catch(async (err) => {
      await this.dropSink(p);
      for (const e of p.entries) this.known.delete(e.id);
      this.failure ??= err instanceof MemvaultError ? err : new PermanentError(`storing pack ${key} in ${this.storage.url}: ${errorMessage(err)}`, { cause: err });
    }).finally(() => { this.uploads.delete(u); });
    this.uploads.add(u);
  }

  /**
   * Makes every chunk added so far durable and findable: the open pack is uploaded, every
   * upload waited for, then one index object for the packs is written. Throws the first
   * failure (the chunks concerned are then no longer known).
   */
  flush(): Promise<void> {
    const run = this.flushing.then(() => this.flushNow());
    this.flushing = run.catch(() => undefined);
    return run;
  }

  private async flushNow(): Promise<void> {
    if (this.current) {
      const p = this.current;
      this.current = null;
      while (this.uploads.size >= this.maxUploads) await Promise.race(this.uploads);
      this.upload(p);
    }
    while (this.uploads.size > 0) await Promise.race(this.uploads);
    await this.writeIndex();
    if (this.failure) throw this.failure;
  }

  /** Writes one index object for the packs durable so far (none: nothing). */
  private async writeIndex(): Promise<void> {
    const done = this.durable;
    this.durable = [];
    if (done.length > 0) {
      const entries: [string, ChunkLoc][] = done.flatMap((d) => d.entries.map((e) => [e.id, { pack: d.id, offset: e.offset, length: e.length, kind: e.kind }] as [string, ChunkLoc]));
      const key = indexKey(newObjectId());
      try {
        await this.o.step?.('index', key);
        await this.storage.put(key, encodeIndexObject(this.dataKey, key, entries));
      } catch (err) {
        for (const [id] of entries) this.known.delete(id);
        this.failure ??= err;
        throw err;
      }
      this.written.indexes.push(key);
      const ix = this.known as Partial<ChunkIndex>;
      for (const [id, loc] of entries) ix.insert?.(id, loc);
    }
  }

  /** Removes what an open pack wrote to its sink (a temporary), after its pieces settle. */
  private async dropSink(p: OpenPack): Promise<void> {
    if (!p.sink) return;
    await p.writing;
    await (await p.sink.catch(() => null))?.abort().catch(() => undefined);
  }

  /** After a failure: drops the open pack (its chunks no longer known, its temporary removed). */
  abandon(): Promise<void> {
    const p = this.current;
    this.current = null;
    if (!p) return Promise.resolve();
    for (const e of p.entries) this.known.delete(e.id);
    return this.dropSink(p);
  }
}

/** The object key a missing pack error names. */
export function missingPack(url: string, key: string, id: string): IntegrityError {
  return new IntegrityError(`chunk ${id}: its pack ${key} is missing from ${url}`, key);
}
