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
// plans and prune backs off), reads every remaining manifest, and deletes only
// chunks none of them references; it re-checks its lock while deleting. If any
// manifest cannot be read, prune deletes nothing. It also removes dead locks,
// old temporaries of killed writers and the staging of dead runs.
import type { Vault } from './vault.ts';
import { chunkKey } from './vault.ts';
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
}

/** Temporaries of killed writers are removed once older than this (no live writer takes that long per object). */
export const TEMPORARY_MAX_AGE_MS = 6 * 3_600_000;

export async function applyRetention(
  vault: Vault,
  policies: Record<string, Retention>,
  o: { now?: Date; dryRun?: boolean; onlyComponents?: string[] } = {},
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
    if (damagedManifests.length > 0) {
      pruneSkipped = `prune stopped, no chunk deleted: ${damagedManifests.length} object(s) under manifests/ do not open as backups of this vault (${damagedManifests.slice(0, 3).map((d) => `${d.key}: ${d.problem}`).join('; ')}). If they are not yours, remove them; if one is a damaged backup, restore it from the other vault. Run \`memvault verify\``;
    } else {
      const referenced = new Set<string>();
      for (const r of survivors) {
        let m;
        try {
          m = await vault.readManifest(r.key);
        } catch (err) {
          throw new IntegrityError(`prune stopped, nothing deleted: manifest ${r.key} cannot be read (${errorMessage(err)}); run \`memvault verify\``, r.key);
        }
        for (const e of m.entries) for (const c of e.chunks ?? []) referenced.add(c.id);
      }
      const present = await vault.listChunks();
      const doomed: [string, number][] = [];
      for (const [id, size] of present) if (!referenced.has(id)) doomed.push([id, size]);
      chunksKept = present.size - doomed.length;
      if (!dryRun) pausePoint('prune-planned');
      for (const [id, size] of doomed) {
        // Stop at once if the lock may have been taken as dead: a backup may be relying on these.
        if (lock && chunksPruned % 256 === 0 && !(await lock.held())) {
          pruneSkipped = `prune stopped after ${chunksPruned} chunk(s): its lock lapsed (${lock.lostReason})`;
          break;
        }
        chunksPruned++;
        bytesPruned += size;
        if (!dryRun) await vault.storage.delete(chunkKey(id));
      }
      chunksKept += doomed.length - chunksPruned;
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
