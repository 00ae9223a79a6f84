// Test helpers for the pack layout (memvault/2): where a chunk's bytes are, and
// damage to them in place (a chunk inside a pack, a pack header, an index object).
import type { Storage } from '../../functions/core/ports.ts';
import type { Vault } from '../../functions/core/vault.ts';
import { loadIndex } from '../../functions/core/chunk-index.ts';
import { packKey } from '../../functions/core/packs.ts';

export interface ChunkPlace {
  /** The pack object's key. */
  key: string;
  offset: number;
  length: number;
}

/** Where a chunk is stored, from the vault's index as it is on storage now. */
export async function chunkPlace(vault: Vault, id: string, storage: Storage = vault.storage): Promise<ChunkPlace> {
  const ix = await loadIndex(storage, vault.keys.dataKey);
  const loc = ix.get(id);
  if (!loc) throw new Error(`chunk ${id} is in no index object`);
  return { key: packKey(loc.pack), offset: loc.offset, length: loc.length };
}

/** Rewrites a stored object with `edit` applied to a copy of its bytes. */
export async function editObject(storage: Storage, key: string, edit: (b: Buffer) => Buffer | void): Promise<void> {
  const b = Buffer.from(await storage.get(key));
  await storage.put(key, edit(b) ?? b);
}

/** Flips one bit of a chunk's bytes inside its pack (`at`: byte offset inside the chunk). */
export async function flipChunkBit(vault: Vault, id: string, at = 20, storage: Storage = vault.storage): Promise<ChunkPlace> {
  const p = await chunkPlace(vault, id, storage);
  await editObject(storage, p.key, (b) => { b[p.offset + Math.min(at, p.length - 1)] ^= 1; });
  return p;
}

/** Flips one bit of a pack's sealed header (just before its 4-byte length word). */
export async function flipPackHeaderBit(storage: Storage, key: string): Promise<void> {
  await editObject(storage, key, (b) => { b[b.length - 10] ^= 1; });
}

/** Every object key under a prefix. */
export async function keysUnder(storage: Storage, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of storage.list(prefix)) out.push(o.key);
  return out.sort();
}

/** Removes a chunk's entry from the index objects that hold it (rewritten, sealed, under their own keys): the chunk is then missing. */
export async function dropFromIndex(vault: Vault, id: string, storage: Storage = vault.storage): Promise<void> {
  const { decodeIndexObject, encodeIndexObject } = await import('../../functions/core/chunk-index.ts');
  for (const key of await keysUnder(storage, 'index/')) {
    const entries: [string, { pack: string; offset: number; length: number; kind: number }][] = [];
    let found = false;
    decodeIndexObject(vault.keys.dataKey, key, await storage.get(key), (cid, pack, offset, length, kind) => {
      const h = cid.toString('hex');
      if (h === id) found = true;
      else entries.push([h, { pack, offset, length, kind }]);
    });
    if (found) await storage.put(key, encodeIndexObject(vault.keys.dataKey, key, entries));
  }
}

/** How many chunks the index objects on storage name. */
export async function indexedChunks(vault: Vault, storage: Storage = vault.storage): Promise<number> {
  return (await loadIndex(storage, vault.keys.dataKey)).size;
}
