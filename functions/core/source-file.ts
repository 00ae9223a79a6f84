// source-file: a backup reads exactly the file it listed. The walk lstat()s a
// path and records its device and inode; the reader opens the path with
// O_NOFOLLOW (a symlink swapped in for the last component fails to open
// instead of being followed) and O_NONBLOCK (a FIFO swapped in cannot block
// the open or the reads), then fstat()s the open descriptor and compares it
// with the listing: a regular file with the same device and inode, or the file
// is not read. A parent directory swapped for a symlink leads the open
// elsewhere, to another inode, and fails the same comparison. Such a file is
// reported (SourceChangedError, the driver's warnings), never read through.
//
// Runs under Node's own type stripping in workers (chunk-worker.ts): erasable
// TypeScript and built-in imports only.
import { constants } from 'node:fs';

/** What the listing (lstat) saw of a regular file. */
export interface ListedFile {
  size: number;
  dev: bigint;
  ino: bigint;
}

/** open(2) flags for a file a backup reads (O_NOFOLLOW, O_NONBLOCK where the platform has them). */
export const SOURCE_OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/** The error code a changed source file carries across the worker boundary. */
export const SOURCE_CHANGED = 'ESOURCECHANGED';

/** A listed file was replaced (another kind or another inode) between listing and reading. */
export class SourceChangedError extends Error {
  readonly code = SOURCE_CHANGED;
  constructor(message: string) {
    super(message);
    this.name = 'SourceChangedError';
  }
}

interface OpenedStat {
  dev: bigint;
  ino: bigint;
  isFile(): boolean;
  isDirectory(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSymbolicLink(): boolean;
}

function kindOf(st: OpenedStat): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/** Null when the open file is the listed one, else what it is now (the warning's text, without the path). */
export function sourceChange(opened: OpenedStat, listed: ListedFile): string | null {
  if (!opened.isFile()) return `changed during the backup (listed as a regular file, now ${kindOf(opened)}); not backed up`;
  if (opened.dev !== listed.dev || opened.ino !== listed.ino) return 'replaced by another file during the backup; not backed up';
  return null;
}

/** An open() error that means the path is now a symbolic link (O_NOFOLLOW: ELOOP on Linux, EMLINK on BSDs). */
export function openChange(err: unknown): SourceChangedError | null {
  const code = (err as { code?: string } | null)?.code;
  if (code === 'ELOOP' || code === 'EMLINK') {
    return new SourceChangedError('changed during the backup (listed as a regular file, now a symbolic link); not backed up');
  }
  return null;
}
