// files: a directory tree (concept graph exports, model weights, configuration,
// logs). Contents, names, modes and modification times round-trip; symlinks are
// kept as links (never followed); directories are recorded with their modes.
// On an incremental backup a file whose size, mtime, ctime and inode match the
// parent backup reuses its chunk list without being read again. Files that
// cannot be read are reported as warnings naming each file, never skipped
// silently; so is a file that changed between listing and reading: it is read
// only if what opens, without following a symlink, is the regular file the
// walk listed, same device and inode (core/source-file.ts). Restores write each file to a temporary name, check its SHA-256,
// and only then rename it into place; several files are restored (and
// validated) at once, bounded by bytes, so small files do not wait on each
// other's syscalls and large ones keep the thread pool busy.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Driver, DriverBackupContext, DriverRestoreContext, DriverValidateContext, ValidationCheck } from './types.ts';
import { report } from './types.ts';
import type { Entry } from '../core/manifest.ts';
import { restoreEntryFile, safeJoin } from './restore-file.ts';
import { ChunkPool } from '../core/chunk-pool.ts';

export { safeJoin };
import { MemvaultError, PermanentError } from '../core/errors.ts';
import { SOURCE_CHANGED } from '../core/source-file.ts';

export const filesSchema = z.object({
  /** Root directory of the tree. */
  path: z.string(),
  /** Glob patterns (relative to path) to leave out, e.g. "cache/**". */
  exclude: z.array(z.string()).default([]),
});
export type FilesSettings = z.infer<typeof filesSchema>;

/** Validation reads each file through one buffer of at most this size (hashFile). */
const HASH_BUFFER = 1024 * 1024;


/**
 * Restore and validation: files at once, and the bytes they may hold in flight together.
 * Each byte in flight costs about three (sealed, opened, decompressed) until the garbage
 * collector runs: 8 MiB keeps a restore's peak near 200 MiB (16 MiB: up to 250 MiB, for 4%
 * less time).
 */
const RESTORE_FILES = 8;
const RESTORE_BYTES = 8 * 1024 * 1024;
/** What one file may prefetch (readEntry): a large file alone still keeps several chunks decoding. */
const FILE_PREFETCH = 4 * 1024 * 1024;

/**
 * Runs tasks with at most `files` at once and their costs summing to at most
 * `bytes` (a task costing more than that runs alone). Rejects with the first
 * failure after the running tasks have settled.
 */
export class Limiter {
  private running = new Set<Promise<void>>();
  private used = 0;
  private failure: { err: unknown } | undefined;
  constructor(private readonly files = RESTORE_FILES, private readonly bytes = RESTORE_BYTES) {}

  async run(cost: number, task: () => Promise<void>): Promise<void> {
    while (this.running.size > 0 && (this.running.size >= this.files || this.used + cost > this.bytes)) {
      await Promise.race(this.running);
    }
    if (this.failure) throw this.failure.err;
    this.used += cost;
    const p: Promise<void> = task()
      .catch((err) => { this.failure ??= { err }; })
      .finally(() => { this.used -= cost; this.running.delete(p); });
    this.running.add(p);
  }

  async drain(): Promise<void> {
    await Promise.all(this.running);
    if (this.failure) throw this.failure.err;
  }
}

/**
 * Test seam: called for each regular file after the walk listed it (lstat) and before it is
 * opened, so a test can swap the file at that point deterministically. Unset in production.
 */
export const backupSeams: { beforeRead?: (rel: string, abs: string) => void | Promise<void> } = {};

/** The warning for a file that could not be read (its error code), naming it. */
function readWarning(rel: string, err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case SOURCE_CHANGED: return `${rel}: ${err.message}`;
    case 'ENOENT': return `${rel}: vanished during the backup`;
    case 'EACCES': case 'EPERM': return `${rel}: unreadable (${err.code})`;
    default: return `${rel}: read failed (${err.code})`;
  }
}

function excluded(rel: string, patterns: string[]): boolean {
  return patterns.some((p) => path.matchesGlob(rel, p));
}

async function* walk(root: string, rel: string, patterns: string[], warnings: string[]): AsyncGenerator<{ rel: string; abs: string }> {
  let names: string[];
  try {
    names = (await fs.readdir(path.join(root, rel))).sort();
  } catch (err) {
    warnings.push(`${rel || '.'}: cannot list directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return;
  }
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    if (excluded(r, patterns)) continue;
    yield { rel: r, abs: path.join(root, r) };
  }
}

export const filesDriver: Driver<FilesSettings> = {
  kind: 'files',
  mode: 'stream',
  schema: filesSchema,

  async backup(ctx: DriverBackupContext<FilesSettings>) {
    const root = ctx.resolve(ctx.settings.path);
    const rootStat = await fs.stat(root).catch(() => null);
    if (!rootStat?.isDirectory()) throw new PermanentError(`components.${ctx.component}.path: ${root} is not a directory`);
    const warnings: string[] = [];
    const entries: Entry[] = [];
    const previous = new Map<string, Entry>();
    if (ctx.parent && ctx.type !== 'full') for (const e of ctx.parent.entries) previous.set(e.path, e);
    let unchanged = 0;

    // One file at a time on the main thread; with chunk-pool workers, a few per worker (a worker
    // reads the next file while the previous one's chunk files are being fsynced).
    const parallel = ctx.writer.fileParallelism;
    const files = new Limiter(parallel > 1 ? parallel * 4 : 1, 64 * 1024 * 1024);
    const stack: string[] = [''];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      const subdirs: string[] = [];
      for await (const { rel, abs } of walk(root, dir, ctx.settings.exclude, warnings)) {
        let st;
        try {
          st = await fs.lstat(abs, { bigint: true });
        } catch (err) {
          warnings.push(`${rel}: cannot stat (${(err as NodeJS.ErrnoException).code})`);
          continue;
        }
        const base = { path: rel, mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs.toString() };
        if (st.isDirectory()) {
          entries.push({ ...base, type: 'dir', size: 0 });
          ctx.writer.recordMeta();
          subdirs.push(rel);
        } else if (st.isSymbolicLink()) {
          let target: string;
          try {
            target = await fs.readlink(abs);
          } catch (err) {
            // Replaced or removed since the listing: reported like a file that vanished.
            warnings.push(readWarning(rel, err as NodeJS.ErrnoException));
            continue;
          }
          entries.push({ ...base, type: 'symlink', size: 0, target });
          ctx.writer.recordMeta();
        } else if (st.isFile()) {
          const ino = st.ino.toString();
          const ctimeNs = st.ctimeNs.toString();
          const prev = previous.get(rel);
          if (prev && prev.type === 'file' && prev.size === Number(st.size) && prev.mtimeNs === base.mtimeNs &&
              prev.ctimeNs === ctimeNs && prev.ino === ino && prev.chunks) {
            entries.push({ ...prev, mode: base.mode });
            ctx.writer.reuse(prev);
            unchanged++;
            continue;
          }
          // Files are chunked in parallel (worker threads where there are several cores);
          // the entry keeps its place in walk order.
          const slot = entries.length;
          entries.push(undefined as unknown as Entry);
          const listed = { size: Number(st.size), dev: st.dev, ino: st.ino };
          await files.run(Math.min(listed.size, 8 * 1024 * 1024), async () => {
            try {
              await backupSeams.beforeRead?.(rel, abs);
              const r = await ctx.writer.writeFile(abs, listed);
              entries[slot] = { ...base, type: 'file', size: r.size, sha256: r.sha256, chunks: r.chunks, ino, ctimeNs };
            } catch (err) {
              // A file's own problem carries its error code and is reported; anything else
              // (the vault, a worker: the writer has stopped its workers) fails the backup.
              if (!(err as NodeJS.ErrnoException).code || err instanceof MemvaultError) throw err;
              warnings.push(readWarning(rel, err as NodeJS.ErrnoException));
            }
          });
        } else {
          warnings.push(`${rel}: special file (socket, fifo or device) not backed up`);
        }
      }
      for (const d of subdirs.reverse()) stack.push(d);
    }
    await files.drain();
    const rootMode = Number(rootStat.mode & 0o7777);
    const kept = entries.filter((e) => e !== undefined);
    entries.length = 0;
    entries.push(...kept);
    return { entries, meta: { root, rootMode, files: entries.filter((e) => e.type === 'file').length, unchanged }, warnings };
  },

  async restore(ctx: DriverRestoreContext<FilesSettings>) {
    const dest = ctx.target.dir;
    await fs.mkdir(dest, { recursive: true });
    let bytes = 0;
    const dirs: Entry[] = [];
    const made = new Set<string>();
    const mkdirOnce = async (d: string) => {
      if (made.has(d)) return;
      await fs.mkdir(d, { recursive: true });
      made.add(d);
    };
    // From a local vault, worker threads read, check and write the files (null: here); this
    // thread then holds no file data, and keeps a few files queued for them.
    const pool = ChunkPool.forRestore(ctx.vault);
    const files = pool ? new Limiter(4 * pool.size, 64 * 1024 * 1024) : new Limiter();
    try {
      for (const e of ctx.manifest.entries) {
        const abs = safeJoin(dest, e.path);
        if (e.type === 'dir') {
          await fs.mkdir(abs, { recursive: true, mode: 0o700 });
          made.add(abs);
          dirs.push(e);
        } else if (e.type === 'symlink') {
          await mkdirOnce(path.dirname(abs));
          await fs.rm(abs, { force: true });
          await fs.symlink(e.target!, abs);
          if (e.mtimeNs) await fs.lutimes(abs, nsToDate(e.mtimeNs), nsToDate(e.mtimeNs)).catch(() => undefined);
        } else {
          await mkdirOnce(path.dirname(abs));
          await files.run(Math.min(e.size, FILE_PREFETCH), () => restoreFile(ctx, e, abs, pool));
          bytes += e.size;
        }
      }
    } finally {
      await files.drain().catch(() => undefined);
      await pool?.close();
    }
    await files.drain();
    // Directory modes and times last, deepest first, so writing children does not disturb them.
    for (const d of dirs.reverse()) {
      const abs = safeJoin(dest, d.path);
      if (d.mode !== undefined) await fs.chmod(abs, d.mode);
      if (d.mtimeNs) await fs.utimes(abs, nsToDate(d.mtimeNs), nsToDate(d.mtimeNs));
    }
    return { location: dest, bytes, entries: ctx.manifest.entries.length };
  },

  async validate(ctx: DriverValidateContext<FilesSettings>) {
    return validateTree(ctx.location, ctx.manifest.entries);
  },
};

async function restoreFile(ctx: DriverRestoreContext<FilesSettings>, e: Entry, abs: string, pool: ChunkPool | null): Promise<void> {
  await restoreEntryFile(ctx.vault, ctx.component, e, abs, { prefetch: FILE_PREFETCH, mode: e.mode, pool });
  if (e.mtimeNs) await fs.utimes(abs, nsToDate(e.mtimeNs), nsToDate(e.mtimeNs));
}


/** Seconds as a double, for utimes: microsecond precision (a Date would keep only milliseconds). */
export function nsToDate(ns: string): number {
  return Number(BigInt(ns) / 1000n) / 1e6;
}


/**
 * SHA-256 of a file, read through one buffer (at most 1 MiB) reused to the
 * end: a restore validates every file it wrote, and a new buffer per read
 * would leave the garbage collector hundreds of MiB to catch up with.
 */
export async function hashFile(p: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await fs.open(p, 'r');
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.allocUnsafe(Math.max(1, Math.min(size + 1, HASH_BUFFER)));
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** Compares a restored tree with the manifest: every entry present, with type, size, checksum, mode, mtime. */
export async function validateTree(root: string, entries: Entry[]) {
  const checks: ValidationCheck[] = [];
  const problems: string[] = [];
  let files = 0;
  let bytes = 0;
  // Files are re-read and hashed several at a time (reads overlap hashing); the
  // problems are reported in manifest order whatever order the checks finish in.
  const found: (string | undefined)[] = new Array(entries.length);
  const hashing = new Limiter();
  for (const [i, e] of entries.entries()) {
    const abs = path.join(root, e.path);
    const st = await fs.lstat(abs, { bigint: true }).catch(() => null);
    if (!st) { found[i] = `${e.path}: missing`; continue; }
    if (e.type === 'dir' && !st.isDirectory()) { found[i] = `${e.path}: not a directory`; continue; }
    if (e.type === 'symlink') {
      if (!st.isSymbolicLink()) { found[i] = `${e.path}: not a symlink`; continue; }
      const t = await fs.readlink(abs);
      if (t !== e.target) found[i] = `${e.path}: link points to ${t}, expected ${e.target}`;
      continue;
    }
    const here: string[] = [];
    if (e.mode !== undefined && Number(st.mode & 0o7777n) !== e.mode) {
      here.push(`${e.path}: mode ${Number(st.mode & 0o7777n).toString(8)}, expected ${e.mode.toString(8)}`);
    }
    if (e.mtimeNs && (st.mtimeNs / 1000n) !== BigInt(e.mtimeNs) / 1000n &&
        (st.mtimeNs / 1000n) - BigInt(e.mtimeNs) / 1000n !== 1n && BigInt(e.mtimeNs) / 1000n - st.mtimeNs / 1000n !== 1n) {
      here.push(`${e.path}: mtime differs`);
    }
    const done = () => { if (here.length > 0) found[i] = here.join('\n'); };
    if (e.type !== 'file') { done(); continue; }
    if (!st.isFile()) { here.push(`${e.path}: not a regular file`); done(); continue; }
    if (Number(st.size) !== e.size) { here.push(`${e.path}: size ${st.size}, expected ${e.size}`); done(); continue; }
    if (!e.sha256) { files++; bytes += e.size; done(); continue; }
    const sha = e.sha256;
    await hashing.run(Math.min(e.size, HASH_BUFFER), async () => {
      if ((await hashFile(abs)) !== sha) here.push(`${e.path}: checksum differs`);
      else { files++; bytes += e.size; }
      done();
    });
  }
  await hashing.drain();
  for (const f of found) if (f) problems.push(...f.split('\n'));
  const expectedFiles = entries.filter((e) => e.type === 'file').length;
  checks.push({ name: 'files restored with matching SHA-256', ok: files === expectedFiles, expected: expectedFiles, actual: files });
  checks.push({ name: 'bytes', ok: bytes === entries.reduce((a, e) => a + (e.type === 'file' ? e.size : 0), 0), actual: bytes });
  checks.push({ name: 'entries match manifest (type, mode, mtime, link target)', ok: problems.length === 0, actual: problems.slice(0, 20) });
  return report(checks);
}

