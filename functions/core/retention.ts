// Retention: forget manifests by policy, then prune chunks no manifest references.
//
// Policy (per component, after restic's forget): a backup is kept if any rule
// keeps it —
//   days N         it is younger than N days
//   keepLast N     it is one of the N newest
//   keepDaily N    it is the newest of its UTC day, for the N newest days with backups
//   keepWeekly N   ... of its ISO week;  keepMonthly N ... of its month
// A component with no rules keeps everything. The newest backup of a
// component is always kept, whatever the rules say.
//
// Only backups that open under the vault key count (core/catalog.ts): names
// that do not open are never the newest, never forgotten, and stop the prune.
// Forgetting writes a sealed retention record before deleting the manifest, so
// the component's chain shows a deliberate gap, not a missing backup.
//
// Prune takes the vault's exclusive lock (so no backup, replication or
// fanned-out backup run is under way: they hold shared locks or live staging
// plans and prune backs off), reads every remaining manifest and the chunk
// index, and works per pack (after restic's prune):
//   - a pack no index entry names (a killed run's) or whose chunks are all
//     unreferenced is deleted;
//   - a pack whose live fraction (bytes of referenced chunks) is below
//     `repackBelow` (default 50%) is repacked, up to `maxRepackBytes` of packs
//     per run: its live chunks, authenticated, are copied as they are into new
//     packs, and an index object for them is written;
//   - then one merged index (every entry of the packs kept, split into objects
//     of 250k entries, ~11 MB, so loading one stays small) is written, the old index objects deleted, and only then
//     the packs. A crash anywhere leaves an index naming only packs that are
//     there (and perhaps packs no index names, removed by the next prune).
// The index is merged too when more than MERGE_INDEX_OBJECTS have accumulated
// beyond the objects a merged index of its size takes.
// If any manifest or index object cannot be read, prune deletes nothing. It
// re-checks its lock before deleting. It also removes dead locks, old
// temporaries of killed writers and the staging of dead runs.
import { manifestChunks } from './entry-log.ts';
import type { Vault } from './vault.ts';
import { type ChunkLoc, INDEX_ENTRIES_PER_OBJECT, type KnownChunks, encodeIndexObject, indexKey, loadIndex, newObjectId } from './chunk-index.ts';
import { PackWriter, packKey, parsePack, parsePackKey } from './packs.ts';
import type { VaultLock } from './lock.ts';
import type { ManifestRef } from './manifest.ts';
import type { Retention } from './config.ts';
import { IntegrityError, LockedError, errorMessage } from './errors.ts';
import { type Catalog, type CatalogEntry, type Tombstone, readCatalog, tombstoneKey } from './catalog.ts';
import { STAGING_MAX_AGE_MS, listStaging, removeStaging } from './staging.ts';
import { removeDeadLocks } from './lock.ts';
import { pausePoint } from './pause.ts';

export interface PolicyDecision {
  keep: ManifestRef[];
  forget: ManifestRef[];
  reasons: Map<string, string[]>;
}

function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const y0 = new Date(Date.UTC(t.getUTCFullYear(), 0, 1));
  return `${t.getUTCFullYear()}-W${Math.ceil(((t.getTime() - y0.getTime()) / 86_400_000 + 1) / 7)}`;
}

/** Applies a policy to one component's backups (any order). */
export function applyPolicy(refs: ManifestRef[], policy: Retention, now: Date): PolicyDecision {
  const sorted = [...refs].sort((a, b) => b.time.getTime() - a.time.getTime());
  const reasons = new Map<string, string[]>();
  const keepBecause = (r: ManifestRef, why: string) => {
    const l = reasons.get(r.key) ?? [];
    l.push(why);
    reasons.set(r.key, l);
  };
  const noRules = Object.values(policy).every((v) => v === undefined);
  sorted.forEach((r, i) => {
    if (i === 0) keepBecause(r, 'newest');
    if (noRules) keepBecause(r, 'no retention rules');
    if (policy.keepLast !== undefined && i < policy.keepLast) keepBecause(r, `last ${policy.keepLast}`);
    if (policy.days !== undefined && now.getTime() - r.time.getTime() < policy.days * 86_400_000) keepBecause(r, `within ${policy.days} days`);
  });
  const bucketed = (n: number | undefined, name: string, bucket: (d: Date) => string) => {
    if (n === undefined) return;
    const seen = new Set<string>();
    for (const r of sorted) {
      const b = bucket(r.time);
      if (seen.has(b)) continue;
      if (seen.size >= n) break;
      seen.add(b);
      keepBecause(r, `${name} ${b}`);
    }
  };
  bucketed(policy.keepDaily, 'daily', (d) => d.toISOString().slice(0, 10));
  bucketed(policy.keepWeekly, 'weekly', isoWeek);
  bucketed(policy.keepMonthly, 'monthly', (d) => d.toISOString().slice(0, 7));
  return {
    keep: sorted.filter((r) => reasons.has(r.key)),
    forget: sorted.filter((r) => !reasons.has(r.key)),
    reasons,
  };
}

export interface RetentionReport {
  vault: string;
  dryRun: boolean;
  forgotten: { component: string; id: string; time: string }[];
  kept: number;
  chunksPruned: number;
  bytesPruned: number;
  chunksKept: number;
  /** Objects under manifests/ that are not backups of this vault (never acted on), and why. */
  damaged: { key: string; problem: string }[];
  /** Broken links in the components' histories (reported; retention goes on). */
  chainProblems: string[];
  /** Why no chunk was deleted, when prune stopped short. */
  pruneSkipped: string | null;
  stagingRemoved: string[];
  locksRemoved: number;
  temporariesRemoved: number;
  /** Packs deleted (all their chunks unreferenced, or repacked), packs repacked, bytes of live chunks rewritten. */
  packsDeleted: number;
  packsRepacked: number;
  bytesRepacked: number;
  /** Index objects replaced by the merged index. */
  indexesMerged: number;
}

export interface PruneOptions {
  /** Repack packs whose live fraction (by bytes) is below this. @default 0.5 */
  repackBelow?: number;
  /** Most bytes of packs repacked per run. @default 512 MiB */
  maxRepackBytes?: number;
  /** Pack size of repacked packs (tests). */
  packBytes?: number;
}

/** The index is merged when more objects than this have accumulated. */
export const MERGE_INDEX_OBJECTS = 16;

/** Temporaries of killed writers are removed once older than this (no live writer takes that long per object). */
export const TEMPORARY_MAX_AGE_MS = 6 * 3_600_000;

export async function applyRetention(
  vault: Vault,
  policies: Record<string, Retention>,
  o: { now?: Date; dryRun?: boolean; onlyComponents?: string[]; prune?: PruneOptions } = {},
): Promise<RetentionReport> {
  const now = o.now ?? new Date();
  const dryRun = o.dryRun ?? false;
  const lock = dryRun ? undefined : await vault.lock('prune');
  try {
    // A fanned-out backup's chunks are referenced only by its staging objects until its manifest
    // is written: while one is running, prune waits (LockedError, retried); a dead run's staging goes.
    const staging = await listStaging(vault);
    const running = staging.filter((s) => s.createdAt !== null && now.getTime() - s.createdAt.getTime() < STAGING_MAX_AGE_MS);
    if (running.length && !dryRun) {
      throw new LockedError(`${vault.storage.url}: a backup run is still writing ${running.map((s) => s.prefix).join(', ')} (since ${running.map((s) => s.createdAt!.toISOString()).join(', ')}); retention prunes when it has finished`);
    }
    const stagingRemoved = staging.filter((s) => !running.includes(s)).map((s) => s.prefix);
    if (!dryRun) for (const p of stagingRemoved) await removeStaging(vault, p);

    // Only backups that open count: a name that does not open is never the newest, never forgotten.
    const cat = await readCatalog(vault, { now, seen: null });
    const byComponent = new Map<string, CatalogEntry[]>();
    for (const r of cat.entries) {
      const l = byComponent.get(r.component) ?? [];
      l.push(r);
      byComponent.set(r.component, l);
    }
    const forgotten: RetentionReport['forgotten'] = [];
    const forgottenIds = new Set<string>();
    let kept = 0;
    const survivors: CatalogEntry[] = [...cat.future];
    for (const [component, refs] of byComponent) {
      // Components no longer configured keep everything: their data is not ours to drop silently.
      const policy = policies[component];
      if (!policy || (o.onlyComponents && !o.onlyComponents.includes(component))) {
        kept += refs.length;
        survivors.push(...refs);
        continue;
      }
      const d = applyPolicy(refs, policy, now);
      // The backup the vault's head names (the last one written) is kept as well as the newest by time.
      const head = cat.heads.get(component);
      const forget = d.forget.filter((r) => r.id !== head?.id);
      const keep = refs.filter((r) => !forget.includes(r));
      kept += keep.length;
      survivors.push(...keep);
      for (const r of forget as CatalogEntry[]) {
        forgotten.push({ component, id: r.id, time: r.time.toISOString() });
        forgottenIds.add(`${component}/${r.id}`);
        if (dryRun) continue;
        // The record of the deliberate gap first, then the manifest: the chain shows no break.
        const t: Tombstone = { format: 'memvault-forgotten/1', component, id: r.id, key: r.key, digest: r.digest, seq: r.chain?.seq ?? null, forgottenAt: now.toISOString() };
        await vault.writeSealedJson(tombstoneKey(component, r.id), t);
        await vault.storage.delete(r.key);
      }
    }
    if (!dryRun) await tidyChainRecords(vault, cat, survivors, forgottenIds);

    // Prune: chunks that no manifest that opens references. A manifest object that does not open
    // may be a damaged real backup (its good copy may be in the other vault): then no chunk goes.
    const damagedManifests = cat.damaged.filter((d) => d.key.startsWith('manifests/') && !cat.future.some((f) => f.key === d.key));
    let pruneSkipped: string | null = null;
    let chunksPruned = 0;
    let bytesPruned = 0;
    let chunksKept = 0;
    let packStats = { packsDeleted: 0, packsRepacked: 0, bytesRepacked: 0, indexesMerged: 0 };
    if (damagedManifests.length > 0) {
      pruneSkipped = `prune stopped, no chunk deleted: ${damagedManifests.length} object(s) under manifests/ do not open as backups of this vault (${damagedManifests.slice(0, 3).map((d) => `${d.key}: ${d.problem}`).join('; ')}). If they are not yours, remove them; if one is a damaged backup, restore it from the other vault. Run \`memvault verify\``;
    } else {
      const referenced = new Set<string>();
      for (const r of survivors) {
        // Every chunk the backup needs, its entry parts' included; a part that cannot be read
        // stops the prune (its entries' chunks would otherwise look unreferenced).
        try {
          const m = await vault.readManifestHeader(r.key);
          for await (const c of manifestChunks(vault, m)) referenced.add(c.id);
        } catch (err) {
          throw new IntegrityError(`prune stopped, nothing deleted: manifest ${r.key} cannot be read (${errorMessage(err)}); run \`memvault verify\``, r.key);
        }
      }
      if (!dryRun) pausePoint('prune-planned');
      const r = await prunePacks(vault, referenced, { dryRun, lock, ...o.prune });
      pruneSkipped = r.skipped;
      chunksPruned = r.chunksPruned;
      bytesPruned = r.bytesPruned;
      chunksKept = r.chunksKept;
      packStats = r;
    }
    let locksRemoved = 0;
    let temporariesRemoved = 0;
    if (!dryRun) {
      locksRemoved = (await removeDeadLocks(vault.storage)).length;
      temporariesRemoved = (await vault.storage.sweepTemporary?.(TEMPORARY_MAX_AGE_MS))?.removed ?? 0;
    }
    return {
      vault: vault.storage.url, dryRun, forgotten, kept, chunksPruned, bytesPruned, chunksKept,
      damaged: cat.damaged.map((d) => ({ key: d.key, problem: d.problem })), chainProblems: cat.chain.map((p) => p.detail),
      pruneSkipped, stagingRemoved, locksRemoved, temporariesRemoved,
      packsDeleted: packStats.packsDeleted, packsRepacked: packStats.packsRepacked, bytesRepacked: packStats.bytesRepacked, indexesMerged: packStats.indexesMerged,
    };
  } finally {
    await lock?.release().catch(() => undefined); // expires on its own; never hides the outcome
  }
}

/**
 * Heads and retention records the chain no longer needs: heads of forgotten
 * backups (never the newest head), and retention records no surviving backup
 * names as its predecessor.
 */
async function tidyChainRecords(vault: Vault, cat: Catalog, survivors: CatalogEntry[], forgottenIds: Set<string>): Promise<void> {
  for (const [component, heads] of cat.headKeys) {
    const newest = cat.heads.get(component);
    for (const h of heads) {
      if (h.objectKey === newest?.objectKey) continue;
      if (forgottenIds.has(`${component}/${h.id}`) || cat.tombstones.has(`${component}/${h.id}`) || h.seq < (newest?.seq ?? 0) - 1) await vault.storage.delete(h.objectKey);
    }
  }
  const needed = new Set(survivors.flatMap((s) => (s.chain?.predecessor ? [`${s.component}/${s.chain.predecessor.id}`] : [])));
  for (const h of cat.heads.values()) needed.add(`${h.component}/${h.id}`);
  for (const [id, t] of cat.tombstones) if (!needed.has(id)) await vault.storage.delete(t.objectKey);
}

interface PruneResult {
  skipped: string | null;
  chunksPruned: number;
  bytesPruned: number;
  chunksKept: number;
  packsDeleted: number;
  packsRepacked: number;
  bytesRepacked: number;
  indexesMerged: number;
}

/**
 * Deletes and repacks packs (see the header) given the chunk ids the remaining manifests
 * reference. Under the exclusive prune lock.
 */
export async function prunePacks(vault: Vault, referenced: Set<string>, o: PruneOptions & { dryRun?: boolean; lock?: VaultLock } = {}): Promise<PruneResult> {
  const res: PruneResult = { skipped: null, chunksPruned: 0, bytesPruned: 0, chunksKept: 0, packsDeleted: 0, packsRepacked: 0, bytesRepacked: 0, indexesMerged: 0 };
  const packs = await vault.listPacks();
  // Unfiltered: entries of a pack that is missing (damage verify reports) are kept in the merged
  // index, never silently forgotten; only packs that are there are deleted or repacked.
  const index = await loadIndex(vault.storage, vault.keys.dataKey);
  if (index.damaged.length > 0) {
    res.skipped = `prune stopped, nothing deleted: index object(s) ${index.damaged.map((d) => d.key).join(', ')} do not open (${index.damaged[0].problem}); the packs they name cannot be told apart from unreferenced ones. Run \`memvault verify\``;
    return res;
  }
  // Per pack: live and dead chunks and bytes.
  const perPack = new Map<string, { live: number; dead: number; liveBytes: number; deadBytes: number }>();
  for (const [id, l] of index.entries()) {
    let p = perPack.get(l.pack);
    if (!p) perPack.set(l.pack, (p = { live: 0, dead: 0, liveBytes: 0, deadBytes: 0 }));
    if (referenced.has(id)) { p.live++; p.liveBytes += l.length; } else { p.dead++; p.deadBytes += l.length; }
  }
  const doomed: string[] = [];
  const repack: string[] = [];
  for (const key of packs.keys()) {
    const id = parsePackKey(key)!;
    const p = perPack.get(id);
    if (!p || p.live === 0) {
      doomed.push(id);
      if (p) { res.chunksPruned += p.dead; res.bytesPruned += p.deadBytes; }
    }
  }
  const below = o.repackBelow ?? 0.5;
  let budget = o.maxRepackBytes ?? 512 * 1024 * 1024;
  const candidates = [...perPack].filter(([id, p]) => p.live > 0 && p.dead > 0 && packs.has(packKey(id)) && p.liveBytes / (p.liveBytes + p.deadBytes) < below)
    .sort((x, y) => x[1].liveBytes / (x[1].liveBytes + x[1].deadBytes) - y[1].liveBytes / (y[1].liveBytes + y[1].deadBytes));
  for (const [id, p] of candidates) {
    const size = packs.get(packKey(id))!;
    if (size > budget) continue;
    budget -= size;
    repack.push(id);
    res.chunksPruned += p.dead;
    res.bytesPruned += p.deadBytes;
  }
  for (const p of perPack.values()) res.chunksKept += p.live;
  const merge = index.objects.length > MERGE_INDEX_OBJECTS + Math.ceil(index.size / INDEX_ENTRIES_PER_OBJECT);
  if (o.dryRun || (doomed.length === 0 && repack.length === 0 && !merge)) {
    res.packsDeleted = o.dryRun ? doomed.length + repack.length : 0;
    res.packsRepacked = o.dryRun ? repack.length : 0;
    return res;
  }
  const lockLapsed = async (done: string) => {
    if (!o.lock || (await o.lock.held())) return false;
    res.skipped = `prune stopped ${done}: its lock lapsed (${o.lock.lostReason})`;
    return true;
  };

  // Nothing is written once the lock may have been taken as dead (a backup may rely on these chunks).
  if (await lockLapsed('after 0 chunk(s)')) return res;
  // 1. Repack: live chunks, authenticated, into new packs, and an index object for them.
  const gone = new Set([...doomed, ...repack]);
  if (repack.length > 0) {
    const moved = new Map<string, ChunkLoc>();
    const sink: KnownChunks & { insert(id: string, loc: ChunkLoc): void } = {
      has: (id) => moved.has(id), add: () => undefined, delete: () => undefined, insert: (id, loc) => { moved.set(id, loc); },
    };
    const writer = new PackWriter(vault.storage, vault.keys.dataKey, sink, { targetBytes: o.packBytes });
    const kept: string[] = [];
    for (const pack of repack) {
      const key = packKey(pack);
      const blob = await vault.storage.get(key);
      const entries = parsePack(vault.keys.dataKey, key, blob);
      for (const e of entries) {
        if (!referenced.has(e.id) || moved.has(e.id)) continue;
        const loc = index.get(e.id);
        if (loc && loc.pack !== pack && !gone.has(loc.pack)) continue; // also in a pack that stays
        const part = Buffer.from(blob.subarray(e.offset, e.offset + e.length));
        try {
          await vault.decodeChunk(e.id, part, { checkId: false });
        } catch (err) {
          throw new IntegrityError(`prune stopped before deleting anything: chunk ${e.id} in pack ${key}, still needed, does not open (${errorMessage(err)}); run \`memvault verify\``, key);
        }
        await writer.add(e.id, [part]);
        res.bytesRepacked += part.length;
      }
      kept.push(pack);
    }
    await writer.flush();
    res.packsRepacked = kept.length;
  }
  // 2. One merged index of every entry in a pack that stays, then the old objects go.
  const survivors: [string, ChunkLoc][] = [];
  const writeMerged = async () => {
    const key = indexKey(newObjectId());
    await vault.storage.put(key, encodeIndexObject(vault.keys.dataKey, key, survivors));
    survivors.length = 0;
  };
  for (const [id, l] of index.entries()) {
    if (gone.has(l.pack)) continue;
    survivors.push([id, l]);
    if (survivors.length >= INDEX_ENTRIES_PER_OBJECT) await writeMerged();
  }
  if (survivors.length > 0) await writeMerged();
  if (await lockLapsed('after 0 chunk(s) (the merged index written, nothing deleted)')) return res;
  for (const key of index.objects) await vault.storage.delete(key);
  res.indexesMerged = index.objects.length;
  // 3. The packs no index names any more.
  let n = 0;
  for (const pack of gone) {
    if (n++ % 64 === 0 && (await lockLapsed(`after ${res.packsDeleted} pack(s)`))) return res;
    await vault.storage.delete(packKey(pack));
    res.packsDeleted++;
  }
  return res;
}
