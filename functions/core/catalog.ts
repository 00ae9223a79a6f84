// The catalog: which backups a vault holds. Only what opens under the vault
// key counts.
//
//   manifests/<component>/<time>.<type>.<id>   a backup (sealed; the key is bound into
//                                              the seal, so a name cannot be forged)
//   heads/<component>/<seq>.<id>               written after each manifest: the newest
//                                              backup of the component (sealed)
//   forgotten/<component>/<id>                 written by retention before it deletes a
//                                              manifest: a gap it made on purpose (sealed)
//
// Reading the catalog opens every manifest (in parallel, cached per process: objects
// never change). A name that does not open, whose content does not match its name,
// or that is dated in the future (beyond a small clock skew) is damage: reported,
// never counted as a backup. Each manifest names its predecessor (seq, id, digest of
// the sealed object); a predecessor that is missing without a tombstone, or whose
// digest differs, is a broken link. The newest head names the newest backup even
// when that manifest was deleted, and this machine's memory of the highest sequence
// number it saw catches a vault whose newest heads and manifests were both removed.
import { createHash } from 'node:crypto';
import type { Vault } from './vault.ts';
import { type ChainLink, type Manifest, type ManifestRef, MANIFEST_FORMATS, compactTime, parseManifestKey } from './manifest.ts';
import { IntegrityError, NotFoundError, errorMessage } from './errors.ts';

/** How far ahead of this clock a backup may be dated (other hosts' clocks). */
export const FUTURE_SKEW_MS = 10 * 60_000;

export interface CatalogEntry extends ManifestRef {
  /** SHA-256 of the sealed manifest object (what replication copies). */
  digest: string;
  kind: string;
  startedAt: string;
  finishedAt: string;
  chain?: ChainLink;
  warnings: number;
  stats: Manifest['stats'];
}

export interface CatalogDamage {
  key: string;
  component: string | null;
  problem: string;
}

export interface ChainProblem {
  component: string;
  problem: 'missing-link' | 'replaced-link' | 'missing-newest' | 'rolled-back';
  /** The backup that is missing or replaced, when known. */
  backup?: string;
  detail: string;
}

export interface HeadDoc {
  format: 'memvault-head/1';
  component: string;
  seq: number;
  id: string;
  key: string;
  digest: string;
  time: string;
}

export interface Tombstone {
  format: 'memvault-forgotten/1';
  component: string;
  id: string;
  key: string;
  digest: string;
  seq: number | null;
  forgottenAt: string;
}

export interface Catalog {
  vault: string;
  /** Backups that open, newest first (by backup time). */
  entries: CatalogEntry[];
  /** Backups that open but are dated in the future: kept (their chunks too), never chosen. */
  future: CatalogEntry[];
  damaged: CatalogDamage[];
  chain: ChainProblem[];
  heads: Map<string, HeadDoc & { objectKey: string }>;
  tombstones: Map<string, Tombstone & { objectKey: string }>;
  /** Every head object that opens, per component (retention removes old ones). */
  headKeys: Map<string, { objectKey: string; seq: number; id: string }[]>;
}

/** What this machine last saw of a vault: the highest sequence number per component. */
export interface SeenMemory {
  get(vault: string): Promise<Record<string, { seq: number; id: string; time: string }>>;
  record(vault: string, component: string, seen: { seq: number; id: string; time: string }): Promise<void>;
}

export function headKey(component: string, seq: number, id: string): string {
  return `heads/${component}/${String(seq).padStart(12, '0')}.${id}`;
}

export function tombstoneKey(component: string, id: string): string {
  return `forgotten/${component}/${id}`;
}

export function digestOf(blob: Uint8Array): string {
  return createHash('sha256').update(blob).digest('hex');
}

const COMPONENT_RE = /^[a-z0-9][a-z0-9_-]*$/;

async function mapLimit<T, R>(items: T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]);
  }));
  return out;
}

type Opened = { entry: CatalogEntry } | { damage: CatalogDamage };

/** Opens one manifest object and checks it against its name. */
export async function openCatalogEntry(vault: Vault, key: string): Promise<Opened> {
  const cached = vault.catalogCache.get(key);
  if (cached) return cached as Opened;
  const ref = parseManifestKey(key);
  const component = key.split('/')[1] ?? null;
  const damage = (problem: string): Opened => ({ damage: { key, component: component && COMPONENT_RE.test(component) ? component : null, problem } });
  if (!ref) return damage('not a manifest name');
  let r: Opened;
  try {
    const { manifest: m, digest } = await vault.readManifestWithDigest(key);
    if (!MANIFEST_FORMATS.includes(m.format) || m.component !== ref.component || m.id !== ref.id || m.type !== ref.type
      || typeof m.startedAt !== 'string' || Number.isNaN(Date.parse(m.startedAt)) || compactTime(new Date(m.startedAt)) !== compactTime(ref.time)) {
      r = damage('its content does not match its name');
    } else {
      r = {
        entry: {
          ...ref, digest, kind: m.kind, startedAt: m.startedAt, finishedAt: m.finishedAt, chain: m.chain,
          warnings: m.warnings?.length ?? 0, stats: m.stats,
        },
      };
    }
  } catch (err) {
    if (err instanceof NotFoundError) throw err;
    if (!(err instanceof IntegrityError)) throw err;
    r = damage(`does not open under the vault key (${errorMessage(err)}): not a backup of this vault`);
  }
  vault.catalogCache.set(key, r);
  return r;
}

async function openSmall<T>(vault: Vault, key: string): Promise<T | null> {
  try {
    return (await vault.readSealedJson(key)) as T;
  } catch (err) {
    if (err instanceof IntegrityError) return null;
    throw err;
  }
}

export interface ReadCatalogOptions {
  component?: string;
  now?: Date;
  /** This machine's memory of the vault's history (CLI, local runtime); none on Lambda. */
  seen?: SeenMemory | null;
}

export async function readCatalog(vault: Vault, o: ReadCatalogOptions = {}): Promise<Catalog> {
  const now = o.now ?? new Date();
  const prefix = (root: string) => (o.component ? `${root}/${o.component}/` : `${root}/`);
  const keysUnder = async (p: string) => {
    const out: string[] = [];
    for await (const x of vault.storage.list(p)) out.push(x.key);
    return out;
  };
  const [manifestKeys, headObjs, tombObjs] = await Promise.all([keysUnder(prefix('manifests')), keysUnder(prefix('heads')), keysUnder(prefix('forgotten'))]);

  const cat: Catalog = { vault: vault.storage.url, entries: [], future: [], damaged: [], chain: [], heads: new Map(), tombstones: new Map(), headKeys: new Map() };
  const opened = await mapLimit(manifestKeys, 8, async (k) => {
    try {
      return await openCatalogEntry(vault, k);
    } catch (err) {
      if (err instanceof NotFoundError) return null; // removed while we listed (retention)
      throw err;
    }
  });
  for (const r of opened) {
    if (!r) continue;
    if ('damage' in r) { cat.damaged.push(r.damage); continue; }
    if (r.entry.time.getTime() > now.getTime() + FUTURE_SKEW_MS) {
      cat.future.push(r.entry);
      cat.damaged.push({ key: r.entry.key, component: r.entry.component, problem: `dated ${r.entry.time.toISOString()}, in the future: not counted as a backup (check the writing host's clock)` });
    } else cat.entries.push(r.entry);
  }
  cat.entries.sort((a, b) => b.time.getTime() - a.time.getTime() || b.key.localeCompare(a.key));

  // Heads: the newest that opens and matches its name, per component.
  const heads = await mapLimit(headObjs, 8, async (k) => {
    const r = await openHead(vault, k);
    if (r === 'gone') return {};
    if (!r) return { damage: { key: k, component: /^heads\/([a-z0-9][a-z0-9_-]*)\//.exec(k)?.[1] ?? null, problem: 'not a head of this vault (does not open or does not match its name)' } };
    return { head: r };
  });
  for (const h of heads) {
    if (!('head' in h) || !h.head) { if (h.damage) cat.damaged.push(h.damage); continue; }
    const l = cat.headKeys.get(h.head.component) ?? [];
    l.push({ objectKey: h.head.objectKey, seq: h.head.seq, id: h.head.id });
    cat.headKeys.set(h.head.component, l);
    const cur = cat.heads.get(h.head.component);
    if (!cur || h.head.seq > cur.seq) cat.heads.set(h.head.component, h.head);
  }
  const tombs = await mapLimit(tombObjs, 8, async (k) => {
    const m = /^forgotten\/([a-z0-9][a-z0-9_-]*)\/([a-z0-9-]+)$/.exec(k);
    const t = m ? await openSmall<Tombstone>(vault, k).catch((err) => (err instanceof NotFoundError ? null : Promise.reject(err))) : null;
    if (!m || !t || t.format !== 'memvault-forgotten/1' || t.component !== m[1] || t.id !== m[2]) {
      return { damage: { key: k, component: m?.[1] ?? null, problem: 'not a retention record of this vault (does not open or does not match its name)' } };
    }
    return { tomb: { ...t, objectKey: k } };
  });
  for (const t of tombs) {
    if (!('tomb' in t) || !t.tomb) { if (t.damage) cat.damaged.push(t.damage); continue; }
    cat.tombstones.set(`${t.tomb.component}/${t.tomb.id}`, t.tomb);
  }

  checkChains(cat);
  await checkSeen(cat, vault, o.seen ?? vault.seen, o.component);
  return cat;
}

function checkChains(cat: Catalog): void {
  const all = [...cat.entries, ...cat.future];
  const byId = new Map(all.map((e) => [`${e.component}/${e.id}`, e]));
  const damagedKeys = new Set(cat.damaged.map((d) => d.key));
  for (const e of all) {
    const p = e.chain?.predecessor;
    if (!p) continue;
    const pe = byId.get(`${e.component}/${p.id}`);
    if (pe) {
      if (pe.digest !== p.digest) {
        cat.chain.push({ component: e.component, problem: 'replaced-link', backup: p.id, detail: `backup ${p.id} is not the one backup ${e.id} followed (its manifest object was replaced)` });
      }
      continue;
    }
    const t = cat.tombstones.get(`${e.component}/${p.id}`);
    if (t && t.digest === p.digest) continue;
    cat.chain.push({
      component: e.component, problem: 'missing-link', backup: p.id,
      detail: `backup ${p.id} (${p.key}), which backup ${e.id} followed, is ${damagedKeys.has(p.key) ? 'damaged' : 'missing'} and retention did not forget it`,
    });
  }
  for (const [component, h] of cat.heads) {
    const e = byId.get(`${component}/${h.id}`);
    if (e) {
      if (e.digest !== h.digest) cat.chain.push({ component, problem: 'replaced-link', backup: h.id, detail: `the newest backup ${h.id} of ${component} was replaced (its manifest does not match the vault's head)` });
      continue;
    }
    const t = cat.tombstones.get(`${component}/${h.id}`);
    if (t) continue;
    cat.chain.push({
      component, problem: 'missing-newest', backup: h.id,
      detail: `the newest backup of ${component}, ${h.id} (#${h.seq}, ${h.time}), is ${damagedKeys.has(h.key) ? 'damaged' : 'missing from the vault'}`,
    });
  }
}

async function checkSeen(cat: Catalog, vault: Vault, seen: SeenMemory | null | undefined, only?: string): Promise<void> {
  if (!seen) return;
  const ref = `${vault.storage.url}#${vault.id}`;
  let mem: Awaited<ReturnType<SeenMemory['get']>>;
  try {
    mem = await seen.get(ref);
  } catch {
    return; // this machine's memory is a help, not a source of truth
  }
  const top = new Map<string, { seq: number; id: string; time: string }>();
  const bump = (c: string, seq: number | undefined, id: string, time: string) => {
    if (seq === undefined) return;
    const cur = top.get(c);
    if (!cur || seq > cur.seq) top.set(c, { seq, id, time });
  };
  for (const e of [...cat.entries, ...cat.future]) bump(e.component, e.chain?.seq, e.id, e.time.toISOString());
  for (const [c, h] of cat.heads) bump(c, h.seq, h.id, h.time);
  for (const t of cat.tombstones.values()) if (t.seq !== null) bump(t.component, t.seq, t.id, t.forgottenAt);
  for (const [component, s] of Object.entries(mem)) {
    if (only && component !== only) continue;
    const t = top.get(component);
    if (!t || t.seq < s.seq) {
      if (cat.chain.some((p) => p.component === component && p.problem === 'missing-newest' && p.backup === s.id)) continue;
      cat.chain.push({
        component, problem: 'rolled-back', backup: s.id,
        detail: `this machine saw backup ${s.id} (#${s.seq}, ${s.time}) of ${component} in ${vault.storage.url}; the vault's newest is now ${t ? `#${t.seq} (${t.id})` : 'none'}: newer backups were deleted or the vault was rolled back`,
      });
    }
  }
  for (const [component, t] of top) {
    const s = mem[component];
    if (!s || t.seq > s.seq) await seen.record(ref, component, t).catch(() => undefined);
  }
}

/** Chain problems and damage of one component, as lines for a report. */
export function problemsOf(cat: Catalog, component: string): string[] {
  return [
    ...cat.chain.filter((p) => p.component === component).map((p) => p.detail),
    ...cat.damaged.filter((d) => d.component === component).map((d) => `${d.key}: ${d.problem}`),
  ];
}

/** The newest head that opens, or null. */
export async function currentHead(vault: Vault, component: string): Promise<(HeadDoc & { objectKey: string }) | null> {
  const keys: string[] = [];
  for await (const o of vault.storage.list(`heads/${component}/`)) keys.push(o.key);
  keys.sort().reverse();
  for (const k of keys) {
    const h = await openHead(vault, k);
    if (h && h !== 'gone' && h.component === component) return h;
  }
  return null;
}

/** A head object that opens and matches its name; null when it does not, 'gone' when it was removed meanwhile. */
async function openHead(vault: Vault, key: string): Promise<(HeadDoc & { objectKey: string }) | null | 'gone'> {
  const m = /^heads\/([a-z0-9][a-z0-9_-]*)\/(\d{12})\.([a-z0-9-]+)$/.exec(key);
  if (!m) return null;
  let h: HeadDoc | null;
  try {
    h = await openSmall<HeadDoc>(vault, key);
  } catch (err) {
    if (err instanceof NotFoundError) return 'gone';
    throw err;
  }
  if (!h || h.format !== 'memvault-head/1' || h.component !== m[1] || h.seq !== Number(m[2]) || h.id !== m[3]) return null;
  return { ...h, objectKey: key };
}

/**
 * The newest backup of a component that opens (newest name first, stopping at the
 * first that opens; names that do not open or are dated in the future are skipped).
 */
export async function newestBackup(vault: Vault, component: string, now = new Date()): Promise<CatalogEntry | null> {
  const keys: { key: string; time: number }[] = [];
  for await (const o of vault.storage.list(`manifests/${component}/`)) {
    const r = parseManifestKey(o.key);
    if (r && r.component === component && r.time.getTime() <= now.getTime() + FUTURE_SKEW_MS) keys.push({ key: o.key, time: r.time.getTime() });
  }
  keys.sort((a, b) => b.time - a.time || b.key.localeCompare(a.key));
  for (const { key } of keys) {
    let r: Opened;
    try {
      r = await openCatalogEntry(vault, key);
    } catch (err) {
      if (err instanceof NotFoundError) continue;
      throw err;
    }
    if ('entry' in r) return r.entry;
  }
  return null;
}

/**
 * Links a new backup into its component's chain: the predecessor is the
 * vault's head (or, for a vault without heads, the newest backup that opens).
 */
export async function nextLink(vault: Vault, component: string, now = new Date()): Promise<ChainLink> {
  const head = await currentHead(vault, component);
  const newest = await newestBackup(vault, component, now);
  if (head && (!newest?.chain || newest.chain.seq <= head.seq)) {
    return { seq: head.seq + 1, predecessor: { id: head.id, key: head.key, digest: head.digest } };
  }
  if (newest) return { seq: (newest.chain?.seq ?? 0) + 1, predecessor: { id: newest.id, key: newest.key, digest: newest.digest } };
  return { seq: 1, predecessor: null };
}

/** Writes the head naming a just-written manifest (after the manifest, never before). */
export async function writeHead(vault: Vault, component: string, link: ChainLink, manifestKey: string, id: string, digest: string, time: string): Promise<string> {
  const key = headKey(component, link.seq, id);
  const doc: HeadDoc = { format: 'memvault-head/1', component, seq: link.seq, id, key: manifestKey, digest, time };
  await vault.writeSealedJson(key, doc);
  await vault.seen?.record(`${vault.storage.url}#${vault.id}`, component, { seq: link.seq, id, time }).catch(() => undefined);
  return key;
}
