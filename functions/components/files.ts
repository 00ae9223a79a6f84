// files: a directory tree (concept graph exports, model weights, configuration,
// logs). Contents, names, modes and modification times round-trip; symlinks are
// kept as links (never followed); directories are recorded with their modes.
// On an incremental backup a file whose size, mtime, ctime and inode match the
// parent backup reuses its chunk list without being read again. Files that
// cannot be read are reported as warnings naming each file, never skipped
// silently. Restores write each file to a temporary name, check its SHA-256,
// and only then rename it into place.
import { promises as fs, createReadStream } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Driver, DriverBackupContext, DriverRestoreContext, DriverValidateContext, ValidationCheck } from './types.ts';
import { report } from './types.ts';
import type { Entry } from '../core/manifest.ts';
import { readEntry } from '../core/writer.ts';
import { IntegrityError, NotFoundError, PermanentError } from '../core/errors.ts';

export const filesSchema = z.object({
  /** Root directory of the tree. */
  path: z.string(),
  /** Glob patterns (relative to path) to leave out, e.g. "cache/**". */
  exclude: z.array(z.string()).default([]),
});
export type FilesSettings = z.infer<typeof filesSchema>;

const READ_HIGH_WATER = 1024 * 1024;

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
          entries.push({ ...base, type: 'symlink', size: 0, target: await fs.readlink(abs) });
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
          let fh;
          try {
            fh = await fs.open(abs, 'r');
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            warnings.push(code === 'ENOENT' ? `${rel}: vanished during the backup` : `${rel}: unreadable (${code})`);
            continue;
          }
          try {
            const stream = fh.createReadStream({ highWaterMark: READ_HIGH_WATER, autoClose: false });
            const r = await ctx.writer.writeStream(stream);
            entries.push({ ...base, type: 'file', size: r.size, sha256: r.sha256, chunks: r.chunks, ino, ctimeNs });
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (!code) throw err;
            warnings.push(`${rel}: read failed (${code})`);
          } finally {
            await fh.close();
          }
        } else {
          warnings.push(`${rel}: special file (socket, fifo or device) not backed up`);
        }
      }
      for (const d of subdirs.reverse()) stack.push(d);
    }
    const rootMode = Number(rootStat.mode & 0o7777);
    return { entries, meta: { root, rootMode, files: entries.filter((e) => e.type === 'file').length, unchanged }, warnings };
  },

  async restore(ctx: DriverRestoreContext<FilesSettings>) {
    const dest = ctx.target.dir;
    await fs.mkdir(dest, { recursive: true });
    let bytes = 0;
    const dirs: Entry[] = [];
    for (const e of ctx.manifest.entries) {
      const abs = safeJoin(dest, e.path);
      if (e.type === 'dir') {
        await fs.mkdir(abs, { recursive: true, mode: 0o700 });
        dirs.push(e);
      } else if (e.type === 'symlink') {
        await fs.mkdir(path.dirname(abs), { recursive: true });
        await fs.rm(abs, { force: true });
        await fs.symlink(e.target!, abs);
        if (e.mtimeNs) await fs.lutimes(abs, nsToDate(e.mtimeNs), nsToDate(e.mtimeNs)).catch(() => undefined);
      } else {
        await fs.mkdir(path.dirname(abs), { recursive: true });
        await restoreFile(ctx, e, abs);
        bytes += e.size;
      }
    }
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

async function restoreFile(ctx: DriverRestoreContext<FilesSettings>, e: Entry, abs: string): Promise<void> {
  const tmp = `${abs}.memvault-partial`;
  const fh = await fs.open(tmp, 'w', 0o600);
  try {
    for await (const data of readEntry(ctx.vault, e)) await fh.write(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await fs.rm(tmp, { force: true });
    if (err instanceof IntegrityError) throw new IntegrityError(`${ctx.component}: ${e.path}: ${err.message}`, err.objectKey);
    throw err;
  }
  await fh.close();
  await fs.rm(abs, { force: true, recursive: false }).catch(() => undefined);
  await fs.rename(tmp, abs);
  if (e.mode !== undefined) await fs.chmod(abs, e.mode);
  if (e.mtimeNs) await fs.utimes(abs, nsToDate(e.mtimeNs), nsToDate(e.mtimeNs));
}

/** Seconds as a double, for utimes: microsecond precision (a Date would keep only milliseconds). */
export function nsToDate(ns: string): number {
  return Number(BigInt(ns) / 1000n) / 1e6;
}

export function safeJoin(root: string, rel: string): string {
  const abs = path.resolve(root, rel);
  if (abs !== root && !abs.startsWith(root.endsWith(path.sep) ? root : root + path.sep)) {
    throw new IntegrityError(`manifest entry "${rel}" escapes the restore target`);
  }
  return abs;
}

export async function hashFile(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(p, { highWaterMark: READ_HIGH_WATER })) h.update(b as Buffer);
  return h.digest('hex');
}

/** Compares a restored tree with the manifest: every entry present, with type, size, checksum, mode, mtime. */
export async function validateTree(root: string, entries: Entry[]) {
  const checks: ValidationCheck[] = [];
  const problems: string[] = [];
  let files = 0;
  let bytes = 0;
  for (const e of entries) {
    const abs = path.join(root, e.path);
    const st = await fs.lstat(abs, { bigint: true }).catch(() => null);
    if (!st) { problems.push(`${e.path}: missing`); continue; }
    if (e.type === 'dir' && !st.isDirectory()) { problems.push(`${e.path}: not a directory`); continue; }
    if (e.type === 'symlink') {
      if (!st.isSymbolicLink()) { problems.push(`${e.path}: not a symlink`); continue; }
      const t = await fs.readlink(abs);
      if (t !== e.target) problems.push(`${e.path}: link points to ${t}, expected ${e.target}`);
      continue;
    }
    if (e.mode !== undefined && Number(st.mode & 0o7777n) !== e.mode) {
      problems.push(`${e.path}: mode ${Number(st.mode & 0o7777n).toString(8)}, expected ${e.mode.toString(8)}`);
    }
    if (e.mtimeNs && (st.mtimeNs / 1000n) !== BigInt(e.mtimeNs) / 1000n &&
        (st.mtimeNs / 1000n) - BigInt(e.mtimeNs) / 1000n !== 1n && BigInt(e.mtimeNs) / 1000n - st.mtimeNs / 1000n !== 1n) {
      problems.push(`${e.path}: mtime differs`);
    }
    if (e.type === 'file') {
      if (!st.isFile()) { problems.push(`${e.path}: not a regular file`); continue; }
      if (Number(st.size) !== e.size) { problems.push(`${e.path}: size ${st.size}, expected ${e.size}`); continue; }
      if (e.sha256 && (await hashFile(abs)) !== e.sha256) { problems.push(`${e.path}: checksum differs`); continue; }
      files++;
      bytes += e.size;
    }
  }
  const expectedFiles = entries.filter((e) => e.type === 'file').length;
  checks.push({ name: 'files restored with matching SHA-256', ok: files === expectedFiles, expected: expectedFiles, actual: files });
  checks.push({ name: 'bytes', ok: bytes === entries.reduce((a, e) => a + (e.type === 'file' ? e.size : 0), 0), actual: bytes });
  checks.push({ name: 'entries match manifest (type, mode, mtime, link target)', ok: problems.length === 0, actual: problems.slice(0, 20) });
  return report(checks);
}

export async function assertDirectory(p: string, field: string): Promise<void> {
  const st = await fs.stat(p).catch(() => null);
  if (!st) throw new NotFoundError(`${field}: ${p} does not exist`);
  if (!st.isDirectory()) throw new PermanentError(`${field}: ${p} is not a directory`);
}
