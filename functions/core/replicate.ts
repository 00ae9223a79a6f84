// Replication to the secondary (DR) vault. Objects never change once written,
// so copying whatever the secondary lacks is idempotent and resumable. Chunks
// go first, manifests last, so the secondary never shows a backup whose chunks
// have not arrived. Objects are copied as sealed bytes; both vaults share the
// vault secret (wrapped by each region's own key), so the copy opens on its own.
import type { Storage } from './ports.ts';
import { Vault } from './vault.ts';
import { PermanentError } from './errors.ts';

export interface ReplicateReport {
  from: string;
  to: string;
  chunksCopied: number;
  manifestsCopied: number;
  bytesCopied: number;
  alreadyPresent: number;
  durationMs: number;
}

async function keys(storage: Storage, prefix: string): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for await (const o of storage.list(prefix)) m.set(o.key, o.size);
  return m;
}

export async function replicate(source: Storage, dest: Storage, o: { concurrency?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<ReplicateReport> {
  const t0 = Date.now();
  const [srcDoc, dstDoc] = await Promise.all([Vault.readDoc(source), Vault.readDoc(dest)]);
  if (srcDoc.vaultId !== dstDoc.vaultId) {
    throw new PermanentError(`${dest.url} is vault ${dstDoc.vaultId}, not a replica of ${source.url} (vault ${srcDoc.vaultId}); run \`memvault init\` to create the secondary as a replica`);
  }
  let bytesCopied = 0;
  let present = 0;
  const report = { chunksCopied: 0, manifestsCopied: 0 };
  for (const prefix of ['chunks/', 'manifests/'] as const) {
    const [src, dst] = await Promise.all([keys(source, prefix), keys(dest, prefix)]);
    const todo = [...src.keys()].filter((k) => {
      if (dst.has(k)) { present++; return false; }
      return true;
    });
    let done = 0;
    const worker = async () => {
      for (let k = todo.pop(); k !== undefined; k = todo.pop()) {
        const data = await source.get(k);
        await dest.put(k, data);
        bytesCopied += data.length;
        if (prefix === 'chunks/') report.chunksCopied++;
        else report.manifestsCopied++;
        o.onProgress?.(++done, todo.length + done);
      }
    };
    await Promise.all(Array.from({ length: o.concurrency ?? 8 }, worker));
  }
  return { from: source.url, to: dest.url, ...report, bytesCopied, alreadyPresent: present, durationMs: Date.now() - t0 };
}
