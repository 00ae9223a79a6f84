// PostgreSQL WAL archiving into the vault (archive_command / restore_command):
//
//   archive_command = 'memvault wal-push --component NAME %p %f'
//   restore_command = 'memvault wal-fetch --component NAME %f %p'
//
// wal-push seals one WAL segment (or timeline history / backup label / partial
// segment) as wal/<component>/pg/<file>-<time>.seg (core/continuous.ts), with
// its SHA-256 in the sealed header. It is idempotent as PostgreSQL requires:
// when that file name is already archived with the same content it succeeds
// without writing; with different content it fails (PostgreSQL keeps the
// segment and retries, and the operator is told which object differs).
// wal-fetch finds the file by name, authenticates it, checks its SHA-256 and
// writes it where PostgreSQL asked (a temporary name, then a rename); a file
// that was never archived is a plain failure (PostgreSQL asks for files that
// may not exist, e.g. the next timeline's history).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { Vault } from '../core/vault.ts';
import { PG_WAL_FILE, listShipped, pgObjectKey, readWalObject, writeWalObject } from '../core/continuous.ts';
import { IntegrityError, NotFoundError, UsageError } from '../core/errors.ts';

export interface PgWalHeader {
  format: 'memvault-pg-wal/1';
  component: string;
  file: string;
  size: number;
  sha256: string;
  time: string;
}

function checkName(file: string): void {
  if (!PG_WAL_FILE.test(file)) throw new UsageError(`${JSON.stringify(file)} is not a WAL segment, history, backup label or partial segment file name (%f)`);
}

/** The archived copy of `file`, authenticated and checked, or null when it was never archived. */
async function archived(vault: Vault, component: string, file: string): Promise<{ key: string; header: PgWalHeader; body: Buffer } | null> {
  const same = (await listShipped(vault, component)).pg.filter((p) => p.file === file);
  const newest = same.at(-1);
  if (!newest) return null;
  return openArchived(vault, component, newest.key, file);
}

/** Reads the archived object `key` of `file`, authenticated and checked against its header. */
async function openArchived(vault: Vault, component: string, key: string, file: string): Promise<{ key: string; header: PgWalHeader; body: Buffer }> {
  const { header, body } = await readWalObject<PgWalHeader>(vault, key);
  if (header.format !== 'memvault-pg-wal/1' || header.file !== file || header.component !== component) throw new IntegrityError(`archived WAL object ${key} does not hold what its name says`, key);
  if (createHash('sha256').update(body).digest('hex') !== header.sha256 || body.length !== header.size) throw new IntegrityError(`archived WAL object ${key} fails its SHA-256`, key);
  return { key, header, body };
}

/** Writes a checked WAL file to `dest` atomically (a temporary name, then a rename). */
async function writeAtomically(dest: string, body: Buffer): Promise<void> {
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.memvault-${randomBytes(6).toString('hex')}`);
  try {
    await fs.writeFile(tmp, body, { mode: 0o600 });
    await fs.rename(tmp, dest);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/** wal-fetch of one object already listed (a restore's prefetch): the same checks, no listing. */
export async function walFetchObject(vault: Vault, component: string, o: { key: string; file: string }, dest: string): Promise<number> {
  const have = await openArchived(vault, component, o.key, o.file);
  await writeAtomically(dest, have.body);
  return have.body.length;
}

export async function walPush(vault: Vault, component: string, source: string, file: string, now = new Date()): Promise<{ key: string; stored: boolean; bytes: number }> {
  checkName(file);
  const body = await fs.readFile(source);
  const sha256 = createHash('sha256').update(body).digest('hex');
  const have = await archived(vault, component, file);
  if (have) {
    if (have.header.sha256 === sha256) return { key: have.key, stored: false, bytes: 0 };
    throw new IntegrityError(`${component}: ${file} is already archived as ${have.key} with different content (sha256 ${have.header.sha256}, this one ${sha256}); not overwritten`, have.key);
  }
  const key = pgObjectKey(component, file, now);
  const header: PgWalHeader = { format: 'memvault-pg-wal/1', component, file, size: body.length, sha256, time: now.toISOString() };
  const bytes = await writeWalObject(vault, key, header as unknown as Record<string, unknown>, body);
  return { key, stored: true, bytes };
}

export async function walFetch(vault: Vault, component: string, file: string, dest: string): Promise<{ key: string; bytes: number }> {
  checkName(file);
  const have = await archived(vault, component, file);
  if (!have) throw new NotFoundError(`${component}: ${file} is not archived in ${vault.storage.url}`);
  await writeAtomically(dest, have.body);
  return { key: have.key, bytes: have.body.length };
}
