// The files driver on chunk-pool workers (MEMVAULT_WORKERS; on by default
// with two cores): same vault objects as the main-thread path (same chunk ids,
// so the two deduplicate against each other), objects the workers wrote pass
// a full read-data verify, byte-identical restores, a failed store fails the
// backup (it is not a file warning), bad settings named.
import { afterEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { chunkPlace, dropFromIndex, editObject } from '../helpers/packs.ts';
import { makeFixture, writeTree } from '../helpers/fixture.ts';
import { runBackups } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import { workersFromEnv } from '../../functions/core/chunk-pool.ts';
import { verifyVault } from '../../functions/core/verify.ts';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import { DatabaseSync } from 'node:sqlite';
import { fingerprint, diffFingerprints } from '../../local/platform.ts';

afterEach(() => { delete process.env.MEMVAULT_WORKERS; });

describe('chunk pool workers', () => {
  it('back up in parallel to the same chunks as the main thread, and restore byte-identical', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    const src = path.join(f.dir, 'src');
    const files: Record<string, Buffer | string> = {
      'weights/big.bin': randomBytes(21 * 1024 * 1024 + 7),
      'weights/mid.bin': randomBytes(5 * 1024 * 1024),
      'logs/agent.log': 'recall memory concept '.repeat(300_000),
      'empty.txt': '',
      // The same chunk many times in one file: later copies come while the first is still being committed.
      'weights/zeros.bin': Buffer.alloc(20 * 1024 * 1024),
    };
    for (let i = 0; i < 40; i++) files[`sessions/s${i}.json`] = JSON.stringify({ i, text: 'x'.repeat(1000 + i * 37) });
    await writeTree(src, files);
    // A SQLite database: chunked at a quarter of the vault's sizes, on both paths alike.
    const db = new DatabaseSync(path.join(src, 'memory.db'));
    db.exec('CREATE TABLE m (id INTEGER PRIMARY KEY, fact TEXT, embedding BLOB)');
    const ins = db.prepare('INSERT INTO m (fact, embedding) VALUES (?, ?)');
    for (let i = 0; i < 3000; i++) ins.run(`fact ${i} ${'x'.repeat(i % 200)}`, randomBytes(1024));
    db.close();
    const alerts = new FileAlertSink(f.alertsFile);

    process.env.MEMVAULT_WORKERS = '2';
    const pooled = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
    expect(pooled.ok).toBe(true);
    const s = pooled.outcomes[0].stats;
    expect(s.bytesRead).toBe(s.bytesTotal);
    expect(s.newBytes).toBeGreaterThan(26 * 1024 * 1024);
    expect(s.bytesStored).toBeLessThan(s.newBytes); // the log compressed

    // The main-thread path finds every chunk already there: identical boundaries and ids.
    process.env.MEMVAULT_WORKERS = '0';
    const streamed = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
    expect(streamed.outcomes[0].stats.chunksNew).toBe(0);
    const vault = await openVault(f.cfg);
    const [a, b] = await Promise.all([vault.readManifest(pooled.outcomes[0].manifestKey), vault.readManifest(streamed.outcomes[0].manifestKey)]);
    const strip = (m: typeof a) => m.entries.map((e) => [e.path, e.type, e.size, e.sha256, e.chunks?.map((c) => c.id).join(',')]);
    expect(strip(a)).toEqual(strip(b));
    // Each distinct chunk counted (and stored) once.
    expect(s.chunksNew).toBe(new Set(a.entries.flatMap((e) => e.chunks?.map((c) => c.id) ?? [])).size);
    expect(a.entries.find((e) => e.path === 'weights/zeros.bin')!.chunks!.length).toBeGreaterThan(2);
    const dbEntry = a.entries.find((e) => e.path === 'memory.db')!;
    const avg = dbEntry.size / dbEntry.chunks!.length;
    expect(avg).toBeLessThan(vault.chunker.avg / 2);

    // Every object the workers wrote (local vault: they store chunks themselves) authenticates,
    // decompresses and matches its keyed id; no temporary file is left behind.
    const report = await verifyVault(vault, { readData: 'all' });
    expect(report.problems).toEqual([]);
    expect(report.chunksRead).toBe(s.chunksNew);
    const leftovers = (await fs.readdir(path.join(f.dir, 'vault-primary', 'packs'), { recursive: true })).filter((n) => String(n).includes('.tmp-'));
    expect(leftovers).toEqual([]);

    const plan = await planRestore(vault, { mode: 'backup', backupId: pooled.outcomes[0].backupId }, undefined, ['data']);
    const target = path.join(f.dir, 'restore');
    const res = await restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
    expect(res.ok).toBe(true);
    expect(diffFingerprints(await fingerprint(src), await fingerprint(path.join(target, 'data')))).toEqual([]);
  });

  for (const workers of ['2', '0']) {
    it(`fails the backup, naming the chunk and the vault, when a chunk cannot be stored (workers: ${workers})`, async () => {
      const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
      await writeTree(path.join(f.dir, 'src'), { 'a.bin': randomBytes(3 * 1024 * 1024), 'b.txt': 'episode '.repeat(10_000) });
      // Every pack directory is taken by a plain file: no pack can be written.
      const chunks = path.join(f.dir, 'vault-primary', 'packs');
      await fs.mkdir(chunks, { recursive: true });
      for (let i = 0; i < 256; i++) await fs.writeFile(path.join(chunks, i.toString(16).padStart(2, '0')), '');
      process.env.MEMVAULT_WORKERS = workers;
      const alerts = new FileAlertSink(f.alertsFile);
      const r = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
      expect(r.ok).toBe(false);
      expect(r.failures[0].component).toBe('data');
      expect(r.failures[0].error).toMatch(/chunk [0-9a-f]{64}|packs\/[0-9a-f]{2}\/[0-9a-f]{32}/); // "storing chunk <id>" or the storage's "cannot write packs/ab/<id>"
      expect(r.failures[0].error).not.toMatch(/unreadable|vanished/);
      const vault = await openVault(f.cfg);
      expect(await vault.storage.has('manifests')).toBe(false);
      const alert = (await fs.readFile(f.alertsFile, 'utf8')).trim().split('\n').map((l) => JSON.parse(l)).at(-1);
      expect(alert.component).toBe('data');
    });
  }

  it('restores on workers and on the main thread alike: a corrupt or missing chunk fails naming chunk and file, leaving nothing', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    const src = path.join(f.dir, 'src');
    await writeTree(src, { 'good.txt': 'kept '.repeat(1000), 'weights.bin': randomBytes(3 * 1024 * 1024), 'notes.txt': 'episode '.repeat(50_000) });
    const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    expect(r.ok).toBe(true);
    const vault = await openVault(f.cfg);
    const m = await vault.readManifest(r.outcomes[0].manifestKey);
    const plan = await planRestore(vault, { mode: 'latest' }, undefined, ['data']);
    const run = async (workers: string, name: string) => {
      process.env.MEMVAULT_WORKERS = workers;
      const target = path.join(f.dir, `restore-${name}-${workers}`);
      try {
        const res = await restorePlan({ cfg: f.cfg, vault: await openVault(f.cfg), driverFor, log: silentLogger }, plan, target, false);
        return { res, target, err: '' };
      } catch (err) {
        return { res: { ok: false }, target, err: (err as Error).message };
      }
    };
    // Intact: byte-identical on both paths.
    for (const w of ['2', '0']) {
      const { res, target } = await run(w, 'ok');
      expect(res.ok).toBe(true);
      expect(diffFingerprints(await fingerprint(src), await fingerprint(path.join(target, 'data')))).toEqual([]);
    }
    // One bit flipped in a chunk of weights.bin.
    const weights = m.entries.find((e) => e.path === 'weights.bin')!;
    const bad = weights.chunks!.at(-1)!.id;
    const place = await chunkPlace(vault, bad);
    await editObject(vault.storage, place.key, (blob) => { blob[place.offset + place.length - 40] ^= 1; });
    const errors: string[] = [];
    for (const w of ['2', '0']) {
      const { res, target, err } = await run(w, 'corrupt');
      expect(res.ok).toBe(false);
      expect(err).toContain(bad);
      expect(err).toContain('weights.bin');
      expect(err).toMatch(/authentication failed/);
      errors.push(err);
      const left = await fs.readdir(path.join(target, 'data')).catch(() => [] as string[]);
      expect(left.filter((n) => n.startsWith('weights.bin'))).toEqual([]);
    }
    expect(errors[0]).toBe(errors[1]);
    // The chunk gone (in no index object).
    await dropFromIndex(vault, bad);
    for (const w of ['2', '0']) {
      const { res, err } = await run(w, 'missing');
      expect(res.ok).toBe(false);
      expect(err).toMatch(new RegExp(`weights\\.bin: chunk ${bad} is missing from file://`));
    }
  });

  it('reads MEMVAULT_WORKERS and names a bad value', () => {
    expect(workersFromEnv(undefined)).toBe(os.availableParallelism() >= 2 ? 2 : 0);
    expect(workersFromEnv('0')).toBe(0);
    expect(workersFromEnv('3')).toBe(3);
    expect(workersFromEnv('auto')).toBeGreaterThanOrEqual(1);
    expect(() => workersFromEnv('many')).toThrow(/MEMVAULT_WORKERS: expected a number of worker threads/);
  });
});
