// The chunk index past its memory budget (issue 11): sorted runs in a scratch
// file found through ~2 bytes per id in memory. A lookup must say "stored"
// exactly for the ids indexed (checked against a Set, with near-misses that
// pass the in-memory filter), loading must leave out damaged index objects as
// before, and the memory kept must stay under the budget.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { ChunkIndex, ENTRY_BYTES, type ChunkLoc, encodeIndexObject, indexKey, indexMemoryFromEnv, loadIndex, newObjectId } from '../../functions/core/chunk-index.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import { FileStorage } from '../../functions/adapters/storage/file.ts';

const PACKS = Array.from({ length: 7 }, (_, i) => String(i).repeat(32));
const loc = (i: number): ChunkLoc => ({ pack: PACKS[i % PACKS.length], offset: i, length: 100 + (i % 1000), kind: 2 + (i % 2) });

function rawOf(ids: Buffer[]): Buffer {
  const raw = Buffer.alloc(ids.length * ENTRY_BYTES);
  ids.forEach((id, i) => {
    id.copy(raw, i * ENTRY_BYTES);
    const l = loc(i);
    raw.writeUInt32LE(PACKS.indexOf(l.pack), i * ENTRY_BYTES + 32);
    raw.writeUInt32LE(l.offset, i * ENTRY_BYTES + 36);
    raw.writeUInt32LE(l.length, i * ENTRY_BYTES + 40);
    raw[i * ENTRY_BYTES + 44] = l.kind;
  });
  return raw;
}

/** Absent ids that look like stored ones: same first 2, 4, 6 or 31 bytes (the filter's bits and more). */
function nearMisses(ids: Buffer[], stored: Set<string>): string[] {
  const out: string[] = [];
  for (const [k, id] of ids.entries()) {
    const keep = [2, 4, 6, 31][k % 4];
    const m = Buffer.concat([id.subarray(0, keep), randomBytes(32 - keep)]);
    if (keep === 31) m[31] = id[31] ^ 1;
    const h = m.toString('hex');
    if (!stored.has(h)) out.push(h);
  }
  return out;
}

describe('chunk index past its memory budget', () => {
  it('answers exactly like a Set, with near-misses, after loading and after inserts (runs)', { timeout: 120_000 }, () => {
    const n = 10_000;
    const ids = Array.from({ length: n }, () => randomBytes(32));
    // Duplicates in the loaded entries (an id indexed twice): kept once.
    ids.push(Buffer.from(ids[5]), Buffer.from(ids[6]));
    const set = new Set(ids.map((b) => b.toString('hex')));
    const ix = ChunkIndex.fromRaw(rawOf(ids), ids.length, PACKS, 100 * ENTRY_BYTES);
    try {
      expect(ix.spilled).toBe(true);
      expect(ix.size).toBe(n);
      expect(ix.memory).toBeLessThan(n * 4);
      const wrong = (got: unknown[], want: unknown[]) => got.map((g, i) => [i, g, want[i]]).filter(([, g, w]) => JSON.stringify(g) !== JSON.stringify(w)).slice(0, 3);
      const first = ids.slice(0, n).map((b) => b.toString('hex'));
      expect(wrong(first.map((h) => ix.has(h)), first.map(() => true))).toEqual([]);
      expect(wrong(first.map((h) => ix.get(h)), first.map((_, i) => loc(i)))).toEqual([]);
      const misses = [...nearMisses(ids.slice(0, 4000), set), ...Array.from({ length: 4000 }, () => randomBytes(32).toString('hex'))];
      expect(misses.length).toBeGreaterThan(7900);
      expect(wrong(misses.map((h) => ix.has(h)), misses.map((h) => set.has(h)))).toEqual([]);
      expect(misses.filter((h) => ix.get(h) !== undefined)).toEqual([]);
      // 70,000 more, indexed as a backup would: pending first, then inserted (runs of 65,536).
      const added = Array.from({ length: 70_000 }, () => randomBytes(32));
      const seenBefore: string[] = [];
      const pendingWrong: string[] = [];
      for (const [i, b] of added.entries()) {
        const h = b.toString('hex');
        if (ix.has(h)) seenBefore.push(h);
        ix.add(h);
        if (!ix.has(h) || ix.get(h) !== undefined) pendingWrong.push(h);
        ix.insert(h, loc(n + i));
        set.add(h);
      }
      expect(seenBefore).toEqual([]);
      expect(pendingWrong).toEqual([]);
      ix.insert(ids[0].toString('hex'), loc(99)); // already indexed: unchanged
      expect(ix.get(ids[0].toString('hex'))).toEqual(loc(0));
      expect(ix.size).toBe(n + added.length);
      const addedHex = added.map((b) => b.toString('hex'));
      expect(wrong(addedHex.map((h) => ix.get(h)), addedHex.map((_, i) => loc(n + i)))).toEqual([]);
      expect([...nearMisses(added.slice(0, 4000), set), ...nearMisses(ids.slice(0, 4000), set)].filter((h) => ix.has(h))).toEqual([]);
      // entries(): every indexed id once, with its location.
      const seen = new Map<string, ChunkLoc>();
      let repeated = 0;
      for (const [id, l] of ix.entries()) {
        if (seen.has(id)) repeated++;
        seen.set(id, l);
      }
      expect(repeated).toBe(0);
      expect(seen.size).toBe(set.size);
      expect([...set].filter((id) => !seen.has(id))).toEqual([]);
      expect(seen.get(addedHex[7])).toEqual(loc(n + 7));
      expect(ix.shared()).toEqual({ entries: null, count: 0, more: [] });
    } finally {
      ix.close();
    }
  });

  it('an index in memory crosses the budget as a backup inserts, and finds everything after', { timeout: 120_000 }, () => {
    const ix = ChunkIndex.fromRaw(Buffer.alloc(0), 0, [], 100_000 * ENTRY_BYTES);
    const ids = Array.from({ length: 140_000 }, () => randomBytes(32).toString('hex'));
    ids.forEach((h, i) => ix.insert(h, loc(i)));
    expect(ix.spilled).toBe(true);
    expect(ids.filter((h, i) => JSON.stringify(ix.get(h)) !== JSON.stringify(loc(i)))).toEqual([]);
    expect(ix.has(randomBytes(32).toString('hex'))).toBe(false);
    ix.close();
  });

  it('MEMVAULT_INDEX_MEMORY: sizes with K/M/G, a clear error otherwise', () => {
    expect(indexMemoryFromEnv(undefined)).toBe(64 * 1024 * 1024);
    expect(indexMemoryFromEnv('32M')).toBe(32 * 1024 * 1024);
    expect(indexMemoryFromEnv('1GiB')).toBe(1024 ** 3);
    expect(indexMemoryFromEnv('4096')).toBe(4096);
    expect(() => indexMemoryFromEnv('lots')).toThrow(ConfigError);
    expect(() => indexMemoryFromEnv('lots')).toThrow(/MEMVAULT_INDEX_MEMORY: expected a size/);
  });

  describe('loading a vault index', () => {
    let dir: string;
    beforeAll(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'memvault-ixb-')); });
    afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

    async function writeObjects(storage: FileStorage, dataKey: Buffer, ids: string[], per: number, from = 0): Promise<string[]> {
      const keys: string[] = [];
      for (let s = 0; s < ids.length; s += per) {
        const key = indexKey(newObjectId());
        const part = ids.slice(s, s + per).map((id, j) => [id, loc(from + s + j)] as [string, ChunkLoc]);
        await storage.put(key, encodeIndexObject(dataKey, key, part));
        keys.push(key);
      }
      return keys;
    }

    it('past the budget: the same answers as in memory, damaged objects left out, missing packs left out', async () => {
      const storage = new FileStorage(path.join(dir, 'v1'));
      const dataKey = randomBytes(32);
      const ids = Array.from({ length: 20_000 }, () => randomBytes(32).toString('hex'));
      const keys = await writeObjects(storage, dataKey, ids, 2500);
      // One object damaged: its entries must count in neither index.
      const bad = keys[3];
      const blob = await storage.get(bad);
      blob[blob.length - 5] ^= 1;
      await storage.put(bad, blob);
      const badIds = new Set(ids.slice(3 * 2500, 4 * 2500));
      const packs = new Map(PACKS.slice(0, 6).map((p) => [`packs/${p.slice(0, 2)}/${p}`, 1]));
      const mem = await loadIndex(storage, dataKey, { packs, memory: Infinity });
      const disk = await loadIndex(storage, dataKey, { packs, memory: 3000 * ENTRY_BYTES });
      try {
        expect(mem.spilled).toBe(false);
        expect(disk.spilled).toBe(true);
        expect(disk.damaged.map((d) => d.key)).toEqual([bad]);
        expect(disk.objects.length).toBe(keys.length - 1);
        expect([...disk.missingPacks]).toEqual([PACKS[6]]);
        expect(disk.size).toBe(mem.size);
        const want = ids.map((id, i) => (badIds.has(id) || loc(i).pack === PACKS[6] ? undefined : loc(i)));
        expect(want.filter((w) => w === undefined).length).toBeGreaterThan(2500);
        expect(ids.map((id) => mem.get(id))).toEqual(want);
        expect(ids.map((id) => disk.get(id))).toEqual(want);
        expect(ids.map((id) => disk.has(id))).toEqual(want.map((w) => w !== undefined));
      } finally {
        disk.close();
      }
    });

    it('2M ids with a 16 MiB budget: the index keeps under 16 MiB (in memory it would take 96 MB)', async () => {
      const storage = new FileStorage(path.join(dir, 'v2'));
      const dataKey = randomBytes(32);
      const n = 2_000_000;
      const probe: string[] = [];
      for (let s = 0; s < n; s += 250_000) {
        const ids = Array.from({ length: 250_000 }, () => randomBytes(32).toString('hex'));
        probe.push(...ids.slice(0, 500));
        await writeObjects(storage, dataKey, ids, 250_000, s);
      }
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as () => void;
      const used = () => { gc(); gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
      const budget = 16 * 1024 * 1024;
      const before = used();
      const ix = await loadIndex(storage, dataKey, { memory: budget });
      const kept = used() - before;
      try {
        expect(ix.size).toBe(n);
        expect(ix.spilled).toBe(true);
        expect(ix.memory).toBeLessThan(budget);
        expect(kept).toBeLessThan(budget);
        expect(probe.filter((id) => !ix.has(id))).toEqual([]);
        expect(Array.from({ length: 2000 }, () => randomBytes(32).toString('hex')).filter((id) => ix.has(id))).toEqual([]);
      } finally {
        ix.close();
      }
    }, 240_000);
  });
});
