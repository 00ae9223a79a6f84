// sqlite: a consistent copy of a live SQLite database through SQLite's online
// backup API (node:sqlite backup(), all pages in one step, so the copy is one
// transaction-consistent state even while readers and writers are active).
// The copy goes to a private scratch directory (0700, named for the component
// and the process), streams into the vault, and the directory is removed with
// everything SQLite made there (-wal, -shm); the next backup of the component
// removes directories that killed runs left (dead pid and old enough). The
// source is opened as the file that was checked (device and inode of what
// SQLite opened, on Linux), and -wal/-shm files that only this backup's
// read-only connection created next to it are handed back to SQLite's own
// last-connection cleanup (never deleted by name: a writer may own them).
// The manifest records per-table row counts and content hashes of the copy;
// validation of a restore checks PRAGMA integrity_check and those figures.
import { withEntries } from '../core/entry-log.ts';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createHash, randomBytes } from 'node:crypto';
import { DatabaseSync, backup as sqliteBackup } from 'node:sqlite';
import { z } from 'zod';
import type { Driver, DriverBackupContext, DriverMaskContext, DriverRestoreContext, DriverValidateContext, Masking, ValidationCheck } from './types.ts';
import { maskSqlite, sqliteColumns, sqliteColumnsDigest } from './mask-sqlite.ts';
import { report } from './types.ts';
import { IntegrityError, NotFoundError, PermanentError, RetryableError } from '../core/errors.ts';
import { TargetTree, restoreEntryFile } from './restore-file.ts';
import { continuousSchema } from '../core/continuous.ts';
import { type WalPosition, applyShippedFrames, currentWalPosition } from './sqlite-wal.ts';

/** Files SQLite keeps next to a database. */
const SIDE_FILES = ['-wal', '-shm', '-journal'];

export const sqliteSchema = z.object({
  /** Path of the live database file. */
  path: z.string(),
  /** Directory for the temporary consistent copy. @default the OS temp dir */
  scratchDir: z.string().optional(),
  /** Continuous protection: WAL frames shipped into the vault (`memvault watch`), restorable to any moment. */
  continuous: continuousSchema.optional(),
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

export const sqliteDriver: Driver<SqliteSettings> & Masking<SqliteSettings> = {
  kind: 'sqlite',
  mode: 'stream',
  schema: sqliteSchema,

  backup: (ctx: DriverBackupContext<SqliteSettings>) => backupDatabase(ctx),

  async restore(ctx: DriverRestoreContext<SqliteSettings>) {
    const e = (await withEntries(ctx.vault, ctx.manifest)).entries.find((x) => x.type === 'file');
    if (!e) throw new IntegrityError(`${ctx.component}: manifest ${ctx.manifest.id} has no database entry`);
    const tree = await TargetTree.open(ctx.component, ctx.target.dir, { force: ctx.target.options?.force === true });
    const dest = tree.path(path.basename(e.path));
    // A stale WAL or journal next to the restored file would be replayed into it (unlinked,
    // whatever it is; never followed).
    for (const suffix of SIDE_FILES) await tree.clear(dest + suffix);
    await restoreEntryFile(ctx.vault, ctx.component, e, dest, { mode: e.mode, tree });
    // Point in time (continuous components): the shipped WAL after the snapshot's position, up to the time.
    const until = ctx.target.options?.continuousUntil;
    if (typeof until === 'string') {
      try {
        const applied = await applyShippedFrames(ctx.vault, ctx.component, ctx.manifest, dest, until === 'latest' ? null : new Date(until), ctx.log);
        return { location: dest, bytes: (await fs.stat(dest)).size, entries: 1, recoveryPoint: applied.recoveryPoint };
      } catch (err) {
        // No database of an unknown state is left behind.
        await fs.rm(dest, { force: true });
        throw err;
      }
    }
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
      const actual = tableFigures(db);
      if (typeof ctx.target.options?.continuousUntil === 'string') {
        // Replayed past the snapshot: the snapshot's figures do not apply; the tables are reported.
        checks.push({ name: 'tables after the shipped WAL', ok: true, actual: Object.fromEntries(Object.entries(actual).map(([n, f]) => [n, f.rows])) });
        return report(checks);
      }
      const expected = (ctx.manifest.driver.tables ?? {}) as Record<string, TableFigures>;
      for (const [name, fig] of Object.entries(expected)) {
        const a = actual[name];
        checks.push({ name: `table ${name}: rows`, ok: a?.rows === fig.rows, expected: fig.rows, actual: a?.rows });
        const masked = ctx.masked?.tables?.[name];
        if (masked && a) {
          // Masked columns differ from the backup by design: the other columns are compared with
          // their digest taken before masking (when the whole table matched the backup).
          const kept = sqliteColumns(db, name).filter((c) => !masked.columns.includes(c));
          const d = sqliteColumnsDigest(db, name, kept);
          checks.push({ name: `table ${name}: unmasked columns (masked: ${masked.columns.join(', ')}; content hash checked before masking)`, ok: d.sha256 === masked.unmaskedSha256 && d.rows === masked.rows, expected: masked.unmaskedSha256, actual: d.sha256 });
        } else {
          checks.push({ name: `table ${name}: content hash`, ok: a?.sha256 === fig.sha256 });
        }
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

  async mask(ctx: DriverMaskContext<SqliteSettings>) {
    return maskSqlite(ctx);
  },
};

/** Scratch directories: memvault-sqlite-<component>-<pid>-<mkdtemp suffix>. */
const SCRATCH_PREFIX = 'memvault-sqlite-';
const SCRATCH_NAME = /^memvault-sqlite-([a-z0-9][a-z0-9_-]*)-(\d+)-[A-Za-z0-9]{6}$/;
/** Scratch copies of earlier versions: memvault-<component>-<12 hex>.sqlite (and its -wal, -shm, -journal). */
const LEGACY_NAME = /^memvault-([a-z0-9][a-z0-9_-]*)-[0-9a-f]{12}\.sqlite(-wal|-shm|-journal)?$/;
/** A scratch directory whose process is gone is removed once this old (guards against pid namespaces). */
export const STALE_SCRATCH_MS = 60 * 60 * 1000;
/** ... and one whose pid is alive (reused, or another host's) once this old; legacy files too. */
const ABANDONED_SCRATCH_MS = 7 * 24 * 60 * 60 * 1000;

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes what killed backups of `component` left in `scratch`: its scratch directories whose
 * process is gone and that are older than STALE_SCRATCH_MS (or older than a week whatever
 * the pid), and scratch files of earlier versions older than a week. Returns what was removed.
 */
export async function removeStaleScratch(scratch: string, component: string, now = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = await fs.readdir(scratch);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = SCRATCH_NAME.exec(name);
    const legacy = m ? null : LEGACY_NAME.exec(name);
    if ((m?.[1] ?? legacy?.[1]) !== component) continue;
    const p = path.join(scratch, name);
    const st = await fs.lstat(p).catch(() => null);
    if (!st) continue;
    const age = now - st.mtimeMs;
    const stale = m
      ? st.isDirectory() && ((age > STALE_SCRATCH_MS && !pidAlive(Number(m[2]))) || age > ABANDONED_SCRATCH_MS)
      : st.isFile() && age > ABANDONED_SCRATCH_MS;
    if (!stale) continue;
    await fs.rm(p, { recursive: true, force: true });
    removed.push(p);
  }
  return removed;
}

/**
 * Checks that the database SQLite just opened is the file that was checked: on Linux, one of
 * the descriptors this open added (/proc/self/fd, compared by what each one is open on) is
 * that device and inode. Elsewhere, the path must still be that file.
 */
async function checkOpened(file: string, listed: { dev: bigint; ino: bigint }, before: Map<string, string> | null): Promise<boolean> {
  const id = `${listed.dev}:${listed.ino}`;
  if (before) {
    const now = await openDescriptors() ?? new Map<string, string>();
    for (const [fd, what] of now) if (what === id && before.get(fd) !== id) return true;
    // No descriptor added: SQLite reused one this process already had on the file it found at the
    // path (its unused-descriptor list, per inode: a continuous shipper keeps the database open).
    const added = [...now].some(([fd, what]) => before.get(fd) !== what);
    return !added && [...now.values()].includes(id);
  }
  const now = await fs.lstat(file, { bigint: true }).catch(() => null);
  return !!now && now.isFile() && now.dev === listed.dev && now.ino === listed.ino;
}

/** This process's descriptors and the device:inode each is open on (Linux; null elsewhere). */
async function openDescriptors(): Promise<Map<string, string> | null> {
  if (process.platform !== 'linux') return null;
  const out = new Map<string, string>();
  for (const fd of await fs.readdir('/proc/self/fd').catch(() => [] as string[])) {
    // The listing's own descriptor is closed by now: it fails to stat and is left out.
    const st = await fs.stat(`/proc/self/fd/${fd}`, { bigint: true }).catch(() => null);
    if (st) out.set(fd, `${st.dev}:${st.ino}`);
  }
  return out;
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(() => true, () => false);
}

/**
 * Test seam: called after the database file was checked (lstat) and before SQLite opens it,
 * so a test can swap it at that point deterministically. Unset in production.
 */
export const sqliteBackupSeams: { beforeOpen?: (file: string) => void | Promise<void> } = {};

async function backupDatabase(ctx: DriverBackupContext<SqliteSettings>) {
  const configured = ctx.resolve(ctx.settings.path);
  // A configured symlink is the operator's choice: it is resolved once, and the file it leads
  // to is the one checked and opened.
  const src = await fs.realpath(configured).catch(() => configured);
  const st = await fs.lstat(src, { bigint: true }).catch(() => null);
  if (!st?.isFile()) throw new NotFoundError(`components.${ctx.component}.path: database ${configured} does not exist`);
  const scratch = ctx.settings.scratchDir ? ctx.resolve(ctx.settings.scratchDir) : os.tmpdir();
  for (const p of await removeStaleScratch(scratch, ctx.component)) ctx.log.info('removed a stale scratch copy', { component: ctx.component, path: p });
  let dir: string;
  try {
    await fs.mkdir(scratch, { recursive: true });
    dir = await fs.mkdtemp(path.join(scratch, `${SCRATCH_PREFIX}${ctx.component}-${process.pid}-`));
  } catch (err) {
    throw new PermanentError(`components.${ctx.component}.scratchDir: cannot create a scratch directory in ${scratch}: ${(err as Error).message}`, { cause: err });
  }
  const copy = path.join(dir, path.basename(src));
  const sidecars = [`${src}-wal`, `${src}-shm`];
  const hadSidecars = await Promise.all(sidecars.map(exists));
  let db: DatabaseSync | undefined;
  let checked = false;
  try {
    await sqliteBackupSeams.beforeOpen?.(src);
    const fds = await openDescriptors();
    db = new DatabaseSync(src, { readOnly: true, timeout: 30_000 });
    if (!(await checkOpened(src, st, fds))) {
      throw new RetryableError(`${ctx.component}: ${src} was replaced while it was being opened (not the file that was checked); not backed up`);
    }
    checked = true;
    let pages: number;
    let wal: WalPosition | undefined;
    try {
      if (ctx.settings.continuous) wal = await beginAtWalPosition(db, src, ctx.settings.snapshotGeneration);
      // Inside the read transaction begun above (when there is one): the copy is that state.
      pages = await sqliteBackup(db, copy, { rate: 2 ** 31 - 1 });
      if (db.isTransaction) db.exec('COMMIT');
    } catch (err) {
      if (isNotADatabase(err)) throw err;
      throw new PermanentError(`${ctx.component}: copying ${src} to ${copy} (scratch directory ${scratch}) failed: ${(err as Error).message}`, { cause: err });
    }
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
    const copied = await fs.lstat(copy, { bigint: true });
    const r = await ctx.writer.writeFile(copy, { size: Number(copied.size), dev: copied.dev, ino: copied.ino });
    const name = path.basename(configured);
    return {
      entries: [{ path: name, type: 'file' as const, mode: Number(st.mode & 0o777n), mtimeNs: String(BigInt(Math.round(Number(st.mtimeNs) / 1e6)) * 1_000_000n), size: r.size, sha256: r.sha256, chunks: r.chunks }],
      meta: { source: configured, pages, tables: figures, ...(wal ? { wal } : {}) },
      warnings: [],
    };
  } catch (err) {
    if (isNotADatabase(err)) {
      throw new PermanentError(`components.${ctx.component}: ${configured} is not a readable SQLite database: ${(err as Error).message}`);
    }
    if ((err as NodeJS.ErrnoException).code === 'ESOURCECHANGED') {
      throw new PermanentError(`${ctx.component}: the scratch copy ${copy} ${(err as Error).message}`);
    }
    throw err;
  } finally {
    db?.close();
    await fs.rm(dir, { recursive: true, force: true });
    // Only next to the database that was checked: a replaced one is not opened read-write.
    if (checked) await releaseSidecars(ctx, src, st, sidecars, hadSidecars);
  }
}

/**
 * Begins a read transaction on `db` at a known WAL position: SQLite's write lock is taken
 * for a moment (a read-write connection, BEGIN IMMEDIATE: nothing commits meanwhile), the
 * read transaction begins and the WAL's last commit frame is read, and the lock is let go.
 * The backup then copies exactly the state at that position (the base of continuous shipping).
 */
async function beginAtWalPosition(db: DatabaseSync, src: string, generation: unknown): Promise<WalPosition> {
  const w = new DatabaseSync(src, { timeout: 30_000 });
  try {
    w.exec('BEGIN IMMEDIATE');
    try {
      db.exec('BEGIN');
      db.prepare('SELECT count(*) FROM sqlite_schema').get();
      const at = new Date().toISOString();
      const p = await currentWalPosition(src);
      return { ...p, at, ...(typeof generation === 'string' ? { generation } : {}) };
    } finally {
      w.exec('ROLLBACK');
    }
  } finally {
    w.close();
  }
}

function isNotADatabase(err: unknown): boolean {
  return err instanceof Error && /file is not a database|malformed/i.test(err.message);
}

/**
 * A read-only connection to a WAL database creates its -wal and -shm and cannot remove them
 * when it closes. If neither was there before this backup, a read-write connection is
 * opened and closed: SQLite then checkpoints and removes them if (and only if) no other
 * connection uses them. They are never deleted by name.
 */
async function releaseSidecars(ctx: DriverBackupContext<SqliteSettings>, src: string, listed: { dev: bigint; ino: bigint }, sidecars: string[], had: boolean[]): Promise<void> {
  // With a -wal already there (a writer running, or one that crashed), the database's WAL state is
  // not ours: opening it read-write would checkpoint that WAL into the live file. Leave it.
  if (had.some(Boolean)) return;
  const made = (await Promise.all(sidecars.map(exists))).some((now) => now);
  if (!made) return;
  const now = await fs.lstat(src, { bigint: true }).catch(() => null);
  if (!now?.isFile() || now.dev !== listed.dev || now.ino !== listed.ino) return;
  try {
    const db = new DatabaseSync(src, { timeout: 5_000 });
    try {
      db.prepare('SELECT count(*) FROM sqlite_schema').get();
    } finally {
      db.close();
    }
  } catch (err) {
    ctx.log.warn('could not release the -wal/-shm files the backup created', { component: ctx.component, path: src, error: (err as Error).message });
  }
}
