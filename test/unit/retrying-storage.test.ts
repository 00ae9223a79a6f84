// RetryingStorage / withRetry over a scripted fake Storage: retryable errors are
// retried up to the attempt limit with growing backoff, permanent errors pass
// straight through, and a listing restarted after a failure yields each object once.
import { describe, expect, it } from 'vitest';
import { RetryingStorage, withRetry, type RetryOptions } from '../../functions/adapters/storage/retrying.ts';
import {
  IntegrityError,
  NotFoundError,
  PermanentError,
  ThrottledError,
  TransientStorageError,
} from '../../functions/core/errors.ts';
import type { GetOptions, Storage, StoredObject, SweepReport } from '../../functions/core/ports.ts';

function recordingSleep() {
  const waits: number[] = [];
  return { waits, sleep: async (ms: number) => void waits.push(ms) };
}

/** A Storage whose calls fail with the scripted errors, in order, then succeed. */
class ScriptedStorage implements Storage {
  readonly url = 'mem://scripted';
  calls = 0;
  listCalls = 0;
  constructor(
    private readonly failures: Error[],
    private readonly objects: StoredObject[] = [],
    /** For list(): how many objects to yield before failing, per failing attempt. */
    private readonly listFailAfter: number[] = [],
  ) {}
  private step(): void {
    this.calls++;
    const err = this.failures.shift();
    if (err) throw err;
  }
  gets: (GetOptions | undefined)[] = [];
  sweeps = 0;
  async get(key: string, o?: GetOptions): Promise<Buffer> {
    this.gets.push(o);
    this.step();
    return Buffer.from(`data:${key}`);
  }
  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    this.step();
    return Buffer.from(`data:${key}`).subarray(offset, offset + length);
  }
  async sweepTemporary(): Promise<SweepReport> {
    this.sweeps++;
    this.step();
    return { removed: 3, bytes: 300 };
  }
  async put(): Promise<void> {
    this.step();
  }
  async has(): Promise<boolean> {
    this.step();
    return true;
  }
  async delete(): Promise<void> {
    this.step();
  }
  async *list(prefix: string): AsyncIterable<StoredObject> {
    this.listCalls++;
    const failAfter = this.listFailAfter.shift();
    let n = 0;
    for (const o of this.objects) {
      if (failAfter !== undefined && n === failAfter) throw new TransientStorageError(`list ${prefix}: connection reset`);
      if (o.key.startsWith(prefix)) yield { ...o };
      n++;
    }
  }
}

const opts = (sleep: RetryOptions['sleep'], attempts = 4): RetryOptions => ({ attempts, baseMs: 100, maxMs: 250, sleep });

describe('withRetry', () => {
  it('retries retryable errors until the call succeeds', async () => {
    const { waits, sleep } = recordingSleep();
    let calls = 0;
    const result = await withRetry(async () => {
      calls++;
      if (calls < 3) throw new ThrottledError('slow down');
      return 'ok';
    }, opts(sleep));
    expect(result).toBe('ok');
    expect(calls).toBe(3);
    expect(waits.length).toBe(2);
  });

  it('gives up after `attempts` tries and throws the last error', async () => {
    const { waits, sleep } = recordingSleep();
    let calls = 0;
    const err = await withRetry(async () => {
      calls++;
      throw new TransientStorageError(`failure ${calls}`);
    }, opts(sleep, 4)).catch((e: unknown) => e);
    expect(calls).toBe(4);
    expect(err).toBeInstanceOf(TransientStorageError);
    expect((err as Error).message).toBe('failure 4');
    expect(waits.length).toBe(3);
  });

  it('waits with full jitter under an exponentially growing cap bounded by maxMs', async () => {
    const { waits, sleep } = recordingSleep();
    await withRetry(async () => {
      throw new TransientStorageError('x');
    }, { attempts: 6, baseMs: 100, maxMs: 250, sleep }).catch(() => undefined);
    const caps = [100, 200, 250, 250, 250];
    expect(waits.length).toBe(caps.length);
    waits.forEach((w, i) => {
      expect(w).toBeGreaterThanOrEqual(0);
      expect(w).toBeLessThanOrEqual(caps[i]);
    });
  });

  it.each([
    ['PermanentError', new PermanentError('bad')],
    ['NotFoundError', new NotFoundError('missing')],
    ['IntegrityError', new IntegrityError('corrupt', 'chunks/x')],
    ['a plain Error', new Error('bug')],
  ])('does not retry %s', async (_label, thrown) => {
    const { waits, sleep } = recordingSleep();
    let calls = 0;
    const err = await withRetry(async () => {
      calls++;
      throw thrown;
    }, opts(sleep)).catch((e: unknown) => e);
    expect(err).toBe(thrown);
    expect(calls).toBe(1);
    expect(waits.length).toBe(0);
  });
});

describe('RetryingStorage', () => {
  it('keeps the inner url', () => {
    expect(new RetryingStorage(new ScriptedStorage([])).url).toBe('mem://scripted');
  });

  it('retries get through transient failures of either kind', async () => {
    const { waits, sleep } = recordingSleep();
    const inner = new ScriptedStorage([new TransientStorageError('reset'), new ThrottledError('slow down')]);
    const s = new RetryingStorage(inner, opts(sleep));
    expect((await s.get('k')).toString()).toBe('data:k');
    expect(inner.calls).toBe(3);
    expect(waits.length).toBe(2);
  });

  it.each([
    ['put', (s: Storage) => s.put('k', Buffer.from('x'))],
    ['has', (s: Storage) => s.has('k')],
    ['delete', (s: Storage) => s.delete('k')],
  ])('retries %s through a transient failure', async (_op, call) => {
    const { sleep } = recordingSleep();
    const inner = new ScriptedStorage([new TransientStorageError('reset')]);
    await call(new RetryingStorage(inner, opts(sleep)));
    expect(inner.calls).toBe(2);
  });

  it('throws the last error once attempts are used up', async () => {
    const { sleep } = recordingSleep();
    const inner = new ScriptedStorage([1, 2, 3, 4, 5].map((i) => new TransientStorageError(`reset ${i}`)));
    const err = await new RetryingStorage(inner, opts(sleep, 3)).get('k').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientStorageError);
    expect((err as Error).message).toBe('reset 3');
    expect(inner.calls).toBe(3);
  });

  it('passes permanent errors straight through', async () => {
    const { sleep } = recordingSleep();
    const inner = new ScriptedStorage([new NotFoundError('mem://scripted: object k not found')]);
    const err = await new RetryingStorage(inner, opts(sleep)).get('k').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(inner.calls).toBe(1);
  });

  it('restarts a listing that failed part-way and yields each object once', async () => {
    const { sleep } = recordingSleep();
    const objects = ['chunks/a', 'chunks/b', 'chunks/c', 'chunks/d', 'manifests/m'].map((key, i) => ({ key, size: i }));
    // First attempt fails after 2 objects, second after 3, third completes.
    const inner = new ScriptedStorage([], objects, [2, 3]);
    const got: StoredObject[] = [];
    for await (const o of new RetryingStorage(inner, opts(sleep)).list('chunks/')) got.push(o);
    expect(inner.listCalls).toBe(3);
    expect(got.map((o) => o.key).sort()).toEqual(['chunks/a', 'chunks/b', 'chunks/c', 'chunks/d']);
    expect(got.find((o) => o.key === 'chunks/c')?.size).toBe(2);
  });

  it('gives up on a listing that keeps failing', async () => {
    const { sleep } = recordingSleep();
    const inner = new ScriptedStorage([], [{ key: 'a', size: 1 }, { key: 'b', size: 1 }], [1, 1, 1]);
    const drain = async () => {
      for await (const _ of new RetryingStorage(inner, opts(sleep, 3)).list('')) void _;
    };
    await expect(drain()).rejects.toBeInstanceOf(TransientStorageError);
    expect(inner.listCalls).toBe(3);
  });

  it('passes maxBytes through and does not retry the IntegrityError of an oversized object', async () => {
    const { waits, sleep } = recordingSleep();
    const inner = new ScriptedStorage([new IntegrityError('mem://scripted: object k is 10 bytes, more than the 5 expected', 'k')]);
    const s = new RetryingStorage(inner, opts(sleep));
    await expect(s.get('k', { maxBytes: 5 })).rejects.toBeInstanceOf(IntegrityError);
    expect(inner.gets).toEqual([{ maxBytes: 5 }]);
    expect(waits).toEqual([]);
  });

  it('passes sweepTemporary through, retrying a transient failure; zeros when the inner storage has none', async () => {
    const { sleep } = recordingSleep();
    const inner = new ScriptedStorage([new TransientStorageError('busy')]);
    expect(await new RetryingStorage(inner, opts(sleep)).sweepTemporary(60_000)).toEqual({ removed: 3, bytes: 300 });
    expect(inner.sweeps).toBe(2);
    const bare: Storage = { url: 'mem://bare', get: async () => Buffer.alloc(0), getRange: async () => Buffer.alloc(0), put: async () => {}, has: async () => false, delete: async () => {}, list: async function* () {} };
    expect(await new RetryingStorage(bare, opts(sleep)).sweepTemporary(0)).toEqual({ removed: 0, bytes: 0 });
  });
});
