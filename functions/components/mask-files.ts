// Masking of a restored files tree (sanitized restores, core/mask.ts): each
// rule's glob is matched against the manifest's file paths (relative to the
// component root); `remove` unlinks the restored file, `replace` writes the
// rule's content to a new file (O_EXCL | O_NOFOLLOW, the original's mode and
// mtime) and renames it over the restored one. Nothing is followed: a path
// whose restored file is not a regular file is left as the restore made it
// (validation reports it). The restore step runs this right after the files
// are restored and before it returns, so no other step reads them unmasked.
import { constants as fsc, promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { Entry } from '../core/manifest.ts';
import { readEntries } from '../core/entry-log.ts';
import { type FileMaskRule, type MaskRuleResult, describeRule, globRegExp, ruleName } from '../core/mask.ts';
import { nsToDate } from './restore-file.ts';
import type { DriverMaskContext } from './types.ts';

export async function maskFiles(ctx: DriverMaskContext<unknown>): Promise<{ rules: MaskRuleResult[]; files: { removed: string[]; replaced: string[] } }> {
  const rules = ctx.rules as FileMaskRule[];
  const res = rules.map((r) => globRegExp(r.files));
  const touched = rules.map(() => 0);
  const removed: string[] = [];
  const replaced: string[] = [];
  const dirs = new Set<string>();
  for await (const e of readEntries(ctx.vault, ctx.manifest)) {
    if (e.type !== 'file') continue;
    const rel = path.posix.normalize(e.path);
    // The first rule that matches a file decides (a removed file is not replaced too).
    const i = res.findIndex((re) => re.test(rel));
    if (i < 0) continue;
    const abs = path.join(ctx.location, rel);
    const st = await fs.lstat(abs).catch(() => null);
    if (!st?.isFile()) continue;
    if (rules[i].action === 'remove') {
      await fs.unlink(abs);
      removed.push(rel);
    } else {
      await replaceFile(abs, Buffer.from(rules[i].content ?? ''), e);
      replaced.push(rel);
    }
    touched[i]++;
    dirs.add(path.posix.dirname(rel));
  }
  // Unlinking and renaming changed the parent directories' mtimes: set them back as restored.
  for await (const e of readEntries(ctx.vault, ctx.manifest)) {
    if (e.type !== 'dir' || !e.mtimeNs || !dirs.has(path.posix.normalize(e.path))) continue;
    const abs = path.join(ctx.location, path.posix.normalize(e.path));
    const st = await fs.lstat(abs).catch(() => null);
    if (st?.isDirectory()) await fs.utimes(abs, nsToDate(e.mtimeNs), nsToDate(e.mtimeNs));
  }
  return {
    rules: rules.map((r, i) => ({ rule: ruleName(ctx.component, i), describe: describeRule(r), touched: touched[i], unit: 'files' as const })),
    files: { removed, replaced },
  };
}

async function replaceFile(abs: string, content: Buffer, e: Entry): Promise<void> {
  const tmp = path.join(path.dirname(abs), `.memvault-partial-${randomBytes(6).toString('hex')}`);
  const fh = await fs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile(content);
    if (e.mode !== undefined) await fh.chmod(e.mode);
    if (e.mtimeNs) await fh.utimes(nsToDate(e.mtimeNs), nsToDate(e.mtimeNs));
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await fs.rename(tmp, abs);
}

/** The manifest's entries as they are after masking: removed files gone, replaced ones with their new content. */
export async function* maskedEntries(entries: AsyncIterable<Entry>, files: { removed: string[]; replaced: string[] }, rules: FileMaskRule[]): AsyncGenerator<Entry> {
  const removed = new Set(files.removed);
  const replaced = new Set(files.replaced);
  const res = rules.map((r) => globRegExp(r.files));
  for await (const e of entries) {
    const rel = path.posix.normalize(e.path);
    if (removed.has(rel)) continue;
    if (!replaced.has(rel)) { yield e; continue; }
    const rule = rules[res.findIndex((re) => re.test(rel))];
    const content = Buffer.from(rule?.content ?? '');
    yield { ...e, size: content.length, sha256: createHash('sha256').update(content).digest('hex') };
  }
}
