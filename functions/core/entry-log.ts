// Entry logs: a backup's entries written as they come, in parts, instead of one
// list in memory (issue 11: memory flat in the number of files).
//
// A manifest of a few thousand entries keeps them inline (`entries`). Past that,
// the entries go out as they are produced, as newline-separated JSON in *entry
// parts*: each part is a stream stored through the backup's writer like any
// file, so it is chunked, deduplicated, compressed, sealed and packed, and the
// manifest (format memvault-manifest/2) lists the parts (`entryParts`: chunks,
// size, SHA-256, number of entries) instead of the entries. The manifest stays
// authenticated and small; each part is checked against its SHA-256 when read.
//
// Part boundaries are content-defined (after at least PART_MIN bytes, an entry
// whose path hashes to 0 mod 64 ends the part; PART_MAX at most), so an
// incremental backup whose changes are clustered reuses the parent's unchanged
// parts as chunks the vault already has.
//
// Entries whose content is still being stored (files chunked on workers) hold a
// slot, so the order stays the walk's; the log waits for the oldest slot when
// more than MAX_PENDING entries are queued behind it.
import type { BackupWriter } from './writer.ts';
import type { ChunkRef, Entry, EntryPart, Manifest, ManifestHeader } from './manifest.ts';
import { IntegrityError } from './errors.ts';
import type { Vault } from './vault.ts';
import { readEntry } from './writer.ts';

/** Manifests with at most this many entries keep them inline. */
export const INLINE_MAX_ENTRIES = 4096;
const PART_MIN = 256 * 1024;
const PART_MAX = 1024 * 1024;
const MAX_PENDING = 16_384;

/** FNV-1a over the path's UTF-16 code units: cheap, stable, independent of the vault. */
function pathHash(p: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < p.length; i++) h = Math.imul(h ^ p.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

type Slot = { entry: Entry | null | undefined; filled?: () => void };

export interface StoredEntries {
  /** Inline entries (small backups), or undefined when they went to parts. */
  entries?: Entry[];
  entryParts?: EntryPart[];
  count: number;
}

export class EntryLog {
  private queue: Slot[] = [];
  private head = 0;
  /** Entries not yet in a part (while no part has been written, the inline candidates). */
  private held: Entry[] = [];
  private lines: string[] = [];
  private lineBytes = 0;
  private parts: EntryPart[] = [];
  private count = 0;
  private finished = false;

  constructor(private readonly writer: BackupWriter, private readonly o: { inlineMax?: number; partMin?: number; partMax?: number } = {}) {}

  /** Appends an entry whose content is known. */
  async add(e: Entry): Promise<void> {
    this.queue.push({ entry: e });
    await this.pump();
  }

  /**
   * Reserves the next place for an entry whose content is being stored; `fill`
   * it with the entry, or with null to leave it out (a file that could not be read).
   */
  async reserve(): Promise<(e: Entry | null) => void> {
    const slot: Slot = { entry: undefined };
    this.queue.push(slot);
    await this.pump();
    return (e) => {
      slot.entry = e;
      slot.filled?.();
    };
  }

  /** Entries in the log so far (reserved places included). */
  get length(): number {
    return this.count + this.held.length + (this.queue.length - this.head);
  }

  /** Moves ready entries out of the queue; writes full parts; waits when too many wait behind an open slot. */
  private async pump(): Promise<void> {
    for (;;) {
      while (this.head < this.queue.length && this.queue[this.head].entry !== undefined) {
        const e = this.queue[this.head++].entry;
        if (e) await this.take(e);
      }
      if (this.head > 4096 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      if (this.queue.length - this.head <= MAX_PENDING) return;
      const slot = this.queue[this.head];
      await new Promise<void>((resolve) => { slot.filled = resolve; });
    }
  }

  private async take(e: Entry): Promise<void> {
    const inlineMax = this.o.inlineMax ?? INLINE_MAX_ENTRIES;
    if (this.parts.length === 0 && this.held.length <= inlineMax) {
      this.held.push(e);
      if (this.held.length <= inlineMax) return;
      // Too many to stay inline: everything held so far goes to parts.
      const held = this.held;
      this.held = [];
      for (const h of held) await this.line(h);
      return;
    }
    await this.line(e);
  }

  private async line(e: Entry): Promise<void> {
    const s = JSON.stringify(e);
    this.lines.push(s);
    this.lineBytes += Buffer.byteLength(s) + 1;
    const min = this.o.partMin ?? PART_MIN;
    if (this.lineBytes >= (this.o.partMax ?? PART_MAX) || (this.lineBytes >= min && (pathHash(e.path) & 63) === 0)) await this.cut();
  }

  private async cut(): Promise<void> {
    if (this.lines.length === 0) return;
    const n = this.lines.length;
    const buf = Buffer.from(this.lines.join('\n') + '\n');
    this.lines = [];
    this.lineBytes = 0;
    const r = await this.writer.writeMetadata(buf);
    this.parts.push({ chunks: r.chunks, size: r.size, sha256: r.sha256, count: n });
    this.count += n;
  }

  /** Every entry in: the inline list, or the parts (the last one written now). */
  async finish(): Promise<StoredEntries> {
    if (this.finished) throw new Error('EntryLog.finish called twice');
    this.finished = true;
    await this.pump();
    if (this.head < this.queue.length) throw new Error(`EntryLog.finish: ${this.queue.length - this.head} entries still being stored`);
    if (this.parts.length === 0 && this.lines.length === 0) return { entries: this.held, count: this.held.length };
    await this.cut();
    return { entryParts: this.parts, count: this.count };
  }
}

/**
 * The entries of a manifest in order: its inline list, or its parts read from
 * the vault one at a time (each checked against its SHA-256 and entry count).
 */
export async function* readEntries(vault: Vault, m: ManifestHeader): AsyncGenerator<Entry> {
  if (m.entries) {
    yield* m.entries;
    return;
  }
  for (const [i, part] of (m.entryParts ?? []).entries()) {
    const what = `${m.component}/${m.id} entry part ${i + 1} of ${m.entryParts!.length}`;
    const bufs: Buffer[] = [];
    try {
      for await (const b of readEntry(vault, { path: what, type: 'file', size: part.size, sha256: part.sha256, chunks: part.chunks })) bufs.push(b);
    } catch (err) {
      // Named as the part of that backup (a restore, verify or prune stops on it).
      if (err instanceof IntegrityError && !err.message.startsWith(what)) throw new IntegrityError(`${what}: ${err.message}`, err.objectKey);
      throw err;
    }
    const text = Buffer.concat(bufs).toString('utf8');
    let n = 0;
    let start = 0;
    for (let end = text.indexOf('\n'); end >= 0; end = text.indexOf('\n', start)) {
      let e: Entry;
      try {
        e = JSON.parse(text.slice(start, end));
      } catch {
        throw new IntegrityError(`${what}: entry ${n + 1} does not decode`);
      }
      start = end + 1;
      n++;
      yield e;
    }
    if (n !== part.count || start !== text.length) throw new IntegrityError(`${what}: ${n} entries, the manifest says ${part.count}`);
  }
}

/** All entries of a manifest in one list (small manifests; drivers with a handful of streams). */
export async function loadEntries(vault: Vault, m: ManifestHeader): Promise<Entry[]> {
  if (m.entries) return m.entries;
  const out: Entry[] = [];
  for await (const e of readEntries(vault, m)) out.push(e);
  return out;
}

/**
 * Every chunk a manifest needs: its entry parts' chunks first (without them the
 * entries cannot be read), then each entry's, streamed.
 */
export async function* manifestChunks(vault: Vault, m: ManifestHeader): AsyncGenerator<ChunkRef> {
  for (const p of m.entryParts ?? []) yield* p.chunks;
  for await (const e of readEntries(vault, m)) if (e.chunks) yield* e.chunks;
}

/** The number of entries of a manifest without reading its parts. */
export function entryCount(m: ManifestHeader): number {
  return m.entries ? m.entries.length : (m.entryParts ?? []).reduce((a, p) => a + p.count, 0);
}

/** The manifest with its entries in memory (drivers whose backups hold a handful of entries). */
export async function withEntries(vault: Vault, m: ManifestHeader): Promise<Manifest> {
  return m.entries ? (m as Manifest) : { ...m, entries: await loadEntries(vault, m) };
}
