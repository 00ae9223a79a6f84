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
// Prune takes the vault's exclusive lock (so no backup is running: a backup
// that started earlier holds a shared lock and prune backs off), reads every
// remaining manifest, and deletes only chunks none of them references. If any
// manifest cannot be read, prune deletes nothing.
import type { Vault } from './vault.ts';
import { chunkKey, listCatalog } from './vault.ts';
import type { ManifestRef } from './manifest.ts';
import type { Retention } from './config.ts';
import { IntegrityError, errorMessage } from './errors.ts';

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
}

export async function applyRetention(
  vault: Vault,
  policies: Record<string, Retention>,
  o: { now?: Date; dryRun?: boolean; onlyComponents?: string[] } = {},
): Promise<RetentionReport> {
  const now = o.now ?? new Date();
  const dryRun = o.dryRun ?? false;
  const lock = dryRun ? undefined : await vault.lock('prune');
  try {
    const catalog = await listCatalog(vault.storage);
    const byComponent = new Map<string, ManifestRef[]>();
    for (const r of catalog) {
      const l = byComponent.get(r.component) ?? [];
      l.push(r);
      byComponent.set(r.component, l);
    }
    const forgotten: RetentionReport['forgotten'] = [];
    let kept = 0;
    const survivors: ManifestRef[] = [];
    for (const [component, refs] of byComponent) {
      // Components no longer configured keep everything: their data is not ours to drop silently.
      const policy = policies[component];
      if (!policy || (o.onlyComponents && !o.onlyComponents.includes(component))) {
        kept += refs.length;
        survivors.push(...refs);
        continue;
      }
      const d = applyPolicy(refs, policy, now);
      kept += d.keep.length;
      survivors.push(...d.keep);
      for (const r of d.forget) {
        forgotten.push({ component, id: r.id, time: r.time.toISOString() });
        if (!dryRun) await vault.storage.delete(r.key);
      }
    }
    // Prune: referenced set from every surviving manifest.
    const referenced = new Set<string>();
    for (const r of survivors) {
      let m;
      try {
        m = await vault.readManifest(r);
      } catch (err) {
        throw new IntegrityError(`prune stopped, nothing deleted: manifest ${r.key} cannot be read (${errorMessage(err)}); run \`memvault verify\``, r.key);
      }
      for (const e of m.entries) for (const c of e.chunks ?? []) referenced.add(c.id);
    }
    const present = await vault.listChunks();
    let chunksPruned = 0;
    let bytesPruned = 0;
    for (const [id, size] of present) {
      if (referenced.has(id)) continue;
      chunksPruned++;
      bytesPruned += size;
      if (!dryRun) await vault.storage.delete(chunkKey(id));
    }
    return { vault: vault.storage.url, dryRun, forgotten, kept, chunksPruned, bytesPruned, chunksKept: present.size - chunksPruned };
  } finally {
    await lock?.release();
  }
}
