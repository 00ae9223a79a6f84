// A files backup reads exactly what it listed (issue 9, item 3). A local user
// who can write the source tree swaps a listed file, between the walk's lstat
// and the reader's open, for a symlink to a root-only file, a FIFO, another
// file, or swaps a parent directory for a symlink leading outside the tree.
// The swap is made deterministic by the files driver's test seam (called after
// the listing, before the open); the backup must report the file by name (an
// incomplete backup, alerted), and the root-only content must not be in the
// vault: the backup is restored and every restored byte searched for it. Both
// read paths: chunk-pool workers and the main thread.
import { afterEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeFixture, writeTree, type Fixture } from '../helpers/fixture.ts';
import { runBackups } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import { backupSeams } from '../../functions/components/files.ts';
import { BackupWriter } from '../../functions/core/writer.ts';

afterEach(() => {
  delete process.env.MEMVAULT_WORKERS;
  delete backupSeams.beforeRead;
});

/** A root-only file outside the tree, with content that must never reach the vault. */
async function secretFile(f: Fixture): Promise<{ file: string; marker: Buffer }> {
  const marker = Buffer.from(`ROOT-ONLY-${randomBytes(16).toString('hex')}`);
  const file = path.join(f.dir, 'outside', 'shadow');
  await fs.mkdir(path.dirname(file), { recursive: true });
  // Large enough to span several chunks, the marker repeated throughout.
  await fs.writeFile(file, Buffer.concat(Array.from({ length: 4096 }, () => marker)), { mode: 0o600 });
  return { file, marker };
}

/** Restores the backup and returns every restored file's bytes, by path. */
async function restoredFiles(f: Fixture, backupId: string): Promise<Map<string, Buffer>> {
  const vault = await openVault(f.cfg);
  const plan = await planRestore(vault, { mode: 'backup', backupId }, undefined, ['graph']);
  const target = path.join(f.dir, `restore-${backupId}`);
  await restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
  const out = new Map<string, Buffer>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.set(path.relative(path.join(target, 'graph'), p), await fs.readFile(p));
    }
  };
  await walk(path.join(target, 'graph'));
  return out;
}

async function readAlerts(file: string): Promise<{ component?: string; message: string }[]> {
  return (await fs.readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
}

const swaps: { name: string; rel: string; swap: (abs: string, f: Fixture, secret: string) => Promise<void>; warning: RegExp }[] = [
  {
    name: 'replaced by a symlink to a root-only file',
    rel: 'nodes.jsonl',
    swap: async (abs, _f, secret) => { await fs.rm(abs); await fs.symlink(secret, abs); },
    warning: /^nodes\.jsonl: changed during the backup \(listed as a regular file, now a symbolic link\); not backed up$/,
  },
  {
    name: 'replaced by a hard link to the root-only file (another inode)',
    rel: 'nodes.jsonl',
    swap: async (abs, _f, secret) => { await fs.rm(abs); await fs.link(secret, abs); },
    warning: /^nodes\.jsonl: replaced by another file during the backup; not backed up$/,
  },
  {
    name: 'replaced by a FIFO (the backup must not hang on it)',
    rel: 'nodes.jsonl',
    swap: async (abs) => { await fs.rm(abs); execFileSync('mkfifo', [abs]); },
    warning: /^nodes\.jsonl: changed during the backup \(listed as a regular file, now a FIFO\); not backed up$/,
  },
  {
    name: 'under a parent directory replaced by a symlink leading out of the tree',
    rel: 'sub/edges.jsonl',
    swap: async (abs, f, secret) => {
      const sub = path.dirname(abs);
      const elsewhere = path.join(f.dir, 'elsewhere');
      await fs.mkdir(elsewhere);
      await fs.link(secret, path.join(elsewhere, 'edges.jsonl'));
      await fs.rename(sub, `${sub}.moved`);
      await fs.symlink(elsewhere, sub);
    },
    warning: /^sub\/edges\.jsonl: replaced by another file during the backup; not backed up$/,
  },
];

describe('files backup reads exactly what it listed', () => {
  for (const workers of ['2', '0']) {
    for (const s of swaps) {
      it(`a listed file ${s.name} before it is read is reported by name, and not read (workers: ${workers})`, async () => {
        const f = await makeFixture({ graph: { kind: 'files', path: 'src' } }, { secondary: false });
        const src = path.join(f.dir, 'src');
        await writeTree(src, {
          'nodes.jsonl': '{"id":1,"label":"public"}\n'.repeat(2000),
          'sub/edges.jsonl': '{"from":1,"to":2}\n'.repeat(2000),
          'weights.bin': randomBytes(3 * 1024 * 1024),
        });
        const secret = await secretFile(f);
        let swapped = 0;
        backupSeams.beforeRead = async (rel, abs) => {
          if (rel !== s.rel) return;
          await s.swap(abs, f, secret.file);
          swapped++;
        };
        process.env.MEMVAULT_WORKERS = workers;
        const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
        expect(swapped).toBe(1);

        // Reported by name: an incomplete backup, and an alert naming the file.
        expect(r.ok).toBe(false);
        const out = r.outcomes[0];
        expect(out.warnings.length).toBe(1);
        expect(out.warnings[0]).toMatch(s.warning);
        expect(r.failures[0].errorName).toBe('IncompleteBackup');
        const alerts = await readAlerts(f.alertsFile);
        expect(alerts.some((a) => a.component === 'graph' && a.message.includes(s.rel))).toBe(true);

        // The root-only content is nowhere in what the backup restores; the rest is intact.
        const restored = await restoredFiles(f, out.backupId);
        expect(restored.has(s.rel)).toBe(false);
        for (const [p, data] of restored) expect(data.includes(secret.marker), `${p} holds the root-only content`).toBe(false);
        expect(restored.get('weights.bin')?.equals(await fs.readFile(path.join(src, 'weights.bin')))).toBe(true);
        expect(out.stats.bytesRead).toBeLessThan(3 * 1024 * 1024 + 100_000);
      });
    }
  }

  for (const workers of ['2', '0']) {
    it(`the writer refuses a file that is now a symlink, and stores nothing of its target (workers: ${workers})`, async () => {
      const f = await makeFixture({ graph: { kind: 'files', path: 'src' } }, { secondary: false });
      const secret = await secretFile(f);
      const file = path.join(f.dir, 'src', 'notes.txt');
      await writeTree(path.join(f.dir, 'src'), { 'notes.txt': 'nothing secret here\n' });
      const st = await fs.lstat(file, { bigint: true });
      const listed = { size: Number(st.size), dev: st.dev, ino: st.ino };
      await fs.rm(file);
      await fs.symlink(secret.file, file);

      process.env.MEMVAULT_WORKERS = workers;
      const vault = await openVault(f.cfg);
      const writer = new BackupWriter(vault, new Set());
      try {
        const err = await writer.writeFile(file, listed).then(() => null, (e: NodeJS.ErrnoException) => e);
        expect(err?.code).toBe('ESOURCECHANGED');
        expect(err?.message).toMatch(/now a symbolic link/);
        // The writer goes on with the next file: a changed file is the file's problem, not the backup's.
        const other = path.join(f.dir, 'src', 'other.txt');
        await fs.writeFile(other, 'still backed up\n');
        const ost = await fs.lstat(other, { bigint: true });
        const r = await writer.writeFile(other, { size: Number(ost.size), dev: ost.dev, ino: ost.ino });
        expect(r.size).toBe(16);
      } finally {
        await writer.close();
      }
      expect(writer.stats.bytesRead).toBe(16);
      expect(writer.stats.chunksNew).toBe(1);
      expect((await vault.listChunks()).size).toBe(1);
    });
  }
});
