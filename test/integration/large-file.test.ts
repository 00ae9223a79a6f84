// One large file on every chunk-pool worker (issue 11): its cut points found once on the
// main thread, its chunks sealed on all the workers, listed in file order; its restore
// written by parts on all the workers and checked. The vault's chunk sizes are made small
// (64-512 KiB) and MEMVAULT_LARGE_FILE_BYTES low, so tens of MiB make hundreds of chunks.
import { afterEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, promises as fs, writeSync } from 'node:fs';
import { makeFixture, writeTree } from '../helpers/fixture.ts';
import { chunkPlace, editObject } from '../helpers/packs.ts';
import { openVault } from '../../functions/services.ts';
import { runBackups } from '../../functions/ops.ts';
import { BackupWriter, type StreamResult } from '../../functions/core/writer.ts';
import { ChunkPool } from '../../functions/core/chunk-pool.ts';
import { chunkStream } from '../../functions/core/chunker.ts';
import { restoreEntryFile, PARTIAL_PREFIX } from '../../functions/components/restore-file.ts';
import { verifyVault } from '../../functions/core/verify.ts';
import { backupSeams } from '../../functions/components/files.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import type { Vault } from '../../functions/core/vault.ts';
import type { Entry } from '../../functions/core/manifest.ts';

const SMALL = { min: 64 * 1024, avg: 128 * 1024, max: 512 * 1024 };

afterEach(() => {
  delete process.env.MEMVAULT_WORKERS;
  delete process.env.MEMVAULT_LARGE_FILE_BYTES;
  delete process.env.MEMVAULT_TEST_FAIL_SEAL;
  delete backupSeams.beforeRead;
});

/** Random blocks, text and a repeated region: partly compressible, with chunks repeated inside the file. */
function weightsLike(mib: number): Buffer {
  const parts: Buffer[] = [];
  const repeated = randomBytes(1024 * 1024);
  for (let i = 0; i < mib; i++) {
    if (i % 4 === 1) parts.push(Buffer.from(`step ${i} loss 0.${i} memory concept recall `.repeat(30_000)).subarray(0, 1024 * 1024));
    else if (i % 8 === 6) parts.push(repeated);
    else parts.push(randomBytes(1024 * 1024));
  }
  parts.push(randomBytes(12345)); // not a multiple of anything
  return Buffer.concat(parts);
}

async function smallChunkVault(cfg: Parameters<typeof openVault>[0]): Promise<Vault> {
  const vault = await openVault(cfg);
  Object.defineProperty(vault, 'chunker', { value: SMALL });
  return vault;
}

async function listedOf(file: string) {
  const st = await fs.lstat(file, { bigint: true });
  return { size: Number(st.size), dev: st.dev, ino: st.ino };
}

/** Backs up one file with a new writer (workers and threshold from the environment); returns its result, the stats and how the pool spread it. */
async function backUp(vault: Vault, file: string, o: { onProgress?: (w: BackupWriter) => void } = {}) {
  const writer = new BackupWriter(vault, new Set());
  if (o.onProgress) writer.onProgress = () => o.onProgress!(writer);
  try {
    const r = await writer.writeFile(file, await listedOf(file));
    await writer.drain();
    const pool = (writer as unknown as { pool: ChunkPool | null }).pool;
    return { r, stats: { ...writer.stats }, spread: pool ? [...pool.partChunks] : [] };
  } finally {
    await writer.close();
  }
}

function entryOf(r: StreamResult, p: string): Entry {
  return { path: p, type: 'file', mode: 0o640, mtimeNs: '1700000000000000000', size: r.size, sha256: r.sha256, chunks: r.chunks };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('one large file on every worker', () => {
  it('backs up to the same chunk list as one worker and the main thread, and restores byte-identical on every worker', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    const data = weightsLike(40);
    const file = path.join(f.dir, 'src', 'model.safetensors');
    await writeTree(path.join(f.dir, 'src'), { 'model.safetensors': data });
    const vault = await smallChunkVault(f.cfg);

    process.env.MEMVAULT_WORKERS = '2';
    process.env.MEMVAULT_LARGE_FILE_BYTES = String(1024 * 1024);
    const split = await backUp(vault, file);
    // The work was spread: both workers sealed chunks of the one file.
    expect(split.spread.length).toBe(2);
    expect(Math.min(...split.spread)).toBeGreaterThan(20);
    expect(split.spread[0] + split.spread[1]).toBe(split.r.chunks.length);
    expect(split.r.chunks.length).toBeGreaterThan(200);
    expect(split.r.size).toBe(data.length);
    expect(split.r.sha256).toBe(sha(data));
    // In file order: the chunks' sizes add up, and ids are those of the bytes at their offsets.
    let pos = 0;
    for (const c of split.r.chunks) {
      expect(c.id).toBe(vault.chunkId(data.subarray(pos, pos + c.size)));
      pos += c.size;
    }
    expect(pos).toBe(data.length);
    // Deduplicated inside the file (the repeated MiB), compressed where it can be.
    const distinct = new Set(split.r.chunks.map((c) => c.id)).size;
    expect(distinct).toBeLessThan(split.r.chunks.length);
    expect(split.stats.chunksNew).toBe(distinct);
    expect(split.stats.chunksTotal).toBe(split.r.chunks.length);
    expect(split.stats.bytesRead).toBe(data.length);
    expect(split.stats.bytesStored).toBeLessThan(split.stats.newBytes);

    // The same file through one worker whole, and on the main thread: the same list.
    process.env.MEMVAULT_LARGE_FILE_BYTES = String(1024 ** 4);
    const whole = await backUp(vault, file);
    expect(whole.spread.every((n) => n === 0)).toBe(true);
    process.env.MEMVAULT_WORKERS = '0';
    const main = await backUp(vault, file);
    for (const other of [whole.r, main.r]) {
      expect(other.sha256).toBe(split.r.sha256);
      expect(other.chunks).toEqual(split.r.chunks);
    }

    // Restore on every worker, by parts written at their offsets: byte-identical, mode and time set.
    process.env.MEMVAULT_WORKERS = '2';
    process.env.MEMVAULT_LARGE_FILE_BYTES = String(1024 * 1024);
    const rvault = await openVault(f.cfg);
    const pool = ChunkPool.forRestore(rvault)!;
    const dest = path.join(f.dir, 'restore', 'model.safetensors');
    try {
      await restoreEntryFile(rvault, 'data', entryOf(split.r, 'model.safetensors'), dest, { pool, mode: 0o640, mtimeNs: '1700000000000000000' });
      expect(Math.min(...pool.partChunks)).toBeGreaterThan(20);
    } finally {
      await pool.close();
    }
    expect(sha(await fs.readFile(dest))).toBe(sha(data));
    const st = await fs.stat(dest);
    expect(st.mode & 0o777).toBe(0o640);
    expect(st.mtimeMs).toBe(1700000000000);
    expect((await fs.readdir(path.dirname(dest))).filter((n) => n.startsWith(PARTIAL_PREFIX))).toEqual([]);
  }, 120_000);

  it('restores of a large file are checked: a damaged chunk or a wrong SHA-256 fails naming it, leaving no file', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    const data = weightsLike(12);
    const file = path.join(f.dir, 'src', 'ckpt.bin');
    await writeTree(path.join(f.dir, 'src'), { 'ckpt.bin': data });
    process.env.MEMVAULT_WORKERS = '2';
    process.env.MEMVAULT_LARGE_FILE_BYTES = String(1024 * 1024);
    const { r } = await backUp(await smallChunkVault(f.cfg), file);
    const restoreDir = path.join(f.dir, 'restore');
    const attempt = async (e: Entry) => {
      const vault = await openVault(f.cfg);
      const pool = ChunkPool.forRestore(vault)!;
      try {
        return await restoreEntryFile(vault, 'data', e, path.join(restoreDir, 'ckpt.bin'), { pool }).then(() => null, (err: Error) => err);
      } finally {
        // Written by parts on both workers.
        expect(Math.min(...pool.partChunks)).toBeGreaterThan(0);
        await pool.close();
      }
    };
    // The SHA-256 the manifest records is checked over the whole file as written.
    const wrongSha = await attempt({ ...entryOf(r, 'ckpt.bin'), sha256: sha(Buffer.from('other')) });
    expect(wrongSha?.name).toBe('IntegrityError');
    expect(wrongSha?.message).toMatch(/data: ckpt\.bin: .*checksum mismatch/);
    expect(await fs.readdir(restoreDir)).toEqual([]);
    // One bit flipped in a chunk near the end.
    const vault = await openVault(f.cfg);
    const bad = r.chunks.at(-3)!.id;
    const place = await chunkPlace(vault, bad);
    await editObject(vault.storage, place.key, (blob) => { blob[place.offset + place.length - 40] ^= 1; });
    const damaged = await attempt(entryOf(r, 'ckpt.bin'));
    expect(damaged?.name).toBe('IntegrityError');
    expect(damaged?.message).toContain(bad);
    expect(await fs.readdir(restoreDir)).toEqual([]);
  }, 120_000);

  it('a file that changes while it is read is backed up as read, consistently; one replaced before it is read is reported', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    const data = weightsLike(16);
    const file = path.join(f.dir, 'src', 'growing.bin');
    await writeTree(path.join(f.dir, 'src'), { 'growing.bin': data });
    process.env.MEMVAULT_WORKERS = '2';
    process.env.MEMVAULT_LARGE_FILE_BYTES = String(1024 * 1024);
    const vault = await smallChunkVault(f.cfg);
    // After the first chunk comes back, 4 MiB are overwritten near the end and 3 MiB appended.
    const extra = randomBytes(3 * 1024 * 1024);
    const patch = randomBytes(4 * 1024 * 1024);
    let changed = false;
    const { r, spread } = await backUp(vault, file, {
      onProgress: () => {
        if (changed) return;
        changed = true;
        const fd = openSync(file, 'r+');
        writeSync(fd, patch, 0, patch.length, data.length - patch.length);
        writeSync(fd, extra, 0, extra.length, data.length);
        closeSync(fd);
      },
    });
    expect(changed).toBe(true);
    expect(Math.min(...spread)).toBeGreaterThan(0);
    // What was read, read once: the SHA-256 and the chunks are of the same bytes.
    const now = await fs.readFile(file);
    expect(r.size).toBe(now.length);
    expect(r.sha256).toBe(sha(now));
    const rvault = await openVault(f.cfg);
    const pool = ChunkPool.forRestore(rvault)!;
    const dest = path.join(f.dir, 'restore', 'growing.bin');
    try {
      await restoreEntryFile(rvault, 'data', entryOf(r, 'growing.bin'), dest, { pool });
    } finally {
      await pool.close();
    }
    expect(sha(await fs.readFile(dest))).toBe(sha(now));

    // Replaced by another file between the listing and the read: reported by name, as on the other paths.
    backupSeams.beforeRead = async (rel, abs) => {
      if (rel !== 'growing.bin') return;
      // A new inode (written beside it, then renamed over it).
      await fs.writeFile(`${abs}.new`, randomBytes(2 * 1024 * 1024));
      await fs.rename(`${abs}.new`, abs);
    };
    const run = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    expect(run.ok).toBe(false);
    expect(run.outcomes[0].warnings).toEqual([expect.stringMatching(/growing\.bin.*replaced by another file/)]);
    expect(run.failures[0].errorName).toBe('IncompleteBackup');
  }, 120_000);

  it('an error in one worker fails the backup with that error, without hanging, and leaves only whole chunks in the index', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    const data = weightsLike(24);
    await writeTree(path.join(f.dir, 'src'), { 'weights.bin': data });
    const vault = await openVault(f.cfg);
    // The offset of a chunk in the middle of the file (default chunk sizes of the vault).
    const offsets: number[] = [];
    let pos = 0;
    for await (const c of chunkStream((async function* () { yield data; })(), vault.keys.gear, vault.chunker)) { offsets.push(pos); pos += c.length; }
    expect(offsets.length).toBeGreaterThan(10);
    process.env.MEMVAULT_WORKERS = '2';
    process.env.MEMVAULT_LARGE_FILE_BYTES = String(1024 * 1024);
    process.env.MEMVAULT_TEST_FAIL_SEAL = String(offsets[Math.floor(offsets.length / 2)]);
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the backup hung')), 30_000));
    const r = await Promise.race([runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger }), timeout]);
    expect(r.ok).toBe(false);
    expect(r.failures[0].error).toMatch(/injected failure sealing the chunk at offset \d+/);
    expect(r.outcomes.length === 0 || r.outcomes[0].warnings.length === 0).toBe(true);
    const after = await openVault(f.cfg);
    expect(await after.storage.has('manifests')).toBe(false);
    // Whatever reached the index is whole: every indexed chunk opens and matches its id.
    const report = await verifyVault(after, { readData: 'all' });
    expect(report.problems).toEqual([]);
  }, 60_000);

  it('a worker that dies fails the file and the writer with its error, without hanging', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    const data = weightsLike(24);
    const file = path.join(f.dir, 'src', 'weights.bin');
    await writeTree(path.join(f.dir, 'src'), { 'weights.bin': data });
    process.env.MEMVAULT_WORKERS = '2';
    process.env.MEMVAULT_LARGE_FILE_BYTES = String(1024 * 1024);
    const vault = await smallChunkVault(f.cfg);
    const writer = new BackupWriter(vault, new Set());
    let killed = false;
    let progress = 0;
    let split = 0;
    writer.onProgress = () => {
      if (killed || ++progress < 10) return;
      killed = true;
      const pool = (writer as unknown as { pool: { partChunks: number[]; slots: { worker: { terminate(): Promise<number> } }[] } }).pool;
      // The file is being sealed by parts (on the workers) when one of them dies.
      split = pool.partChunks.reduce((a, b) => a + b, 0);
      void pool.slots[1].worker.terminate();
    };
    try {
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the backup hung')), 30_000));
      const err = await Promise.race([writer.writeFile(file, await listedOf(file)).then(() => null, (e: Error) => e), timeout]);
      expect(killed).toBe(true);
      expect(split).toBeGreaterThan(0);
      expect(err?.message).toMatch(/chunk worker exited/);
      expect((err as NodeJS.ErrnoException).code).toBeUndefined();
      // The writer has stopped: the next file fails with the same error.
      await expect(writer.writeFile(file, await listedOf(file))).rejects.toThrow(/chunk worker exited/);
    } finally {
      await writer.close();
    }
  }, 60_000);
});
