// sqlite: a consistent copy of a live SQLite database through SQLite's online
// backup API (node:sqlite backup(), all pages in one step, so the copy is one
// transaction-consistent state even while readers and writers are active).
// The copy goes to a scratch file, streams into the vault, and is removed.
// The manifest records per-table row counts and content hashes of the copy;
// validation of a restore checks PRAGMA integrity_check and those figures.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createHash, randomBytes } from 'node:crypto';
import { DatabaseSync, backup as sqliteBackup } from 'node:sqlite';
import { z } from 'zod';
import type { Driver, DriverBackupContext, DriverRestoreContext, DriverValidateContext, ValidationCheck } from './types.ts';
import { report } from './types.ts';
import { IntegrityError, NotFoundError, PermanentError } from '../core/errors.ts';
import { TargetTree, restoreEntryFile } from './restore-file.ts';

/** Files SQLite keeps next to a database. */
const SIDE_FILES = ['-wal', '-shm', '-journal'];

export const sqliteSchema = z.object({
  /** Path of the live database file. */
  path: z.string(),
  /** Directory for the temporary consistent copy. @default the OS temp dir */
  scratchDir: z.string().optional(),
});
export type SqliteSettings = z.infer<typeof sqliteSchema>;

export interface TableFigures {
  rows: number;
  sha256: string;
}

/** Row count and a content hash per table, in rowid order (schema objects included). */
export function tableFigures(db: DatabaseSync): Record<string, TableFigures> {
  const out: Record<string, TableFigures> = {};
  const tables = db.prepare(
    "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  ).all() as { name: string; sql: string }[];
  for (const t of tables) {
    const q = `"${t.name.replaceAll('"', '""')}"`;
    const withoutRowid = /WITHOUT\s+ROWID/i.test(t.sql ?? '');
    const h = createHash('sha256');
    let rows = 0;
    const stmt = db.prepare(`SELECT * FROM ${q}${withoutRowid ? '' : ' ORDER BY rowid'}`);
    for (const row of stmt.iterate()) {
      h.update(JSON.stringify(row, (_k, v) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v)));
      h.update('\n');
      rows++;
    }
    out[t.name] = { rows, sha256: h.digest('hex') };
  }
  return out;
}

export const sqliteDriver: Driver<SqliteSettings> = {
  kind: 'sqlite',
  mode: 'stream',
  schema: sqliteSchema,

  async backup(ctx: DriverBackupContext<SqliteSettings>) {
    const src = ctx.resolve(ctx.settings.path);
    const st = await fs.stat(src).catch(() => null);
    if (!st?.isFile()) throw new NotFoundError(`components.${ctx.component}.path: database ${src} does not exist`);
    const scratch = ctx.settings.scratchDir ? ctx.resolve(ctx.settings.scratchDir) : os.tmpdir();
    await fs.mkdir(scratch, { recursive: true });
    const copy = path.join(scratch, `memvault-${ctx.component}-${randomBytes(6).toString('hex')}.sqlite`);
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(src, { readOnly: true, timeout: 30_000 });
      const pages = await sqliteBackup(db, copy, { rate: 2 ** 31 - 1 });
      db.close();
      db = undefined;
      const copyDb = new DatabaseSync(copy, { readOnly: true });
      let integrity: string;
      let figures: Record<string, TableFigures>;
      try {
        integrity = (copyDb.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check;
        figures = tableFigures(copyDb);
      } finally {
        copyDb.close();
      }
      if (integrity !== 'ok') throw new IntegrityError(`${ctx.component}: the copy of ${src} fails integrity_check: ${integrity}`);
      const r = await ctx.writer.writeFile(copy, (await fs.stat(copy)).size);
      const name = path.basename(src);
      return {
        entries: [{ path: name, type: 'file' as const, mode: Number(st.mode & 0o777), mtimeNs: String(BigInt(Math.round(st.mtimeMs)) * 1_000_000n), size: r.size, sha256: r.sha256, chunks: r.chunks }],
        meta: { source: src, pages, tables: figures },
        warnings: [],
      };
    } catch (err) {
      if (err instanceof Error && /file is not a database|malformed/i.test(err.message)) {
        throw new PermanentError(`components.${ctx.component}: ${src} is not a readable SQLite database: ${err.message}`);
      }
      throw err;
    } finally {
      db?.close();
      await fs.rm(copy, { force: true });
    }
  },

  async restore(ctx: DriverRestoreContext<SqliteSettings>) {
    const e = ctx.manifest.entries.find((x) => x.type === 'file');
    if (!e) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} has no database entry`);
    const tree = await TargetTree.open(ctx.component, ctx.target.dir, { force: ctx.target.options?.force === true });
    const dest = tree.path(path.basename(e.path));
    // A stale WAL or journal next to the restored file would be replayed into it (unlinked,
    // whatever it is; never followed).
    for (const suffix of SIDE_FILES) await tree.clear(dest + suffix);
    await restoreEntryFile(ctx.vault, ctx.component, e, dest, { mode: e.mode, tree });
    return { location: dest, bytes: e.size, entries: 1 };
  },

  async validate(ctx: DriverValidateContext<SqliteSettings>) {
    const checks: ValidationCheck[] = [];
    let db: DatabaseSync | undefined;
    try {
      // The restored file itself, not what a symlink there points to.
      const st = await fs.lstat(ctx.location);
      if (!st.isFile()) throw new Error(`${ctx.location} is not a regular file`);
      // Immutable: SQLite reads the file as it is and writes nothing next to it (a read-only
      // connection to a WAL database would leave -wal and -shm files in the restore target).
      const url = pathToFileURL(ctx.location);
      url.searchParams.set('immutable', '1');
      db = new DatabaseSync(url, { readOnly: true });
      const integrity = (db.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check;
      checks.push({ name: 'PRAGMA integrity_check', ok: integrity === 'ok', expected: 'ok', actual: integrity });
      const expected = (ctx.manifest.driver.tables ?? {}) as Record<string, TableFigures>;
      const actual = tableFigures(db);
      for (const [name, fig] of Object.entries(expected)) {
        const a = actual[name];
        checks.push({ name: `table ${name}: rows`, ok: a?.rows === fig.rows, expected: fig.rows, actual: a?.rows });
        checks.push({ name: `table ${name}: content hash`, ok: a?.sha256 === fig.sha256 });
      }
      const extra = Object.keys(actual).filter((n) => !(n in expected));
      checks.push({ name: 'no unexpected tables', ok: extra.length === 0, actual: extra });
    } catch (err) {
      checks.push({ name: 'open restored database', ok: false, actual: (err as Error).message });
    } finally {
      db?.close();
    }
    return report(checks);
  },
};
