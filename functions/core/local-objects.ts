// How objects are files in a local (file://) vault: the rules that FileStorage
// and the chunk-pool workers (which write and read chunk files themselves) share.
//
// - Temporary files: an object is written to `<final name>.tmp-<12 hex>` in its
//   final directory, created with O_CREAT|O_EXCL|O_NOFOLLOW (mode 0600),
//   fsynced and renamed into place. That suffix is the one temporary form:
//   listings skip it, sweepTemporary removes old ones, and no object key may
//   end in it, so a finished object is never mistaken for a temporary.
// - Symlinks: nothing below the vault root is followed. Each directory on the
//   way to an object is checked with lstat (directories already verified are
//   remembered by the caller, so a backup writing thousands of chunks a second
//   pays one lstat per directory, not per chunk), and files are opened with
//   O_NOFOLLOW. The root itself may be a symlink: that is the user's choice.
//   A writer with access to the vault directory could still swap a verified
//   directory for a link between the check and the use (Node has no openat);
//   what this closes is links planted before the run.
//
// Errors from these checks carry `code` (ELOOP for a link, ENOTDIR for a
// non-directory on the way) and `objectKey` (the link's key); FileStorage turns
// them into IntegrityError, the workers report them as damage with the key.
//
// Runs in the workers under Node's own type stripping: erasable TypeScript and
// built-in imports only.
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { constants, lstatSync, mkdirSync, promises as fs } from 'node:fs';

const TEMPORARY = /\.tmp-[0-9a-f]{12}$/;

/** The temporary name an object is written under before it is renamed to `file`. */
export function temporaryName(file: string): string {
  return `${file}.tmp-${randomBytes(6).toString('hex')}`;
}

/** True for a name (or key, or path) written by temporaryName. */
export function isTemporaryName(name: string): boolean {
  return TEMPORARY.test(name);
}

/** Opens an object for reading: never through a final symlink, never blocking on a FIFO. */
export const OPEN_OBJECT = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
/** Creates a temporary file: a new file (never an existing one, never through a symlink). */
export const OPEN_TEMPORARY = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

export type LocalObjectError = Error & { code: string; objectKey: string };

function refuse(code: string, message: string, objectKey: string): LocalObjectError {
  return Object.assign(new Error(message), { code, objectKey });
}

/** A symlink inside the vault, named by its key (the caller prefixes what it was doing). */
export function symlinkInVault(key: string): LocalObjectError {
  return refuse('ELOOP', `${key} is a symbolic link; memvault never follows links inside a vault (remove it, or restore the real object)`, key);
}

function notDirectory(key: string): LocalObjectError {
  return refuse('ENOTDIR', `${key} is not a directory; the vault layout is damaged`, key);
}

/**
 * The refusal for an object found where a link or non-directory is: an error
 * from the checks here (it carries objectKey), or ELOOP from opening `key`
 * with O_NOFOLLOW; null for any other error.
 */
export function refusedLink(key: string, err: unknown): LocalObjectError | null {
  const e = err as NodeJS.ErrnoException & { objectKey?: string };
  if (e?.objectKey && (e.code === 'ELOOP' || e.code === 'ENOTDIR')) return e as LocalObjectError;
  if (e?.code === 'ELOOP') return symlinkInVault(key);
  return null;
}

/** The directory keys on the way to `key`: 'chunks/ab/x' -> ['chunks', 'chunks/ab']. */
function directoriesOf(key: string): string[] {
  const parts = key.split('/');
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join('/'));
  return out;
}

/**
 * Checks, without following links, that every directory on the way to `key`
 * below `root` is a real directory; with `create`, makes the missing ones.
 * `verified` remembers directory keys already checked. Missing directories
 * without `create`: an ENOENT error.
 */
export function verifyDirectoriesSync(root: string, key: string, verified: Set<string>, create: boolean): void {
  for (const dir of directoriesOf(key)) {
    if (verified.has(dir)) continue;
    const p = path.join(root, dir);
    let st;
    try {
      st = lstatSync(p);
    } catch (err) {
      if (!create || (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      try {
        mkdirSync(p);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      st = lstatSync(p);
    }
    if (st.isSymbolicLink()) throw symlinkInVault(dir);
    if (!st.isDirectory()) throw notDirectory(dir);
    verified.add(dir);
  }
}

/** verifyDirectoriesSync without blocking the event loop. */
export async function verifyDirectories(root: string, key: string, verified: Set<string>, create: boolean): Promise<void> {
  for (const dir of directoriesOf(key)) {
    if (verified.has(dir)) continue;
    const p = path.join(root, dir);
    let st;
    try {
      st = await fs.lstat(p);
    } catch (err) {
      if (!create || (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await fs.mkdir(p).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
      st = await fs.lstat(p);
    }
    if (st.isSymbolicLink()) throw symlinkInVault(dir);
    if (!st.isDirectory()) throw notDirectory(dir);
    verified.add(dir);
  }
}

const DESCRIPTIONS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EFBIG: 'file too large',
  EIO: 'input/output error',
  EISDIR: 'is a directory',
  ENOTDIR: 'not a directory',
  ENAMETOOLONG: 'name too long',
};

/** What an errno error says, without the path and syscall Node adds: "no space left on device (ENOSPC)". */
export function describeFileError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const code = e?.code;
  if (!code) return e?.message ?? String(err);
  const text = DESCRIPTIONS[code] ?? (e.message ?? '').replace(new RegExp(`^${code}: `), '').replace(/, \w+( '[^']*')*$/, '');
  return `${text} (${code})`;
}
