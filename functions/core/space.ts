// Room for a restore: "ensure sufficient disk space for restore operations".
// Before a restore writes a byte into a directory target, the file system
// under it must have the backup's bytes and an inode per entry free (plus a
// margin: the restore writes temporaries and directories, and the file
// system keeps its own reserve), or the restore fails at once naming the
// component, the target, what it needs and what there is, instead of filling
// the disk halfway through and failing there.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ManifestHeader } from './manifest.ts';
import { entryCount } from './entry-log.ts';
import { PermanentError } from './errors.ts';

/** A restore target without room for the backup. */
export class InsufficientSpaceError extends PermanentError {
  constructor(message: string) {
    super(message);
    this.name = 'InsufficientSpaceError';
  }
}

/** Bytes kept free beyond the backup's size: temporaries, directories, metadata. */
export const SPACE_MARGIN_BYTES = 16 * 1024 * 1024;
export const INODE_MARGIN = 16;

export interface Room {
  bytes: bigint;
  /** Free inodes; null where the file system does not count them (files = 0). */
  inodes: bigint | null;
}

/** Free bytes (for this user) and inodes of the file system holding p (its nearest existing ancestor). */
export async function roomAt(p: string): Promise<{ at: string; room: Room }> {
  let at = path.resolve(p);
  for (;;) {
    try {
      const s = await fs.statfs(at, { bigint: true });
      return { at, room: { bytes: s.bavail * s.bsize, inodes: s.files === 0n ? null : s.ffree } };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const up = path.dirname(at);
      if ((code === 'ENOENT' || code === 'ENOTDIR') && up !== at) { at = up; continue; }
      throw err;
    }
  }
}

/**
 * What restoring a manifest into a directory writes: its file bytes and one inode per entry
 * (for a backup whose entries are in parts, from its stats and part counts, without reading them).
 */
export function restoreNeeds(m: ManifestHeader): { bytes: number; inodes: number } {
  if (!m.entries) return { bytes: m.stats.bytesTotal, inodes: entryCount(m) };
  let bytes = 0;
  for (const e of m.entries) if (e.type === 'file') bytes += e.size;
  return { bytes, inodes: m.entries.length };
}

const gib = (n: bigint | number) => `${(Number(n) / 2 ** 30).toFixed(2)} GiB`;

/**
 * MEMVAULT_SPACE_CHECK=off turns the free-space checks off, for file systems whose
 * free-space figures mean nothing (thin-provisioned volumes, some network file
 * systems): a full disk is then found by the writes themselves, which fail
 * naming the file and leave no temporary.
 */
export function spaceChecksOff(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.MEMVAULT_SPACE_CHECK === 'off';
}

/** Throws InsufficientSpaceError when dir's file system cannot take the manifest's data. */
export async function checkRoomForRestore(component: string, m: ManifestHeader, dir: string): Promise<void> {
  if (spaceChecksOff()) return;
  const need = restoreNeeds(m);
  const { at, room } = await roomAt(dir);
  const wantBytes = BigInt(need.bytes + SPACE_MARGIN_BYTES);
  if (room.bytes < wantBytes) {
    throw new InsufficientSpaceError(`${component}: restoring backup ${m.id} needs ${gib(need.bytes)} (+${SPACE_MARGIN_BYTES / 2 ** 20} MiB margin) in ${dir}; the file system of ${at} has ${gib(room.bytes)} free: free space there or choose another target; nothing was written`);
  }
  if (room.inodes !== null && room.inodes < BigInt(need.inodes + INODE_MARGIN)) {
    throw new InsufficientSpaceError(`${component}: restoring backup ${m.id} needs ${need.inodes} inodes (files and directories) in ${dir}; the file system of ${at} has ${room.inodes} free: choose another target; nothing was written`);
  }
}

/** Kinds whose restore writes the backup's files under the target directory (s3-prefix unless restoring into a bucket). */
export function restoresIntoDirectory(kind: string, options: Record<string, unknown> | undefined): boolean {
  if (kind === 'files' || kind === 'sqlite') return true;
  if (kind === 's3-prefix') return !options?.bucket;
  // A physical postgres base backup: a data directory (the archived WAL replayed into it comes on top).
  if (kind === 'postgres') return typeof options?.walConfig === 'string';
  return false;
}

// ---- the vault's side: room for a backup, and the size budget ----

/**
 * New bytes a backup of the component is expected to store: the most any of its
 * last three backups stored (deduplicated, compressed), 0 with no history.
 */
export function expectedNewBytes(entries: { component: string; stats: { bytesStored: number } }[], component: string): number {
  return Math.max(0, ...entries.filter((e) => e.component === component).slice(0, 3).map((e) => e.stats.bytesStored));
}

/**
 * A backup into a local (file://) vault refuses to start when the vault's disk
 * cannot take what the component's recent backups stored plus a margin: a
 * backup that fills the disk fails halfway and leaves nothing usable.
 */
export async function checkVaultRoom(localRoot: string, vaultUrl: string, component: string, expected: number): Promise<void> {
  // No history (a first backup): nothing to go by; a full disk fails the writes, naming them.
  if (spaceChecksOff() || expected === 0) return;
  const { room } = await roomAt(localRoot);
  const want = BigInt(expected + SPACE_MARGIN_BYTES);
  if (room.bytes < want) {
    throw new InsufficientSpaceError(`${component}: not started: the disk of vault ${vaultUrl} has ${gib(room.bytes)} free, and this component's recent backups stored up to ${gib(expected)} (+${SPACE_MARGIN_BYTES / 2 ** 20} MiB margin): free space there (memvault retention) or move the vault; nothing was written`);
  }
}

/** Bytes of every object in a vault. */
export async function vaultBytes(storage: { list(prefix: string): AsyncIterable<{ size: number }> }): Promise<number> {
  let n = 0;
  for await (const o of storage.list('')) n += o.size;
  return n;
}

export interface BudgetFinding {
  severity: 'warning' | 'error';
  subject: string;
  message: string;
  details: { vault: string; bytes: number; budgetBytes: number; percent: number };
}

/** Compares a vault's size with vault.budget: a warning past warnAtPercent, an error past the budget. */
export function checkBudget(budget: { maxSizeGb: number; warnAtPercent: number } | undefined, vaultUrl: string, bytes: number): BudgetFinding | null {
  if (!budget) return null;
  const budgetBytes = budget.maxSizeGb * 2 ** 30;
  const percent = Math.round((bytes / budgetBytes) * 1000) / 10;
  const details = { vault: vaultUrl, bytes, budgetBytes, percent };
  if (bytes > budgetBytes) {
    return { severity: 'error', subject: `vault over its size budget: ${vaultUrl}`, details,
      message: `${vaultUrl} holds ${gib(bytes)}, over its budget of ${budget.maxSizeGb} GiB (${percent}%): shorten retention, prune (memvault retention) or raise vault.budget.maxSizeGb` };
  }
  if (percent >= budget.warnAtPercent) {
    return { severity: 'warning', subject: `vault nearing its size budget: ${vaultUrl}`, details,
      message: `${vaultUrl} holds ${gib(bytes)}, ${percent}% of its budget of ${budget.maxSizeGb} GiB (alert threshold ${budget.warnAtPercent}%)` };
  }
  return null;
}
