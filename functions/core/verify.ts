// Vault verification, after restic's checker.
//
// Metadata (every run): the catalog (core/catalog.ts): every object under
// manifests/, heads/ and forgotten/ opens (authenticated) and matches its name,
// each component's chain of backups has no missing or replaced link (a deleted
// newest backup included); every index object opens; every pack's sealed
// header opens and lists its chunks where the index has them; and every chunk
// a backup references is in the index and in a pack that is there. Data
// (--read-data, or a subset): each selected chunk is read from its pack,
// authenticated, decompressed and its keyed id recomputed.
// Every missing or corrupt chunk is named together with the backups that
// depend on it. Subsets are chosen by chunk id ranges, so N runs with subset
// index 0..N-1 read every chunk exactly once over the cycle.
import { readEntries } from './entry-log.ts';
import type { Vault } from './vault.ts';
import type { ChunkRef } from './manifest.ts';
import { IntegrityError, NotFoundError, errorMessage } from './errors.ts';
import { readCatalog, type ChainProblem } from './catalog.ts';
import { loadIndex } from './chunk-index.ts';
import { packKey, parsePackKey, readPackHeader } from './packs.ts';

export interface VerifyOptions {
  /** Read chunk data: 'all', or a percentage subset. */
  readData?: 'none' | 'all' | { percent: number; cycleIndex?: number };
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface ChunkProblem {
  chunk: string;
  problem: 'missing' | 'corrupt';
  detail: string;
  /** The object at fault: the chunk's pack, or the damaged index object (when known). */
  objectKey?: string;
  /** Backups (component/id) that need this chunk. */
  backups: string[];
}

export interface VerifyReport {
  vault: string;
  ok: boolean;
  manifests: number;
  damagedManifests: { key: string; error: string }[];
  /** Missing or replaced links in the components' histories. */
  chainProblems: ChainProblem[];
  chunksReferenced: number;
  chunksInVault: number;
  chunksRead: number;
  unreferencedChunks: number;
  /** Pack objects, and those no index entry names (a killed run's; prune removes them). */
  packs: number;
  unreferencedPacks: number;
  /** Index objects that do not open, and packs whose header does not open or disagrees with the index. */
  damagedIndexes: { key: string; error: string }[];
  damagedPacks: { key: string; error: string }[];
  problems: ChunkProblem[];
  /** Backups that cannot be restored because of a problem. */
  damagedBackups: string[];
}

/** Chunks whose id falls in window `cycleIndex` of size `percent`% (ids are uniform). */
export function inSubset(id: string, percent: number, cycleIndex = 0): boolean {
  const x = parseInt(id.slice(0, 8), 16) / 0x1_0000_0000;
  const w = percent / 100;
  const start = (cycleIndex * w) % 1;
  const end = start + w;
  return end <= 1 ? x >= start && x < end : x >= start || x < end - 1;
}

export async function verifyVault(vault: Vault, o: VerifyOptions = {}): Promise<VerifyReport> {
  const cat = await readCatalog(vault);
  const refs = [...cat.entries, ...cat.future];
  const users = new Map<string, string[]>();
  /** Plaintext size of each chunk, as the manifests record it: reads are bounded by it. */
  const sizes = new Map<string, number>();
  const damagedManifests: { key: string; error: string }[] = cat.damaged.map((d) => ({ key: d.key, error: d.problem }));
  for (const ref of refs) {
    const name = `${ref.component}/${ref.id}`;
    const note = (c: ChunkRef) => {
      const list = users.get(c.id);
      sizes.set(c.id, c.size);
      if (!list) users.set(c.id, [name]);
      else if (list[list.length - 1] !== name) list.push(name);
    };
    try {
      const m = await vault.readManifestHeader(ref.key);
      // The entry parts' chunks first: noted even when a part then fails to read (named below).
      for (const p of m.entryParts ?? []) for (const c of p.chunks) note(c);
      for await (const e of readEntries(vault, m)) for (const c of e.chunks ?? []) note(c);
    } catch (err) {
      if (!(err instanceof IntegrityError) && !(err instanceof NotFoundError)) throw err;
      damagedManifests.push({ key: ref.key, error: errorMessage(err) });
      continue;
    }
  }
  const packs = await vault.listPacks();
  const present = await loadIndex(vault.storage, vault.keys.dataKey, { packs });
  const damagedIndexes = present.damaged.map((d) => ({ key: d.key, error: d.problem }));
  // Every pack's header against the index: the index's entries per pack, then each header read.
  const byPack = new Map<string, Map<string, { offset: number; length: number }>>();
  for (const [id, l] of present.entries()) {
    let m = byPack.get(l.pack);
    if (!m) byPack.set(l.pack, (m = new Map()));
    m.set(id, { offset: l.offset, length: l.length });
  }
  const damagedPacks: { key: string; error: string }[] = [];
  const badPack = new Map<string, string>();
  let unreferencedPacks = 0;
  const packList = [...packs];
  const headerWorker = async () => {
    for (let x = packList.pop(); x !== undefined; x = packList.pop()) {
      const [key, size] = x;
      const pack = parsePackKey(key)!;
      const want = byPack.get(pack);
      if (!want) { unreferencedPacks++; continue; }
      try {
        const header = await readPackHeader(vault.storage, vault.keys.dataKey, key, size);
        const have = new Map(header.map((e) => [e.id, e]));
        for (const [id, l] of want) {
          const h = have.get(id);
          if (!h || h.offset !== l.offset || h.length !== l.length) throw new IntegrityError(`pack ${key}: its header does not list chunk ${id} where the index has it`, key);
        }
      } catch (err) {
        if (!(err instanceof IntegrityError) && !(err instanceof NotFoundError)) throw err;
        damagedPacks.push({ key, error: errorMessage(err) });
        badPack.set(pack, errorMessage(err));
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 4 }, headerWorker));
  const problems: ChunkProblem[] = [];
  for (const [id, backups] of users) {
    const loc = present.get(id);
    if (!loc) {
      const why = damagedIndexes.length ? ` (index object(s) ${damagedIndexes.map((d) => d.key).join(', ')} do not open)` : present.missingPacks.size ? ` (packs the index names are missing: ${[...present.missingPacks].slice(0, 3).map(packKey).join(', ')})` : '';
      problems.push({ chunk: id, problem: 'missing', detail: `chunk ${id} is in no index entry of a pack that is there${why}`, backups, ...(damagedIndexes.length ? { objectKey: damagedIndexes[0].key } : {}) });
    } else if (badPack.has(loc.pack)) {
      problems.push({ chunk: id, problem: 'corrupt', detail: `chunk ${id} in pack ${packKey(loc.pack)}: ${badPack.get(loc.pack)}`, backups, objectKey: packKey(loc.pack) });
    }
  }
  const readable = (id: string) => { const l = present.get(id); return l !== undefined && !badPack.has(l.pack); };
  let selected: string[] = [];
  const mode = o.readData ?? 'none';
  if (mode === 'all') selected = [...users.keys()].filter(readable);
  else if (mode !== 'none') selected = [...users.keys()].filter((id) => readable(id) && inSubset(id, mode.percent, mode.cycleIndex));
  let done = 0;
  const queue = [...selected];
  // Chunks read in pack order, so neighbours come in one ranged read.
  queue.sort((x, y) => { const a = present.get(x)!, b = present.get(y)!; return a.pack < b.pack ? 1 : a.pack > b.pack ? -1 : b.offset - a.offset; });
  const worker = async () => {
    for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
      try {
        await vault.getChunk(id, { size: sizes.get(id) });
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        problems.push({ chunk: id, problem: 'corrupt', detail: err.message, backups: users.get(id)!, objectKey: err.objectKey ?? packKey(present.get(id)!.pack) });
      }
      o.onProgress?.(++done, selected.length);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 4 }, worker));
  const damagedBackups = [...new Set(problems.flatMap((p) => p.backups).concat(damagedManifests.map((d) => d.key))
    .concat(cat.chain.filter((c) => c.backup).map((c) => `${c.component}/${c.backup}`)))].sort();
  let unreferenced = 0;
  for (const [id] of present.entries()) if (!users.has(id)) unreferenced++;
  return {
    vault: vault.storage.url,
    ok: problems.length === 0 && damagedManifests.length === 0 && cat.chain.length === 0 && damagedIndexes.length === 0 && damagedPacks.length === 0,
    manifests: refs.length,
    damagedManifests,
    chainProblems: cat.chain,
    chunksReferenced: users.size,
    chunksInVault: present.size,
    chunksRead: selected.length,
    unreferencedChunks: unreferenced,
    packs: packs.size,
    unreferencedPacks,
    damagedIndexes,
    damagedPacks,
    problems,
    damagedBackups,
  };
}
