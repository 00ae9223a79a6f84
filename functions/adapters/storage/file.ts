// file:// storage: a vault in a local directory. Writes go to a temporary file
// in the same directory, are fsynced, then renamed into place, so a reader (or
// a crash) never sees half an object.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Storage, StoredObject } from '../../core/ports.ts';
import { NotFoundError, TransientStorageError, PermanentError } from '../../core/errors.ts';

const TRANSIENT = new Set(['EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'EINTR', 'ETIMEDOUT']);

export class FileStorage implements Storage {
  readonly url: string;
  readonly localRoot: string;
  constructor(readonly root: string) {
    this.url = `file://${root}`;
    this.localRoot = root;
  }

  private file(key: string): string {
    if (key.includes('..') || key.startsWith('/')) throw new PermanentError(`invalid object key "${key}"`);
    return path.join(this.root, key);
  }

  private wrap(err: unknown, key: string): never {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NotFoundError(`${this.url}: object ${key} not found`);
    if (code && TRANSIENT.has(code)) throw new TransientStorageError(`${this.url}: ${key}: ${code}`, { cause: err });
    throw err;
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await fs.readFile(this.file(key));
    } catch (err) {
      this.wrap(err, key);
    }
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const dest = this.file(key);
    const tmp = `${dest}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      await fs.mkdir(path.dirname(dest), { recursive: true });
      const fh = await fs.open(tmp, 'w', 0o600);
      try {
        if (data instanceof Uint8Array) await fh.writeFile(data);
        else await writeAll(fh, data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.rename(tmp, dest);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      this.wrap(err, key);
    }
  }

  async has(key: string): Promise<boolean> {
    try {
      await fs.access(this.file(key));
      return true;
    } catch {
      return false;
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    // Walk only the directory that contains the prefix.
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash >= 0 ? prefix.slice(0, slash) : '';
    yield* this.walk(dirKey, prefix);
  }

  private async *walk(dirKey: string, prefix: string): AsyncIterable<StoredObject> {
    let entries;
    try {
      entries = await fs.readdir(path.join(this.root, dirKey), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const key = dirKey ? `${dirKey}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* this.walk(key, prefix);
      } else if (e.isFile() && key.startsWith(prefix) && !e.name.includes('.tmp-')) {
        const st = await fs.stat(path.join(this.root, key)).catch(() => null);
        if (st) yield { key, size: st.size, modified: st.mtime };
      }
    }
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.file(key), { force: true });
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
