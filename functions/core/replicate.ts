// Replication to the secondary (DR) vault. Objects never change once written,
// so copying what the secondary lacks is idempotent and resumable. Objects are
// copied as sealed bytes; both vaults share the vault secret (wrapped by each
// region's own key), so a copy opens on its own.
//
// What counts is what opens: the source's catalog is read under the vault key
// (core/catalog.ts), and only backups that open are copied; names that do not
// open are reported, never copied. Per backup, oldest first: every pack
// holding a chunk it needs that the secondary's index lacks is read,
// authenticated (header and every chunk) and copied whole; then an index
// object naming those packs' chunks (from their authenticated headers) is
// written to the secondary; then the manifest is copied and read back from the
// secondary (its SHA-256 must be the source's); then its head. A run killed
// in between leaves packs (reused by the next run, which indexes them) and
// never a manifest whose chunks the secondary cannot find. Retention records go too, so the secondary's chains
// show the same deliberate gaps.
//
// Replication holds a shared lock on both vaults for its whole run: a prune of
// the source cannot remove what is being copied, a prune of the secondary
// cannot remove chunks just copied before their manifest arrives.
//
// A failure keeps its error class (the state machine's Retry matches on it)
// and its message names the backups left uncopied; the next run resumes
// with them, oldest first.
import { manifestChunks } from './entry-log.ts';
import type { Vault } from './vault.ts';
import { MAX_MANIFEST_BYTES, rereadOnce } from './vault.ts';
import { type ChunkLoc, encodeIndexObject, indexKey, newObjectId } from './chunk-index.ts';
import { packKey, parsePack, readPackHeader } from './packs.ts';
import { chunkKey } from './chunk-codec.ts';
import { pausePoint } from './pause.ts';
import { acquireBackupLock } from './backup.ts';
import { type CatalogEntry, digestOf, readCatalog } from './catalog.ts';
import { IntegrityError, NotFoundError, PermanentError } from './errors.ts';

export interface ReplicateReport {
  from: string;
  to: string;
  chunksCopied: number;
  manifestsCopied: number;
  bytesCopied: number;
  alreadyPresent: number;
  /** Objects of the source that are not backups of this vault (or broken links): reported, not copied. */
  notCopied: { key: string; problem: string }[];
  durationMs: number;
}

/**
 * The error that stopped replication, its class (and so its ASL error name)
 * kept, its message naming the backups not copied: the one alert of a failed
 * replication says which components the secondary lacks.
 */
function withNotCopied(err: unknown, left: CatalogEntry[], to: string): unknown {
  if (!(err instanceof Error) || left.length === 0) return err;
  const shown = left.slice(0, 20).map((e) => `${e.component}/${e.id}`);
  const components = [...new Set(left.map((e) => e.component))];
  err.message += `; not copied to ${to}: ${left.length} backup(s) of ${components.join(', ')} (${shown.join(', ')}${left.length > shown.length ? `, and ${left.length - shown.length} more` : ''})`;
  return err;
}

async function names(vault: Vault, prefix: string): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for await (const o of vault.storage.list(prefix)) m.set(o.key, o.size);
  return m;
}

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    for (let i = next++; i < items.length; i = next++) await fn(items[i]);
  }));
}

export async function replicate(
  source: Vault,
  dest: Vault,
  o: { concurrency?: number; lockWaitMs?: number; onProgress?: (done: number, total: number) => void; /** The clock backups are judged by (future-dated ones are damage). @default now */ now?: Date } = {},
): Promise<ReplicateReport> {
  const t0 = Date.now();
  if (source.id !== dest.id) {
    throw new PermanentError(`${dest.storage.url} is vault ${dest.id}, not a replica of ${source.storage.url} (vault ${source.id}); run \`memvault init\` to create the secondary as a replica`);
  }
  const waitMs = o.lockWaitMs ?? 30_000;
  const srcLock = await acquireBackupLock(source, waitMs, 'replicate');
  let dstLock;
  try {
    dstLock = await acquireBackupLock(dest, waitMs, 'replicate');
  } catch (err) {
    await srcLock.release().catch(() => undefined);
    throw err;
  }
  try {
    const cat = await readCatalog(source, { now: o.now });
    const [dstManifests, dstTombs, dstHeads] = await Promise.all([
      names(dest, 'manifests/'), names(dest, 'forgotten/'), names(dest, 'heads/'),
    ]);
    const srcIndex = await source.listChunks();
    const dstPacks = await dest.listPacks();
    const dstChunks = await dest.listChunks();
    pausePoint('replicate-listed');
    const report: ReplicateReport = {
      from: source.storage.url, to: dest.storage.url, chunksCopied: 0, manifestsCopied: 0, bytesCopied: 0, alreadyPresent: 0,
      notCopied: cat.damaged.filter((d) => d.key.startsWith('manifests/')).map((d) => ({ key: d.key, problem: d.problem })), durationMs: 0,
    };
    // Oldest first, so the secondary's chain grows in order.
    const todo: CatalogEntry[] = [];
    for (const e of [...cat.entries, ...cat.future].sort((a, b) => a.time.getTime() - b.time.getTime())) {
      if (dstManifests.has(e.key) || dstTombs.has(`forgotten/${e.component}/${e.id}`)) report.alreadyPresent++;
      else todo.push(e);
    }
    let done = 0;
    try {
      for (const e of todo) {
        const m = await source.readManifestHeader(e.key);
        const packsNeeded = new Set<string>();
        // Every chunk the backup needs, its entry parts' first.
        for await (const c of manifestChunks(source, m)) {
          if (dstChunks.get(c.id)) continue;
          const loc = srcIndex.get(c.id);
          if (!loc) throw new IntegrityError(`replicate: chunk ${c.id}, needed by backup ${e.id} of ${e.component}, is missing from ${source.storage.url}; nothing of that backup was recorded in ${dest.storage.url}`, chunkKey(c.id));
          packsNeeded.add(loc.pack);
        }
        const entries: [string, ChunkLoc][] = [];
        await pool([...packsNeeded], o.concurrency ?? 4, async (pack) => {
          const key = packKey(pack);
          if (dstPacks.has(key)) {
            // Copied by a run that stopped before indexing it: its header says what it holds.
            for (const h of await readPackHeader(dest.storage, dest.keys.dataKey, key, dstPacks.get(key)!)) entries.push([h.id, { pack, offset: h.offset, length: h.length, kind: h.kind }]);
            return;
          }
          // Read and authenticated (once more on a bad read) before a byte of it goes to the secondary.
          const { blob, header } = await rereadOnce(async () => {
            let b: Buffer;
            try {
              b = await source.storage.get(key);
            } catch (err) {
              if (err instanceof NotFoundError) throw new IntegrityError(`replicate: pack ${key}, needed by backup ${e.id} of ${e.component}, is missing from ${source.storage.url}; nothing of that backup was recorded in ${dest.storage.url}`, key);
              throw err;
            }
            try {
              const h = parsePack(source.keys.dataKey, key, b);
              for (const x of h) await source.decodeChunk(x.id, b.subarray(x.offset, x.offset + x.length), { checkId: false });
              return { blob: b, header: h };
            } catch (err) {
              throw new IntegrityError(`replicate: pack ${key}, needed by backup ${e.id} of ${e.component}, is damaged in ${source.storage.url} (${(err as Error).message}); nothing of that backup was recorded in ${dest.storage.url}`, key);
            }
          });
          await dest.storage.put(key, blob);
          dstPacks.set(key, blob.length);
          for (const h of header) entries.push([h.id, { pack, offset: h.offset, length: h.length, kind: h.kind }]);
          report.chunksCopied += header.length;
          report.bytesCopied += blob.length;
        });
        if (entries.length > 0) {
          // The packs are durable in the secondary: now the index object naming their chunks.
          const key = indexKey(newObjectId());
          const sealed = encodeIndexObject(dest.keys.dataKey, key, entries);
          await dest.storage.put(key, sealed);
          report.bytesCopied += sealed.length;
          for (const [id, loc] of entries) dstChunks.insert(id, loc);
        }
        // Every chunk is there: now the manifest, checked against the digest it opened with, and read back.
        const blob = await rereadOnce(async () => {
          const b = await source.storage.get(e.key, { maxBytes: MAX_MANIFEST_BYTES });
          if (digestOf(b) !== e.digest) throw new IntegrityError(`replicate: manifest ${e.key} read differently from ${source.storage.url} than when it was opened; not copied`, e.key);
          return b;
        });
        await dest.storage.put(e.key, blob);
        const back = await dest.storage.get(e.key);
        if (digestOf(back) !== e.digest) throw new IntegrityError(`replicate: manifest ${e.key} reads back differently from ${dest.storage.url} (${back.length} of ${blob.length} bytes); the copy is not trusted`, e.key);
        report.manifestsCopied++;
        report.bytesCopied += blob.length;
        o.onProgress?.(++done, todo.length);
      }
    } catch (err) {
      throw withNotCopied(err, todo.slice(done), dest.storage.url);
    }
    // Heads whose backups are now in the secondary, and retention records.
    const present = new Set([...dstManifests.keys(), ...todo.map((t) => t.key)]);
    for (const [component, heads] of cat.headKeys) {
      for (const h of heads) {
        if (dstHeads.has(h.objectKey)) continue;
        const e = [...cat.entries, ...cat.future].find((x) => x.component === component && x.id === h.id);
        if (!e || !present.has(e.key)) continue;
        const blob = await source.storage.get(h.objectKey);
        await dest.storage.put(h.objectKey, blob);
        report.bytesCopied += blob.length;
      }
    }
    for (const t of cat.tombstones.values()) {
      if (dstTombs.has(t.objectKey)) continue;
      const blob = await source.storage.get(t.objectKey);
      await dest.storage.put(t.objectKey, blob);
      report.bytesCopied += blob.length;
    }
    report.durationMs = Date.now() - t0;
    return report;
  } finally {
    await dstLock.release().catch(() => undefined);
    await srcLock.release().catch(() => undefined);
  }
}
