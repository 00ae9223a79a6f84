// Retries with exponential backoff and full jitter around any Storage, for
// errors marked retryable (TransientStorageError, ThrottledError). Permanent
// errors (not found, access denied, corrupt) pass straight through.
import type { GetOptions, ObjectWriter, Storage, StoredObject, SweepReport } from '../../core/ports.ts';
import { isRetryable } from '../../core/errors.ts';

export interface RetryOptions {
  attempts: number;
  baseMs: number;
  maxMs: number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function withRetry<T>(fn: () => Promise<T>, o: RetryOptions): Promise<T> {
  const sleep = o.sleep ?? defaultSleep;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isRetryable(err) || attempt >= o.attempts) throw err;
      const cap = Math.min(o.maxMs, o.baseMs * 2 ** (attempt - 1));
      await sleep(Math.random() * cap);
    }
  }
}

export class RetryingStorage implements Storage {
  readonly url: string;
  readonly localRoot?: string;
  constructor(private readonly inner: Storage, private readonly opts: RetryOptions = { attempts: 6, baseMs: 100, maxMs: 5_000 }) {
    this.url = inner.url;
    this.localRoot = inner.localRoot;
  }
  get(key: string, o?: GetOptions) { return withRetry(() => this.inner.get(key, o), this.opts); }
  getRange(key: string, offset: number, length: number) { return withRetry(() => this.inner.getRange(key, offset, length), this.opts); }
  put(key: string, data: Uint8Array | readonly Uint8Array[]) { return withRetry(() => this.inner.put(key, data), this.opts); }
  /** Opening is retried; the pieces are not (a failed piece fails the object, as a failed put after its retries). */
  get openWrite(): ((key: string) => Promise<ObjectWriter>) | undefined {
    const inner = this.inner;
    return inner.openWrite ? (key) => withRetry(() => inner.openWrite!(key), this.opts) : undefined;
  }
  has(key: string) { return withRetry(() => this.inner.has(key), this.opts); }
  delete(key: string) { return withRetry(() => this.inner.delete(key), this.opts); }
  async *list(prefix: string): AsyncIterable<StoredObject> {
    // A listing that fails part-way restarts from the beginning; objects are
    // collected by key so a restart yields each object once.
    const seen = new Map<string, StoredObject>();
    await withRetry(async () => {
      for await (const o of this.inner.list(prefix)) seen.set(o.key, o);
    }, this.opts);
    yield* seen.values();
  }
  /** The inner storage's sweep, retried like any call; zeros when it has none. */
  sweepTemporary(olderThanMs: number): Promise<SweepReport> {
    const inner = this.inner;
    if (!inner.sweepTemporary) return Promise.resolve({ removed: 0, bytes: 0 });
    return withRetry(() => inner.sweepTemporary!(olderThanMs), this.opts);
  }
}
