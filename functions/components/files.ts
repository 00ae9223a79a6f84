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
import { constants as fsc, promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Driver, DriverBackupContext, DriverMaskContext, DriverRestoreContext, DriverValidateContext, Masking, ValidationCheck } from './types.ts';
import { maskFiles, maskedEntries } from './mask-files.ts';
import type { FileMaskRule } from '../core/mask.ts';
import { report } from './types.ts';
import type { Entry } from '../core/manifest.ts';
import { TargetTree, nsToDate, restoreEntryFile, restoreSmallFiles, restoreSmallFilesPooled, safeJoin } from './restore-file.ts';
import { ChunkPool } from '../core/chunk-pool.ts';
import { readEntries } from '../core/entry-log.ts';

export { nsToDate, safeJoin };
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
/** Restores batch files up to this size: without workers BATCH_FILES files or BATCH_BYTES bytes a batch (read together). */
const SMALL_FILE = 1024 * 1024;
const BATCH_FILES = 1024;
const BATCH_BYTES = 4 * 1024 * 1024;
/**
 * Restores from a local vault hand small files to the chunk-pool workers in batches of this
 * many files or bytes: one message each way per batch, the pack file kept open between
 * neighbours. Measured (200k files of 0.5-8 KiB, page cache synced before each run): 77-80 s
 * and 28-30 s of CPU instead of 104 s and 62 s with one file per job (restic 0.14: 30 s,
 * without memvault's validation pass); 1,024 files a batch was no faster and held more memory.
 */
const POOL_BATCH_FILES = 128;
const POOL_BATCH_BYTES = 1024 * 1024;
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

/**
 * The order the walk lists entries in: directories depth first, each one's
 * entries (sorted by name) before its subdirectories' (see backup()). As a
 * comparison of two paths: by their parent directories, component by component
 * (a directory before what is below it), then by name.
 */
export function walkOrder(a: string, b: string): number {
  const ia = a.lastIndexOf('/');
  const ib = b.lastIndexOf('/');
  const pa = ia < 0 ? [] : a.slice(0, ia).split('/');
  const pb = ib < 0 ? [] : b.slice(0, ib).split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
  }
  if (pa.length !== pb.length) return pa.length - pb.length;
  const na = a.slice(ia + 1);
  const nb = b.slice(ib + 1);
  return na === nb ? 0 : na < nb ? -1 : 1;
}

/**
 * The parent backup's entries, read in walk order alongside the walk: find(rel)
 * skips what the walk no longer has and returns the entry for rel, if any. Memory:
 * one entry part at a time, whatever the size of the tree.
 */
class ParentCursor {
  private it: AsyncIterator<Entry> | null;
  private cur: Entry | undefined;
  private started = false;
  constructor(src: AsyncIterable<Entry> | null) {
    this.it = src ? src[Symbol.asyncIterator]() : null;
  }

  async find(rel: string): Promise<Entry | undefined> {
    if (!this.it) return undefined;
    if (!this.started) { this.started = true; await this.next(); }
    while (this.cur && walkOrder(this.cur.path, rel) < 0) await this.next();
    return this.cur?.path === rel ? this.cur : undefined;
  }

  private async next(): Promise<void> {
    const r = await this.it!.next();
    this.cur = r.done ? undefined : r.value;
    if (r.done) this.it = null;
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

export const filesDriver: Driver<FilesSettings> & Masking<FilesSettings> = {
  kind: 'files',
  mode: 'stream',
  schema: filesSchema,

  async backup(ctx: DriverBackupContext<FilesSettings>) {
    const root = ctx.resolve(ctx.settings.path);
    const rootStat = await fs.stat(root).catch(() => null);
    if (!rootStat?.isDirectory()) throw new PermanentError(`components.${ctx.component}.path: ${root} is not a directory`);
    const warnings: string[] = [];
    // Entries go to the backup's entry log as the walk finds them (in parts past a few
    // thousand); the parent's are read alongside, in the same walk order (a merge, not a map).
    const out = ctx.entries;
    const previous = new ParentCursor(ctx.parent && ctx.type !== 'full' ? ctx.parentEntries() : null);
    let unchanged = 0;
    let fileCount = 0;

    // One file at a time on the main thread; with chunk-pool workers, a few per worker (a worker
    // reads the next file while the previous one's chunk files are being fsynced).
    const parallel = ctx.writer.fileParallelism;
    const files = new Limiter(parallel > 1 ? parallel * 4 : 1, 64 * 1024 * 1024);
    try {
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
            await out.add({ ...base, type: 'dir', size: 0 });
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
            await out.add({ ...base, type: 'symlink', size: 0, target });
            ctx.writer.recordMeta();
          } else if (st.isFile()) {
            const ino = st.ino.toString();
            const ctimeNs = st.ctimeNs.toString();
            const prev = await previous.find(rel);
            if (prev && prev.type === 'file' && prev.size === Number(st.size) && prev.mtimeNs === base.mtimeNs &&
                prev.ctimeNs === ctimeNs && prev.ino === ino && prev.chunks) {
              await out.add({ ...prev, mode: base.mode });
              ctx.writer.reuse(prev);
              unchanged++;
              fileCount++;
              continue;
            }
            // Files are chunked in parallel (worker threads where there are several cores);
            // the entry keeps its place in walk order.
            const fill = await out.reserve();
            const listed = { size: Number(st.size), dev: st.dev, ino: st.ino };
            await files.run(Math.min(listed.size, 8 * 1024 * 1024), async () => {
              let entry: Entry | null = null;
              try {
                await backupSeams.beforeRead?.(rel, abs);
                const r = await ctx.writer.writeFile(abs, listed);
                entry = { ...base, type: 'file', size: r.size, sha256: r.sha256, chunks: r.chunks, ino, ctimeNs };
                fileCount++;
              } catch (err) {
                // A file's own problem carries its error code and is reported; anything else
                // (the vault, a worker: the writer has stopped its workers) fails the backup.
                if (!(err as NodeJS.ErrnoException).code || err instanceof MemvaultError) throw err;
                warnings.push(readWarning(rel, err as NodeJS.ErrnoException));
              } finally {
                // Files that turned out unreadable (reported as warnings) leave no entry.
                fill(entry);
              }
            });
          } else {
            warnings.push(`${rel}: special file (socket, fifo or device) not backed up`);
          }
        }
        for (const d of subdirs.reverse()) stack.push(d);
      }
    } finally {
      // On a failure the files still being stored settle before the error goes up.
      await files.drain().catch(() => undefined);
    }
    await files.drain();
    const rootMode = Number(rootStat.mode & 0o7777);
    return { entries: [], meta: { root, rootMode, files: fileCount, unchanged }, warnings };
  },

  async restore(ctx: DriverRestoreContext<FilesSettings>) {
    // Nothing in the target is followed: directories are checked (lstat) from the target
    // root down, files are created new under random names and renamed over what is there.
    const tree = await TargetTree.open(ctx.component, ctx.target.dir, { force: ctx.target.options?.force === true });
    const dest = tree.root;
    let bytes = 0;
    const dirs: { abs: string; e: Entry }[] = [];
    // From a local vault, worker threads read, check and write the files (null: here); this
    // thread then holds no file data, and keeps a few files queued for them.
    const pool = ChunkPool.forRestore(ctx.vault);
    const files = pool ? new Limiter(4 * pool.size, 64 * 1024 * 1024) : new Limiter();
    let entries = 0;
    // Without workers (a remote vault), small files are restored in batches whose chunks are
    // read together, in pack order: neighbours in one ranged read instead of a request per file.
    let batch: { e: Entry; abs: string }[] = [];
    let batchBytes = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const b = batch;
      const cost = batchBytes;
      batch = [];
      batchBytes = 0;
      await files.run(Math.min(cost, FILE_PREFETCH), async () => {
        if (pool) await restoreSmallFilesPooled(pool, ctx.component, b, tree);
        else await restoreSmallFiles(ctx.vault, ctx.component, b, tree);
      });
    };
    try {
      // The entries as they are read (a large backup's come in parts, one at a time).
      for await (const e of readEntries(ctx.vault, ctx.manifest)) {
        entries++;
        const abs = tree.path(e.path);
        if (e.type === 'dir') {
          await tree.dir(abs);
          dirs.push({ abs, e });
        } else if (e.type === 'symlink') {
          await tree.symlink(abs, e.target!, e.mtimeNs);
        } else {
          await tree.dir(path.dirname(abs));
          if (e.size <= SMALL_FILE && (e.chunks?.length ?? 0) > 0) {
            batch.push({ e, abs });
            batchBytes += e.size;
            if (batch.length >= (pool ? POOL_BATCH_FILES : BATCH_FILES) || batchBytes >= (pool ? POOL_BATCH_BYTES : BATCH_BYTES)) await flush();
          } else {
            await files.run(Math.min(e.size, FILE_PREFETCH), () => restoreFile(ctx, e, abs, pool, tree));
          }
          bytes += e.size;
        }
      }
      await flush();
    } finally {
      await files.drain().catch(() => undefined);
      await pool?.close();
    }
    await files.drain();
    // Directory modes and times last, deepest first, so writing children does not disturb them;
    // the root (the source directory itself) gets its recorded mode (manifests before it was
    // recorded leave the root 0700).
    for (const { abs, e } of dirs.reverse()) await tree.setDirMeta(abs, e.mode, e.mtimeNs);
    await tree.setDirMeta(dest, rootModeOf(ctx.manifest.driver), undefined);
    return { location: dest, bytes, entries };
  },

  async validate(ctx: DriverValidateContext<FilesSettings>) {
    const files = ctx.masked?.files;
    const entries = readEntries(ctx.vault, ctx.manifest);
    if (!files) return validateTree(ctx.location, entries, { rootMode: rootModeOf(ctx.manifest.driver) });
    // Sanitized: removed files must be gone, replaced ones hold the rule's content (mode and mtime kept).
    const v = await validateTree(ctx.location, maskedEntries(entries, files, (ctx.settings.mask ?? []) as FileMaskRule[]), { rootMode: rootModeOf(ctx.manifest.driver) });
    const still = [];
    for (const rel of files.removed) if (await fs.lstat(path.join(ctx.location, rel)).then(() => true, () => false)) still.push(rel);
    return report([...v.checks, { name: `masked files removed (${files.removed.length}) and replaced (${files.replaced.length})`, ok: still.length === 0, expected: 'removed files absent', actual: still.length ? { present: still } : 'absent' }]);
  },

  async mask(ctx: DriverMaskContext<FilesSettings>) {
    return maskFiles(ctx);
  },
};

/** The source root's mode, as the backup recorded it (meta.rootMode), if it did. */
function rootModeOf(meta: Record<string, unknown>): number | undefined {
  const m = meta?.rootMode;
  return typeof m === 'number' && Number.isInteger(m) && m >= 0 && m <= 0o7777 ? m : undefined;
}

async function restoreFile(ctx: DriverRestoreContext<FilesSettings>, e: Entry, abs: string, pool: ChunkPool | null, tree: TargetTree): Promise<void> {
  await restoreEntryFile(ctx.vault, ctx.component, e, abs, { prefetch: FILE_PREFETCH, mode: e.mode, mtimeNs: e.mtimeNs, pool, tree });
}

/**
 * SHA-256 of a file, read through one buffer (at most 1 MiB) reused to the
 * end: a restore validates every file it wrote, and a new buffer per read
 * would leave the garbage collector hundreds of MiB to catch up with. A symlink
 * at `p` is not followed (ELOOP).
 */
export async function hashFile(p: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await fs.open(p, fsc.O_RDONLY | fsc.O_NOFOLLOW);
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

/**
 * Compares a restored tree with the manifest: every entry present, with type, size, checksum,
 * mode, mtime, and the root's mode when the backup recorded it. Nothing is followed: each
 * directory on an entry's path is checked with lstat, a symlink entry is compared as a link,
 * and files are read through descriptors opened with O_NOFOLLOW.
 */
export async function validateTree(root: string, entries: AsyncIterable<Entry> | Iterable<Entry>, o: { rootMode?: number } = {}) {
  const checks: ValidationCheck[] = [];
  const problems = new FirstProblems(PROBLEMS_KEPT);
  let files = 0;
  let bytes = 0;
  let expectedFiles = 0;
  let expectedBytes = 0;
  // Directories on the entries' paths: a real directory (true), or what is wrong with it.
  const dirState = new Map<string, true | string>();
  const checkDir = async (rel: string): Promise<true | string> => {
    if (rel === '' || rel === '.') return true;
    const known = dirState.get(rel);
    if (known !== undefined) return known;
    const up = await checkDir(path.posix.dirname(rel));
    let state: true | string = up;
    if (up === true) {
      const st = await fs.lstat(path.join(root, rel)).catch(() => null);
      state = !st ? `${rel}: missing` : st.isDirectory() ? true : `${rel}: ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'} on the path of restored entries`;
    }
    dirState.set(rel, state);
    return state;
  };
  // Files are re-read and hashed several at a time (reads overlap hashing); the
  // problems are reported in manifest order whatever order the checks finish in.
  const hashing = new Limiter();
  const rootSt = await fs.lstat(root).catch(() => null);
  if (!rootSt?.isDirectory()) problems.add(-1, `${root}: ${rootSt ? 'not a directory' : 'missing'}`);
  else if (o.rootMode !== undefined && (rootSt.mode & 0o7777) !== o.rootMode) {
    problems.add(-1, `.: mode ${(rootSt.mode & 0o7777).toString(8)}, expected ${o.rootMode.toString(8)}`);
  }
  let i = -1;
  for await (const e of entries) {
    i++;
    if (e.type === 'file') { expectedFiles++; expectedBytes += e.size; }
    const abs = path.join(root, e.path);
    const parent = await checkDir(path.posix.dirname(path.posix.normalize(e.path)));
    if (parent !== true) { problems.add(i, `${e.path}: not restored (${parent})`); continue; }
    const st = await fs.lstat(abs, { bigint: true }).catch(() => null);
    if (!st) { problems.add(i, `${e.path}: missing`); continue; }
    if (e.type === 'dir' && !st.isDirectory()) { problems.add(i, `${e.path}: not a directory`); continue; }
    if (e.type === 'symlink') {
      if (!st.isSymbolicLink()) { problems.add(i, `${e.path}: not a symlink`); continue; }
      const t = await fs.readlink(abs);
      if (t !== e.target) problems.add(i, `${e.path}: link points to ${t}, expected ${e.target}`);
      continue;
    }
    const at = i;
    const here: string[] = [];
    if (e.mode !== undefined && Number(st.mode & 0o7777n) !== e.mode) {
      here.push(`${e.path}: mode ${Number(st.mode & 0o7777n).toString(8)}, expected ${e.mode.toString(8)}`);
    }
    if (e.mtimeNs && (st.mtimeNs / 1000n) !== BigInt(e.mtimeNs) / 1000n &&
        (st.mtimeNs / 1000n) - BigInt(e.mtimeNs) / 1000n !== 1n && BigInt(e.mtimeNs) / 1000n - st.mtimeNs / 1000n !== 1n) {
      here.push(`${e.path}: mtime differs`);
    }
    const done = () => { for (const h of here) problems.add(at, h); };
    if (e.type !== 'file') { done(); continue; }
    if (!st.isFile()) { here.push(`${e.path}: not a regular file`); done(); continue; }
    if (Number(st.size) !== e.size) { here.push(`${e.path}: size ${st.size}, expected ${e.size}`); done(); continue; }
    if (!e.sha256) { files++; bytes += e.size; done(); continue; }
    const sha = e.sha256;
    const size = e.size;
    const rel = e.path;
    await hashing.run(Math.min(size, HASH_BUFFER), async () => {
      let got: string;
      try {
        got = await hashFile(abs);
      } catch (err) {
        here.push(`${rel}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
        done();
        return;
      }
      if (got !== sha) here.push(`${rel}: checksum differs`);
      else { files++; bytes += size; }
      done();
    });
  }
  await hashing.drain();
  const found = problems.list();
  checks.push({ name: 'files restored with matching SHA-256', ok: files === expectedFiles, expected: expectedFiles, actual: files });
  checks.push({ name: 'bytes', ok: bytes === expectedBytes, actual: bytes });
  checks.push({ name: 'entries match manifest (type, mode, mtime, link target)', ok: problems.total === 0, actual: problems.total > found.length ? [...found.slice(0, 20), `... ${problems.total} problems in all`].slice(0, 21) : found.slice(0, 20) });
  return report(checks);
}

/** Problems kept for the report: the first ones in manifest order (a tree of a million missing files reports a count). */
const PROBLEMS_KEPT = 1000;

class FirstProblems {
  private items: { at: number; text: string }[] = [];
  total = 0;
  constructor(private readonly keep: number) {}

  add(at: number, text: string): void {
    this.total++;
    this.items.push({ at, text });
    if (this.items.length > this.keep * 2) this.trim();
  }

  list(): string[] {
    this.trim();
    return this.items.map((x) => x.text);
  }

  private trim(): void {
    // Stable: problems of one entry stay in the order they were found.
    this.items.sort((a, b) => a.at - b.at);
    this.items.length = Math.min(this.items.length, this.keep);
  }
}
