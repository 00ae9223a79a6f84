// CrashingStorage: a Storage wrapper that "kills the process" at the n-th
// mutating call (put or delete): that call and every later one (any
// operation) throws ProcessCrashed, and nothing more reaches the store, as if
// the process died right there. What was stored before stays, exactly as a
// SIGKILL leaves it; with `atomicWrites` false the crashing put leaves nothing
// (file:// and S3 writes are all-or-nothing). An object written in pieces
// (openWrite, file:// packs) counts as one mutating call at its commit: killed
// there, its pieces stay behind as the temporary a SIGKILL leaves. Used to
// crash backup, prune (repack) and replicate at every step of their writing.
import type { GetOptions, ObjectWriter, Storage, StoredObject, SweepReport } from '../../functions/core/ports.ts';

export class ProcessCrashed extends Error {
  override name = 'ProcessCrashed';
}

export class CrashingStorage implements Storage {
  readonly url: string;
  /** Mutating calls made (put + delete), and the keys, in order. */
  readonly writes: string[] = [];
  private crashed = false;

  constructor(readonly inner: Storage, private readonly crashAt = Infinity) {
    this.url = inner.url;
  }

  get hasCrashed(): boolean { return this.crashed; }

  private check(): void {
    if (this.crashed) throw new ProcessCrashed('the process is gone');
  }

  private mutate(key: string): void {
    this.check();
    if (this.writes.length + 1 >= this.crashAt) {
      this.crashed = true;
      this.writes.push(`CRASH at ${key}`);
      throw new ProcessCrashed(`killed before ${key}`);
    }
    this.writes.push(key);
  }

  async get(key: string, o?: GetOptions): Promise<Buffer> { this.check(); return this.inner.get(key, o); }
  async getRange(key: string, offset: number, length: number): Promise<Buffer> { this.check(); return this.inner.getRange(key, offset, length); }
  async has(key: string): Promise<boolean> { this.check(); return this.inner.has(key); }
  async *list(prefix: string): AsyncIterable<StoredObject> {
    this.check();
    for await (const o of this.inner.list(prefix)) { this.check(); yield o; }
  }
  async put(key: string, data: Uint8Array | readonly Uint8Array[]): Promise<void> { this.mutate(key); return this.inner.put(key, data); }
  async delete(key: string): Promise<void> { this.mutate(key); return this.inner.delete(key); }
  get openWrite(): ((key: string) => Promise<ObjectWriter>) | undefined {
    const inner = this.inner;
    if (!inner.openWrite) return undefined;
    return async (key) => {
      this.check();
      const w = await inner.openWrite!(key);
      return {
        write: async (parts) => { this.check(); return w.write(parts); },
        commit: async () => { this.mutate(key); return w.commit(); },
        // A dead process removes nothing.
        abort: async () => { if (!this.crashed) await w.abort(); },
      };
    };
  }
  async sweepTemporary(olderThanMs: number): Promise<SweepReport> {
    this.check();
    return this.inner.sweepTemporary ? this.inner.sweepTemporary(olderThanMs) : { removed: 0, bytes: 0 };
  }
}
