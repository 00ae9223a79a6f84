// file:// storage: a vault in a local directory. Writes go to a temporary file
// in the same directory, are fsynced, then renamed into place, so a reader (or
// a crash) never sees half an object.
//
// A vault directory may be writable by someone who should not be trusted with
// the rest of the machine, so nothing below the root is followed if it is a
// symlink (local-objects.ts): a symlinked directory or object is never read,
// written through, listed or deleted through, and is an IntegrityError naming
// it. Reads can be bounded (maxBytes: refused after fstat, before reading).
// Errors name the vault and the key; a full, read-only or forbidden disk is
// permanent (not retried), a busy one transient.
import { type Dirent, promises as fs } from 'node:fs';
import path from 'node:path';
import { shortRangeMessage, tooLargeMessage, type GetOptions, type ObjectWriter, type Storage, type StoredObject, type SweepReport } from '../../core/ports.ts';
import { IntegrityError, MemvaultError, NotFoundError, PermanentError, TransientStorageError } from '../../core/errors.ts';
import {
  OPEN_OBJECT,
  OPEN_TEMPORARY,
  describeFileError,
  isTemporaryName,
  refusedLink,
  symlinkInVault,
  temporaryName,
  verifyDirectories,
} from '../../core/local-objects.ts';

const TRANSIENT = new Set(['EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'EINTR', 'ETIMEDOUT']);

type Action = 'read' | 'write' | 'list' | 'delete';

export class FileStorage implements Storage {
  readonly url: string;
  readonly localRoot: string;
  /** Directory keys checked to be real directories (not symlinks) below the root. */
  private readonly verified = new Set<string>();

  constructor(readonly root: string) {
    this.url = `file://${root}`;
    this.localRoot = root;
  }

  private file(key: string): string {
    if (!key || key.startsWith('/') || key.split('/').some((s) => s === '..' || s === '.' || s === '') || isTemporaryName(key)) {
      throw new PermanentError(`${this.url}: invalid object key "${key}"`);
    }
    return path.join(this.root, key);
  }

  /** Maps a file system error onto the vault's error families, naming the vault and the key. */
  private wrap(err: unknown, key: string, action: Action): never {
    if (err instanceof MemvaultError) throw err;
    const e = err as NodeJS.ErrnoException & { objectKey?: string };
    const code = e?.code;
    // A directory on the way went missing or changed: check again next time.
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') this.verified.clear();
    if (code === 'ENOENT' && action !== 'write') throw new NotFoundError(`${this.url}: object ${key} not found`);
    const link = refusedLink(key, err);
    if (link) throw new IntegrityError(`${this.url}: cannot ${action} ${key}: ${link.message}`, link.objectKey);
    const message = `${this.url}: cannot ${action} ${key}: ${describeFileError(err)}`;
    if (code && TRANSIENT.has(code)) throw new TransientStorageError(message, { cause: err });
    throw new PermanentError(message, { cause: err });
  }

  async get(key: string, o: GetOptions = {}): Promise<Buffer> {
    const file = this.file(key);
    try {
      await verifyDirectories(this.root, key, this.verified, false);
      const fh = await fs.open(file, OPEN_OBJECT);
      try {
        const st = await fh.stat();
        if (!st.isFile()) throw new IntegrityError(`${this.url}: ${key} is not a regular file`, key);
        if (o.maxBytes !== undefined && st.size > o.maxBytes) throw new IntegrityError(tooLargeMessage(this.url, key, st.size, o.maxBytes), key);
        // Objects never change once in place: read what fstat saw, no more.
        const buf = Buffer.allocUnsafe(st.size);
        let off = 0;
        while (off < st.size) {
          const { bytesRead } = await fh.read(buf, off, st.size - off, off);
          if (bytesRead === 0) break;
          off += bytesRead;
        }
        return off === st.size ? buf : buf.subarray(0, off);
      } finally {
        await fh.close();
      }
    } catch (err) {
      this.wrap(err, key, 'read');
    }
  }

  /** Reads a byte range with one positioned read (pread) of the object, never through a link. */
  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    const file = this.file(key);
    try {
      await verifyDirectories(this.root, key, this.verified, false);
      const fh = await fs.open(file, OPEN_OBJECT);
      try {
        const buf = Buffer.allocUnsafe(length);
        let off = 0;
        while (off < length) {
          const { bytesRead } = await fh.read(buf, off, length - off, offset + off);
          if (bytesRead === 0) break;
          off += bytesRead;
        }
        if (off < length) throw new IntegrityError(shortRangeMessage(this.url, key, offset, length, off), key);
        return buf;
      } finally {
        await fh.close();
      }
    } catch (err) {
      this.wrap(err, key, 'read');
    }
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const w = await this.openWrite(key);
    try {
      await w.write(data instanceof Uint8Array ? [data] : data);
    } catch (err) {
      await w.abort();
      throw err;
    }
    await w.commit();
  }

  /** A temporary file next to the object, appended to, synced and renamed over it at commit. */
  async openWrite(key: string): Promise<ObjectWriter> {
    const dest = this.file(key);
    const tmp = temporaryName(dest);
    let fh: fs.FileHandle;
    try {
      try {
        await verifyDirectories(this.root, key, this.verified, true);
        fh = await fs.open(tmp, OPEN_TEMPORARY, 0o600);
      } catch (err) {
        // The vault root not made yet (the root itself may be reached through links:
        // the user's choice), or a remembered directory removed meanwhile: make them, once.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.verified.clear();
        await fs.mkdir(this.root, { recursive: true });
        await verifyDirectories(this.root, key, this.verified, true);
        fh = await fs.open(tmp, OPEN_TEMPORARY, 0o600);
      }
    } catch (err) {
      this.wrap(err, key, 'write');
    }
    let open = true;
    const drop = async () => {
      if (open) { open = false; await fh.close().catch(() => undefined); }
      await fs.rm(tmp, { force: true }).catch(() => undefined);
    };
    return {
      write: async (parts) => {
        try {
          await writeAll(fh, parts);
        } catch (err) {
          await drop();
          this.wrap(err, key, 'write');
        }
      },
      commit: async () => {
        try {
          await fh.sync();
          open = false;
          await fh.close();
          await fs.rename(tmp, dest);
        } catch (err) {
          await drop();
          this.wrap(err, key, 'write');
        }
      },
      abort: drop,
    };
  }

  async has(key: string): Promise<boolean> {
    const file = this.file(key);
    try {
      await verifyDirectories(this.root, key, this.verified, false);
      const st = await fs.lstat(file);
      if (st.isSymbolicLink()) throw symlinkInVault(key);
      return st.isFile();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return false;
      this.wrap(err, key, 'read');
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    // Walk only the directory that contains the prefix, reached without following links.
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash >= 0 ? prefix.slice(0, slash) : '';
    if (dirKey) {
      try {
        // `${dirKey}/` has dirKey and each directory above it on its way.
        await verifyDirectories(this.root, `${dirKey}/`, this.verified, false);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        this.wrap(err, prefix, 'list');
      }
    }
    yield* this.walk(dirKey, prefix);
  }

  /** The entries of a directory of the vault (none when it is missing or not a directory). */
  private async entries(dirKey: string): Promise<Dirent[]> {
    try {
      return await fs.readdir(path.join(this.root, dirKey), { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      this.wrap(err, dirKey || '.', 'list');
    }
  }

  /** Lists a real directory: descends only into real directories, yields only regular files. */
  private async *walk(dirKey: string, prefix: string): AsyncIterable<StoredObject> {
    for (const e of await this.entries(dirKey)) {
      const key = dirKey ? `${dirKey}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* this.walk(key, prefix);
      } else if (e.isFile() && key.startsWith(prefix) && !isTemporaryName(e.name)) {
        const st = await fs.lstat(path.join(this.root, key)).catch(() => null);
        if (st?.isFile()) yield { key, size: st.size, modified: st.mtime };
      }
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.file(key);
    try {
      await verifyDirectories(this.root, key, this.verified, false);
      const st = await fs.lstat(file);
      if (st.isSymbolicLink()) throw symlinkInVault(key);
      await fs.unlink(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      this.wrap(err, key, 'delete');
    }
  }

  /**
   * Removes temporary files (`<key>.tmp-<12 hex>`) last modified more than
   * `olderThanMs` ago: those of runs killed while writing. Walks the vault
   * without following links; finished objects never match the pattern (put
   * refuses keys that would).
   */
  async sweepTemporary(olderThanMs: number): Promise<SweepReport> {
    const cutoff = Date.now() - olderThanMs;
    const report: SweepReport = { removed: 0, bytes: 0 };
    const sweep = async (dirKey: string): Promise<void> => {
      for (const e of await this.entries(dirKey)) {
        const key = dirKey ? `${dirKey}/${e.name}` : e.name;
        if (e.isDirectory()) await sweep(key);
        else if (e.isFile() && isTemporaryName(e.name)) {
          const file = path.join(this.root, key);
          const st = await fs.lstat(file).catch(() => null);
          if (!st?.isFile() || st.mtimeMs > cutoff) continue;
          try {
            await fs.unlink(file);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // renamed into place or removed meanwhile
            this.wrap(err, key, 'delete');
          }
          report.removed++;
          report.bytes += st.size;
        }
      }
    };
    await sweep('');
    return report;
  }
}

/** Writes the parts in order with writev, resuming after short writes. */
async function writeAll(fh: fs.FileHandle, parts: readonly Uint8Array[]): Promise<void> {
  let rest = parts.filter((p) => p.byteLength > 0);
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest as Uint8Array[]);
    let n = bytesWritten;
    while (rest.length > 0 && n >= rest[0].byteLength) n -= rest.shift()!.byteLength;
    if (n > 0) rest[0] = rest[0].subarray(n);
  }
}
