// Writing restored entries to files, for every driver that restores into a
// directory. Each file is written under a random temporary name while its
// chunks are read back (each authenticated and its keyed id checked; the whole
// entry's size and SHA-256 checked at the end, see readEntry), and only then
// renamed into place: a damaged backup fails naming the component, entry and
// chunk, and leaves no partial or wrong file behind.
//
// A restore never follows what it did not create (TargetTree): the directory
// it restores into is <target root>/<component>, and below the target root
// every directory is checked with lstat, component by component, before
// anything is written in it; a symlink or file where a directory belongs is
// refused, or with force replaced (unlinked), never followed. Files are
// created with O_CREAT | O_EXCL | O_NOFOLLOW under a random name, their mode
// and times set on the open descriptor, then renamed over whatever was at the
// entry's path (a symlink there is replaced, not followed). Errors of the
// target file system (ENOSPC, EACCES, EROFS...) name the file and the target,
// and the temporary file is removed on every path.
import { createHash } from 'node:crypto';
import { constants as C, promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Vault } from '../core/vault.ts';
import type { Entry } from '../core/manifest.ts';
import { readEntry } from '../core/writer.ts';
import { IntegrityError, MemvaultError, PermanentError, UsageError } from '../core/errors.ts';
import type { ChunkPool } from '../core/chunk-pool.ts';

const DEFAULT_PREFETCH = 8 * 1024 * 1024;
/** A new file, never through a symlink, never an existing one. */
const CREATE_NEW = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;
/** A directory, never through a symlink (for its mode and times). */
const OPEN_DIR = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
/** Temporary files of a restore in progress start with this. */
export const PARTIAL_PREFIX = '.memvault-partial-';

/** `rel` joined under `root`; a path that would leave `root` is a damaged (or hostile) manifest. */
export function safeJoin(root: string, rel: string): string {
  const abs = path.resolve(root, rel);
  if (abs !== root && !abs.startsWith(root.endsWith(path.sep) ? root : root + path.sep)) {
    throw new IntegrityError(`manifest entry "${rel}" escapes the restore target`);
  }
  return abs;
}

/** Seconds as a double, for utimes: microsecond precision (a Date would keep only milliseconds). */
export function nsToDate(ns: string): number {
  return Number(BigInt(ns) / 1000n) / 1e6;
}

/** A random temporary name in `dir`. */
export function partialPath(dir: string): string {
  return path.join(dir, `${PARTIAL_PREFIX}${randomBytes(8).toString('hex')}`);
}

/** The target file system refused a write (ENOSPC, EACCES, EROFS...): names the file and the target. */
export class RestoreWriteError extends PermanentError {
  readonly code: string | undefined;
  constructor(message: string, code: string | undefined, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RestoreWriteError';
    this.code = code;
  }
}

function describeKind(st: { isSymbolicLink(): boolean; isDirectory(): boolean; isFile(): boolean }): string {
  return st.isSymbolicLink() ? 'a symlink' : st.isDirectory() ? 'a directory' : st.isFile() ? 'a file' : 'a special file';
}

async function lstatOrNull(p: string) {
  try {
    return await fs.lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * The directory one component restores into (`root`, normally <target root>/<component>),
 * walked without following symlinks. The target root above it is the operator's choice,
 * checked by checkRestoreTarget; its symlinks are resolved once, when the tree is opened.
 */
export class TargetTree {
  /** Directories below (and including) root known to be directories of their own. */
  private readonly dirs = new Set<string>();

  private constructor(readonly component: string, readonly root: string, readonly force: boolean) {}

  /**
   * Opens `dir` for a restore: its parent (the target root) is created 0700 where missing
   * and resolved; `dir` itself is made a directory of its own (created 0700).
   */
  static async open(component: string, dir: string, o: { force?: boolean } = {}): Promise<TargetTree> {
    const abs = path.resolve(dir);
    const parent = path.dirname(abs);
    let root = abs;
    if (parent !== abs) {
      try {
        await fs.mkdir(parent, { recursive: true, mode: 0o700 });
        root = path.join(await fs.realpath(parent), path.basename(abs));
      } catch (err) {
        throw writeError(err, component, parent, parent);
      }
    }
    const t = new TargetTree(component, root, o.force === true);
    await t.dir(root);
    return t;
  }

  /** The absolute path of manifest path `rel` (which may not leave the tree). */
  path(rel: string): string {
    return safeJoin(this.root, rel);
  }

  private rel(abs: string): string {
    return path.relative(this.root, abs) || '.';
  }

  private where(abs: string): string {
    return abs === this.root ? `the restore target ${this.root}` : `${this.rel(abs)} in restore target ${this.root}`;
  }

  /** Names the file and the target in an error of the target file system. */
  error(err: unknown, abs: string): unknown {
    return writeError(err, this.component, abs === this.root ? this.root : this.rel(abs), this.root);
  }

  /**
   * Makes `abs` (the root or a path below it) a directory of its own, each component checked
   * with lstat from the root down and created 0700 where missing. What is in the way (a symlink,
   * a file) is refused, or with force unlinked and replaced; never followed.
   */
  async dir(abs: string): Promise<string> {
    if (this.dirs.has(abs)) return abs;
    if (abs !== this.root) {
      if (!abs.startsWith(this.root + path.sep)) throw new IntegrityError(`${this.component}: ${abs} is outside the restore target ${this.root}`);
      await this.dir(path.dirname(abs));
    }
    try {
      const st = await lstatOrNull(abs);
      if (st?.isDirectory()) {
        this.dirs.add(abs);
        return abs;
      }
      if (st) {
        const what = st.isSymbolicLink() ? `a symlink (to ${await fs.readlink(abs)})` : describeKind(st);
        if (!this.force) throw new UsageError(`${this.component}: ${this.where(abs)} is ${what} where the backup has a directory; restore into an empty directory, or pass force (--force, "target": {"force": true}) to replace it`);
        await fs.unlink(abs);
      }
      try {
        await fs.mkdir(abs, { mode: 0o700 });
      } catch (err) {
        // Made meanwhile by another file of this restore: fine if it is a directory of its own.
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !(await fs.lstat(abs)).isDirectory()) throw err;
      }
    } catch (err) {
      throw this.error(err, abs);
    }
    this.dirs.add(abs);
    return abs;
  }

  /**
   * Clears `abs` for a new file or link: a file or symlink there is unlinked (not followed);
   * a directory is refused, or with force removed (fs.rm does not follow the links inside).
   */
  async clear(abs: string): Promise<void> {
    await this.dir(path.dirname(abs));
    try {
      const st = await lstatOrNull(abs);
      if (!st) return;
      if (!st.isDirectory()) {
        await fs.unlink(abs);
        return;
      }
      if (!this.force) throw new UsageError(`${this.component}: ${this.where(abs)} is a directory where the backup has a file; restore into an empty directory, or pass force (--force, "target": {"force": true}) to replace it`);
      await fs.rm(abs, { recursive: true });
    } catch (err) {
      throw this.error(err, abs);
    }
  }

  /** Renames the finished temporary file `tmp` (in the same directory) to `abs`, replacing what is there, never through it. */
  async publish(tmp: string, abs: string): Promise<void> {
    try {
      await fs.rename(tmp, abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EISDIR' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw this.error(err, abs);
      await this.clear(abs);
      try {
        await fs.rename(tmp, abs);
      } catch (err2) {
        throw this.error(err2, abs);
      }
    }
  }

  /**
   * Writes a new file at `abs`: `fill` writes the random temporary name `tmp` (created here
   * O_EXCL | O_NOFOLLOW, mode 0600; with `createsFile`, `fill` creates it so itself, as a
   * chunk-pool worker does, and sets mode and time) through `write`; the mode and time are set on the descriptor, and the file renamed
   * over whatever is at `abs` (never through it). Errors of the target file system (here, or
   * marked `target` by a worker) name the file and the target; `tmp` is removed on every failure.
   */
  async writeFile(abs: string, fill: (tmp: string, write: (data: Buffer) => Promise<void>) => Promise<void>, o: { mode?: number; mtimeNs?: string; createsFile?: boolean } = {}): Promise<void> {
    const tmp = partialPath(await this.dir(path.dirname(abs)));
    const target = <T>(p: Promise<T>) => p.catch((err) => { throw this.error(err, abs); });
    try {
      if (o.createsFile) {
        await fill(tmp, async () => { throw new Error('writeFile: fill creates the file itself'); });
      } else {
        const fh = await target(fs.open(tmp, CREATE_NEW, 0o600));
        try {
          let pos = 0;
          await fill(tmp, async (data) => {
            await target(writeFully(fh, data, pos));
            pos += data.length;
          });
          if (o.mode !== undefined) await target(fh.chmod(o.mode));
          if (o.mtimeNs) await target(fh.utimes(nsToDate(o.mtimeNs), nsToDate(o.mtimeNs)));
        } finally {
          await fh.close();
        }
      }
      await this.publish(tmp, abs);
    } catch (err) {
      await fs.rm(tmp, { force: true }).catch(() => undefined);
      // Errors of the vault (reading, checking) pass unchanged; a worker marks those of the target.
      if ((err as { target?: boolean }).target) throw this.error(err, abs);
      throw err;
    }
  }

  /** A symlink at `abs` pointing to `target` (replacing what is there), with its time. */
  async symlink(abs: string, target: string, mtimeNs?: string): Promise<void> {
    await this.clear(abs);
    try {
      await fs.symlink(target, abs);
    } catch (err) {
      throw this.error(err, abs);
    }
    if (mtimeNs) await fs.lutimes(abs, nsToDate(mtimeNs), nsToDate(mtimeNs)).catch(() => undefined);
  }

  /** Sets a directory's mode and times through a descriptor opened without following symlinks. */
  async setDirMeta(abs: string, mode: number | undefined, mtimeNs: string | undefined): Promise<void> {
    if (mode === undefined && !mtimeNs) return;
    let fh: fs.FileHandle | undefined;
    try {
      fh = await fs.open(abs, OPEN_DIR);
      if (mode !== undefined) await fh.chmod(mode);
      if (mtimeNs) await fh.utimes(nsToDate(mtimeNs), nsToDate(mtimeNs));
    } catch (err) {
      throw this.error(err, abs);
    } finally {
      await fh?.close();
    }
  }
}

/** An error of the target file system, naming the file and the target; other errors unchanged. */
function writeError(err: unknown, component: string, file: string, target: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof MemvaultError || !e?.code || typeof e.code !== 'string' || !e.code.startsWith('E')) return err;
  const reason = e.message.split(',')[0];
  const what = file === target ? `the restore target ${target}` : `${file} in restore target ${target}`;
  return new RestoreWriteError(`${component}: cannot write ${what}: ${reason}`, e.code, { cause: err });
}

async function writeFully(fh: fs.FileHandle, data: Buffer, pos: number): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off, pos + off);
    off += bytesWritten;
  }
}

export interface RestoreFileOptions {
  prefetch?: number;
  /** Mode and modification time, set on the open file before it is renamed into place. */
  mode?: number;
  mtimeNs?: string;
  /** Chunk-pool workers that read the local vault and write the file. */
  pool?: ChunkPool | null;
  /** The tree `dest` is in; without one, `dest`'s directory is opened as the tree (its parent trusted). */
  tree?: TargetTree;
  force?: boolean;
  /**
   * The entry's chunks, already read from the vault (each authenticated): a batch of small
   * files is read in a few requests (restoreSmallFiles). Their size and SHA-256 are checked here.
   */
  data?: Buffer[];
}

/**
 * Restores one entry's bytes to `dest` (random temporary name created O_EXCL|O_NOFOLLOW,
 * verified, mode and time set on the descriptor, renamed over `dest`), on a chunk-pool
 * worker when `pool` is given (local vaults), else here. Restored files are not fsynced
 * one by one: a restore interrupted by a crash is simply run again, and the validation
 * that follows reads every file back.
 */
export async function restoreEntryFile(vault: Vault, component: string, e: Entry, dest: string, o: RestoreFileOptions = {}): Promise<number> {
  const tree = o.tree ?? await TargetTree.open(component, path.dirname(dest), { force: o.force });
  // Without a tree, `dest` is a file in the tree's root (whose parent's symlinks it resolved).
  const abs = o.tree ? path.resolve(dest) : path.join(tree.root, path.basename(dest));
  try {
    if (o.pool) {
      // A worker of the chunk pool reads the local vault and writes the file, with the same checks.
      const pool = o.pool;
      await tree.writeFile(abs, (tmp) => pool.restore(e, tmp, { mode: o.mode, mtimeNs: o.mtimeNs }), { createsFile: true });
    } else if (o.data) {
      const bufs = o.data;
      await tree.writeFile(abs, async (_tmp, write) => {
        const h = createHash('sha256');
        let n = 0;
        for (const b of bufs) { h.update(b); n += b.length; }
        if (n !== e.size) throw new IntegrityError(`restored ${n} bytes, manifest says ${e.size}`);
        if (e.sha256 && h.digest('hex') !== e.sha256) throw new IntegrityError('checksum mismatch after restore');
        for (const b of bufs) await write(b);
      }, { mode: o.mode, mtimeNs: o.mtimeNs });
    } else {
      await tree.writeFile(abs, async (_tmp, write) => {
        for await (const data of readEntry(vault, e, o.prefetch ?? DEFAULT_PREFETCH)) await write(data);
      }, { mode: o.mode, mtimeNs: o.mtimeNs });
    }
  } catch (err) {
    if (err instanceof IntegrityError) throw new IntegrityError(`${component}: ${e.path}: ${err.message}`, err.objectKey);
    throw err;
  }
  return e.size;
}

/**
 * Restores small files together: their chunks are read with one Vault.getChunks call (in pack
 * order, neighbours in one request: a remote vault answers a batch of a thousand small files in a
 * few ranged GETs instead of one per file), then each file is written and checked as by
 * restoreEntryFile. Returns the bytes written.
 */
export async function restoreSmallFiles(vault: Vault, component: string, batch: { e: Entry; abs: string }[], tree: TargetTree): Promise<number> {
  const refs = batch.flatMap(({ e }) => e.chunks ?? []);
  let bufs: Buffer[];
  try {
    // Without a file SHA-256 each chunk's keyed id is checked instead (as readEntry does).
    bufs = await vault.getChunks(refs, { checkId: batch.some(({ e }) => !e.sha256) });
  } catch (err) {
    if (err instanceof IntegrityError) {
      // Named by the first file of the batch that needs the damaged chunk.
      const bad = batch.find(({ e }) => e.chunks?.some((c) => err.message.includes(c.id)));
      if (bad) throw new IntegrityError(`${component}: ${bad.e.path}: ${err.message}`, err.objectKey);
    }
    throw err;
  }
  let at = 0;
  let bytes = 0;
  const jobs = batch.map(({ e, abs }) => {
    const data = bufs.slice(at, at + (e.chunks?.length ?? 0));
    at += e.chunks?.length ?? 0;
    return { e, abs, data };
  });
  // A few files at a time: each is a create, write, rename and utimes on its own.
  for (let i = 0; i < jobs.length; i += 16) {
    await Promise.all(jobs.slice(i, i + 16).map(async ({ e, abs, data }) => {
      bytes += await restoreEntryFile(vault, component, e, abs, { tree, data, mode: e.mode, mtimeNs: e.mtimeNs });
    }));
  }
  return bytes;
}

/**
 * Restores small files from a local vault on a chunk-pool worker, a batch per job (one
 * message each way, the pack file kept open between neighbours): the worker writes and
 * checks each temporary as for restoreEntryFile; they are renamed into place here. A
 * failure names the file it happened to; no temporary of the batch is left. Returns the
 * bytes written.
 */
export async function restoreSmallFilesPooled(pool: ChunkPool, component: string, batch: { e: Entry; abs: string }[], tree: TargetTree): Promise<number> {
  const items: { entry: Entry; tmp: string; mode?: number; mtimeNs?: string; abs: string }[] = [];
  for (const { e, abs } of batch) items.push({ entry: e, tmp: partialPath(await tree.dir(path.dirname(abs))), mode: e.mode, mtimeNs: e.mtimeNs, abs });
  try {
    await pool.restoreBatch(items);
  } catch (err) {
    const i = (err as { batchIndex?: number }).batchIndex;
    const it = i === undefined ? undefined : items[i];
    if (err instanceof IntegrityError) throw new IntegrityError(`${component}: ${it?.entry.path ?? batch[0].e.path}: ${err.message}`, err.objectKey);
    if ((err as { target?: boolean }).target && it) throw tree.error(err, it.abs);
    throw err;
  }
  let bytes = 0;
  let next = 0;
  try {
    // A few renames at a time.
    const worker = async () => {
      while (next < items.length) {
        const it = items[next++];
        await tree.publish(it.tmp, it.abs);
        bytes += it.entry.size;
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, items.length) }, worker));
  } catch (err) {
    await Promise.all(items.map((it) => fs.rm(it.tmp, { force: true }).catch(() => undefined)));
    throw err;
  }
  return bytes;
}

/** Restores entries as files under `dir` (entry paths relative to it); returns the bytes written. */
export async function restoreEntriesToDir(vault: Vault, component: string, entries: Entry[], dir: string, o: { force?: boolean } = {}): Promise<number> {
  const tree = await TargetTree.open(component, dir, o);
  let bytes = 0;
  for (const e of entries) bytes += await restoreEntryFile(vault, component, e, tree.path(e.path), { tree });
  return bytes;
}
