// Writing restored entries to files, for every driver that restores into a
// directory. Each file is written under a temporary name while its chunks are
// read back (each authenticated and its keyed id checked; the whole entry's
// size and SHA-256 checked at the end, see readEntry), and only then renamed
// into place: a damaged backup fails naming the component, entry and chunk,
// and leaves no partial or wrong file behind.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Vault } from '../core/vault.ts';
import type { Entry } from '../core/manifest.ts';
import { readEntry } from '../core/writer.ts';
import { IntegrityError } from '../core/errors.ts';
import type { ChunkPool } from '../core/chunk-pool.ts';

const DEFAULT_PREFETCH = 8 * 1024 * 1024;

/** `rel` joined under `root`; a path that would leave `root` is a damaged (or hostile) manifest. */
export function safeJoin(root: string, rel: string): string {
  const abs = path.resolve(root, rel);
  if (abs !== root && !abs.startsWith(root.endsWith(path.sep) ? root : root + path.sep)) {
    throw new IntegrityError(`manifest entry "${rel}" escapes the restore target`);
  }
  return abs;
}

async function writeFully(fh: fs.FileHandle, data: Buffer, pos: number): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off, pos + off);
    off += bytesWritten;
  }
}

/**
 * Restores one entry's bytes to `dest` (tmp file, verified, renamed), on a
 * chunk-pool worker when `pool` is given (local vaults), else here. Restored
 * files are not fsynced one by one: a restore interrupted by a crash is simply
 * run again, and the validation that follows reads every file back.
 */
export async function restoreEntryFile(vault: Vault, component: string, e: Entry, dest: string, o: { prefetch?: number; mode?: number; pool?: ChunkPool | null } = {}): Promise<number> {
  await fs.mkdir(path.dirname(dest), { recursive: true });
  if (o.pool) {
    // A worker of the chunk pool reads the local vault and writes the file, with the same checks.
    try {
      await o.pool.restore(e, dest, o.mode);
    } catch (err) {
      if (err instanceof IntegrityError) throw new IntegrityError(`${component}: ${e.path}: ${err.message}`, err.objectKey);
      throw err;
    }
    return e.size;
  }
  const tmp = `${dest}.memvault-partial`;
  const fh = await fs.open(tmp, 'w', 0o600);
  try {
    let pos = 0;
    for await (const data of readEntry(vault, e, o.prefetch ?? DEFAULT_PREFETCH)) {
      await writeFully(fh, data, pos);
      pos += data.length;
    }
  } catch (err) {
    await fh.close();
    await fs.rm(tmp, { force: true });
    if (err instanceof IntegrityError) throw new IntegrityError(`${component}: ${e.path}: ${err.message}`, err.objectKey);
    throw err;
  }
  await fh.close();
  await fs.rename(tmp, dest);
  if (o.mode !== undefined) await fs.chmod(dest, o.mode);
  return e.size;
}

/** Restores entries as files under `dir` (entry paths relative to it); returns the bytes written. */
export async function restoreEntriesToDir(vault: Vault, component: string, entries: Entry[], dir: string): Promise<number> {
  await fs.mkdir(dir, { recursive: true });
  let bytes = 0;
  for (const e of entries) bytes += await restoreEntryFile(vault, component, e, safeJoin(path.resolve(dir), e.path));
  return bytes;
}
