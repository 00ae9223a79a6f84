// Room for a restore: "ensure sufficient disk space for restore operations".
// Before a restore writes a byte into a directory target, the file system
// under it must have the backup's bytes and an inode per entry free (plus a
// margin: the restore writes temporaries and directories, and the file
// system keeps its own reserve), or the restore fails at once naming the
// component, the target, what it needs and what there is, instead of filling
// the disk halfway through and failing there.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Manifest } from './manifest.ts';
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

/** What restoring a manifest into a directory writes: its file bytes and one inode per entry. */
export function restoreNeeds(m: Manifest): { bytes: number; inodes: number } {
  let bytes = 0;
  for (const e of m.entries) if (e.type === 'file') bytes += e.size;
  return { bytes, inodes: m.entries.length };
}

const gib = (n: bigint | number) => `${(Number(n) / 2 ** 30).toFixed(2)} GiB`;

/** Throws InsufficientSpaceError when dir's file system cannot take the manifest's data. */
export async function checkRoomForRestore(component: string, m: Manifest, dir: string): Promise<void> {
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
  return false;
}
