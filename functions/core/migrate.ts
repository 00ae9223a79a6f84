// `memvault migrate`: converts a memvault/1 vault (one object per chunk,
// chunks/<id[0:2]>/<id>) to memvault/2 (packs and a chunk index), in place.
//
// Under the vault's exclusive prune lock (no backup, replicate or prune runs
// meanwhile): every chunk object not yet in the index is read, authenticated
// (its AES-GCM tag, bound to its id) and appended as it is — the sealed bytes
// of a chunk are the same in both formats — to packs; index objects follow
// their packs (every ~256 MiB of packs, so a long run keeps its progress).
// Then vault.json is rewritten with format memvault/2 (and its authentication
// code), and only then are the chunk objects deleted. Killed at any point, it
// is run again: chunks already indexed are skipped, and a vault already at
// memvault/2 only loses its leftover chunk objects that the index holds.
import type { KeyProvider, Storage } from './ports.ts';
import { VAULT_CONFIG_KEY, VAULT_FORMAT, Vault, docMac, parseChunkKey } from './vault.ts';
import { PackWriter } from './packs.ts';
import { maxSealedChunkBytes } from './chunk-codec.ts';
import { IntegrityError, NotFoundError, errorMessage } from './errors.ts';

export interface MigrateReport {
  vault: string;
  from: string;
  to: string;
  chunksPacked: number;
  chunksAlreadyIndexed: number;
  packsWritten: number;
  chunkObjectsDeleted: number;
  /** Chunk objects that did not open (left in place, named). */
  damaged: { key: string; problem: string }[];
}

export async function migrateVault(storage: Storage, provider: KeyProvider, o: { packBytes?: number; onProgress?: (done: number) => void } = {}): Promise<MigrateReport> {
  const { vault } = await Vault.openWithSecret(storage, provider, { allowV1: true });
  const report: MigrateReport = { vault: storage.url, from: vault.doc.format, to: VAULT_FORMAT, chunksPacked: 0, chunksAlreadyIndexed: 0, packsWritten: 0, chunkObjectsDeleted: 0, damaged: [] };
  const lock = await vault.lock('prune');
  try {
    const index = await vault.listChunks();
    const writer = new PackWriter(storage, vault.keys.dataKey, index, { targetBytes: o.packBytes });
    const leftovers: string[] = [];
    let sinceFlush = 0;
    for await (const obj of storage.list('chunks/')) {
      const id = parseChunkKey(obj.key);
      if (!id) continue;
      if (index.has(id)) { report.chunksAlreadyIndexed++; leftovers.push(obj.key); continue; }
      let blob: Buffer;
      try {
        blob = await storage.get(obj.key, { maxBytes: maxSealedChunkBytes(vault.chunker.max) });
        await vault.decodeChunk(id, blob, { checkId: false });
      } catch (err) {
        if (err instanceof NotFoundError) continue;
        if (!(err instanceof IntegrityError)) throw err;
        report.damaged.push({ key: obj.key, problem: errorMessage(err) });
        continue;
      }
      index.add(id);
      await writer.add(id, [blob]);
      leftovers.push(obj.key);
      report.chunksPacked++;
      sinceFlush += blob.length;
      if (sinceFlush >= 256 * 1024 * 1024) { await writer.flush(); sinceFlush = 0; }
      o.onProgress?.(report.chunksPacked);
    }
    await writer.flush();
    report.packsWritten = writer.written.packs.length;
    if (report.damaged.length > 0) {
      throw new IntegrityError(`migrate: ${report.damaged.length} chunk object(s) of ${storage.url} do not open (${report.damaged.slice(0, 3).map((d) => `${d.key}: ${d.problem}`).join('; ')}); the chunks that open are packed and indexed, vault.json is unchanged. Restore the damaged chunks from the other vault (or remove them if no backup needs them) and run \`memvault migrate\` again`, report.damaged[0].key);
    }
    if (vault.doc.format !== VAULT_FORMAT) {
      const { mac: _old, ...rest } = vault.doc;
      const unsigned = { ...rest, format: VAULT_FORMAT as typeof rest.format };
      await storage.put(VAULT_CONFIG_KEY, Buffer.from(JSON.stringify({ ...unsigned, mac: docMac(vault.keys.configKey, unsigned) }, null, 2)));
    }
    // vault.json says memvault/2 now: the chunk objects, all packed and indexed, can go.
    if (!(await lock.held())) return report;
    for (const key of leftovers) {
      await storage.delete(key);
      report.chunkObjectsDeleted++;
    }
    return report;
  } finally {
    await lock.release().catch(() => undefined);
  }
}
