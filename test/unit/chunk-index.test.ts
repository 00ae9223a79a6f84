// The in-memory chunk index: a sorted buffer of 48-byte entries plus what a run
// adds (merged every 64 Ki entries), and index objects sealed under the vault key.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ChunkIndex, ENTRY_BYTES, decodeIndexObject, encodeIndexObject } from '../../functions/core/chunk-index.ts';
import { IntegrityError } from '../../functions/core/errors.ts';

const hex = () => randomBytes(32).toString('hex');

describe('chunk index', () => {
  // 70,000 inserts with three assertions each: over a minute on a loaded 2-core machine.
  it('finds every id after loading and after runs of inserts merged into the sorted buffer', { timeout: 240_000 }, () => {
    const n = 20_000;
    const raw = Buffer.alloc(n * ENTRY_BYTES);
    const loaded: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = randomBytes(32);
      id.copy(raw, i * ENTRY_BYTES);
      raw.writeUInt32LE(i % 3, i * ENTRY_BYTES + 32);
      raw.writeUInt32LE(i, i * ENTRY_BYTES + 36);
      raw.writeUInt32LE(100 + i, i * ENTRY_BYTES + 40);
      raw[i * ENTRY_BYTES + 44] = 3;
      loaded.push(id.toString('hex'));
    }
    const packs = ['a', 'b', 'c'].map((c) => c.repeat(32));
    const ix = ChunkIndex.fromRaw(raw, n, packs);
    loaded.forEach((id, i) => expect(ix.get(id)).toEqual({ pack: packs[i % 3], offset: i, length: 100 + i, kind: 3 }));
    // 70,000 inserted: one merge at 65,536, the rest in the map.
    const added = Array.from({ length: 70_000 }, hex);
    for (const [i, id] of added.entries()) {
      ix.add(id);
      expect(ix.has(id)).toBe(true); // pending: known for dedup
      expect(ix.get(id)).toBeUndefined(); // not findable until indexed
      ix.insert(id, { pack: 'd'.repeat(32), offset: i, length: 1, kind: 2 });
    }
    expect(ix.size).toBe(n + added.length);
    for (const [i, id] of added.entries()) expect(ix.get(id)?.offset).toBe(i);
    for (const id of loaded.slice(0, 2000)) expect(ix.has(id)).toBe(true);
    expect(ix.has(hex())).toBe(false);
    const all = [...ix.entries()].map(([id]) => id);
    expect(all).toEqual([...all].sort());
    expect(new Set(all).size).toBe(all.length);
  });

  it('index objects open only under their key and name', () => {
    const key = randomBytes(32);
    const entries: [string, { pack: string; offset: number; length: number; kind: number }][] = [[hex(), { pack: 'e'.repeat(32), offset: 7, length: 9, kind: 2 }]];
    const blob = encodeIndexObject(key, 'index/' + '1'.repeat(32), entries);
    const got: unknown[] = [];
    decodeIndexObject(key, 'index/' + '1'.repeat(32), blob, (id, pack, offset, length, kind) => got.push([id.toString('hex'), { pack, offset, length, kind }]));
    expect(got).toEqual(entries);
    expect(() => decodeIndexObject(key, 'index/' + '2'.repeat(32), blob, () => {})).toThrow(IntegrityError);
    blob[blob.length - 20] ^= 1;
    expect(() => decodeIndexObject(key, 'index/' + '1'.repeat(32), blob, () => {})).toThrow(/authentication failed/);
  });
});
