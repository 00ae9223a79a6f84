// The fault suite's storage wrapper itself: faults land on the chosen
// operations and key prefixes at the chosen rate, the same seed gives the same
// faults, a put's fault is either "failed before writing" or "written but the
// reply was lost", read corruption never touches the stored object, and what
// it injected is counted. Extra arguments and methods pass through.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FileStorage } from '../../functions/adapters/storage/file.ts';
import { RetryingStorage } from '../../functions/adapters/storage/retrying.ts';
import { PermanentError, ThrottledError, TransientStorageError, isRetryable } from '../../functions/core/errors.ts';
import type { Storage, StoredObject } from '../../functions/core/ports.ts';
import { tempDir } from '../helpers/fixture.ts';
import { FaultyStorage, FAULT_KINDS, type FaultRule } from '../helpers/faulty-storage.ts';
import { SeededRandom } from '../helpers/seeded-random.ts';

async function store(): Promise<{ dir: string; inner: FileStorage }> {
  const dir = await tempDir('memvault-faulty-');
  return { dir, inner: new FileStorage(dir) };
}

async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: Error }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error: error as Error };
  }
}

async function collect(it: AsyncIterable<StoredObject>): Promise<string[]> {
  const out: string[] = [];
  for await (const o of it) out.push(o.key);
  return out.sort();
}

describe('FaultyStorage', () => {
  it('faults only the chosen operations and key prefixes, at the chosen rate', async () => {
    const { inner } = await store();
    await inner.put('chunks/ab/x', Buffer.from('chunk'));
    await inner.put('manifests/c/m', Buffer.from('manifest'));
    const s = new FaultyStorage(inner, { seed: 7, rules: [{ ops: ['get'], prefixes: ['chunks/'], rate: 1, kinds: { transient: 1 } }] });
    await expect(s.get('chunks/ab/x')).rejects.toBeInstanceOf(TransientStorageError);
    expect((await s.get('manifests/c/m')).toString()).toBe('manifest');
    await s.put('chunks/ab/y', Buffer.from('y'));
    expect(await s.has('chunks/ab/x')).toBe(true);
    expect(s.stats.injected.transient).toBe(1);
    expect(s.stats.calls).toEqual({ get: 2, put: 1, list: 0, has: 1, delete: 0 });

    const r = new FaultyStorage(inner, { seed: 11, rules: [{ rate: 0.4, kinds: { transient: 1 } }] });
    let failed = 0;
    for (let i = 0; i < 1000; i++) if (!(await settle(r.has(`locks/l${i}`))).ok) failed++;
    expect(failed).toBeGreaterThan(350);
    expect(failed).toBeLessThan(450);
    expect(r.stats.injected.transient).toBe(failed);
    expect(r.log).toHaveLength(failed);
  });

  it('the same seed injects the same faults; another seed others', async () => {
    const { inner } = await store();
    for (let i = 0; i < 20; i++) await inner.put(`chunks/0${i % 10}/c${i}`, Buffer.alloc(64, i));
    const rules: FaultRule[] = [{ rate: 0.5, kinds: { transient: 2, throttle: 1, permanent: 1, delay: 1, truncate: 1, corrupt: 1 } }];
    const run = async (seed: number) => {
      const s = new FaultyStorage(inner, { seed, rules, delayMs: [0, 1] });
      const out: string[] = [];
      for (let i = 0; i < 20; i++) {
        const r = await settle(s.get(`chunks/0${i % 10}/c${i}`));
        out.push(r.ok ? r.value.toString('hex') : `${r.error.name}:${r.error.message}`);
      }
      return { out, log: s.log.map((f) => `${f.op} ${f.key} ${f.kind} ${f.detail}`) };
    };
    const a = await run(1234);
    const b = await run(1234);
    const c = await run(4321);
    expect(b).toEqual(a);
    expect(a.log.length).toBeGreaterThan(3);
    expect(c.log).not.toEqual(a.log);
  });

  it('a put fails either before writing or after (the reply lost); a retry then finds or rewrites the object', async () => {
    const { inner } = await store();
    const before = new FaultyStorage(inner, { seed: 1, rules: [{ ops: ['put'], rate: 1, kinds: { transient: 1 } }] });
    await expect(before.put('manifests/a/1', Buffer.from('one'))).rejects.toBeInstanceOf(TransientStorageError);
    expect(await inner.has('manifests/a/1')).toBe(false);

    const lost = new FaultyStorage(inner, { seed: 1, rules: [{ ops: ['put', 'delete'], rate: 1, kinds: { 'lost-reply': 1 } }] });
    const err = (await settle(lost.put('manifests/a/2', [Buffer.from('tw'), Buffer.from('o')]))) as { ok: false; error: Error };
    expect(err.error).toBeInstanceOf(TransientStorageError);
    expect(isRetryable(err.error)).toBe(true);
    expect((await inner.get('manifests/a/2')).toString()).toBe('two');
    await expect(lost.delete('manifests/a/2')).rejects.toBeInstanceOf(TransientStorageError);
    expect(await inner.has('manifests/a/2')).toBe(false);
    expect(lost.stats.byOp.put['lost-reply']).toBe(1);
    expect(lost.stats.byOp.delete['lost-reply']).toBe(1);

    // Behind the real RetryingStorage, both kinds of put end with the object stored once.
    const flaky = new FaultyStorage(inner, { seed: 3, rules: [{ ops: ['put'], rate: 0.6, kinds: { transient: 1, 'lost-reply': 1, throttle: 1 } }] });
    const retrying = new RetryingStorage(flaky, { attempts: 30, baseMs: 0, maxMs: 0 });
    for (let i = 0; i < 30; i++) await retrying.put(`chunks/aa/k${i}`, Buffer.from(`v${i}`));
    for (let i = 0; i < 30; i++) expect((await inner.get(`chunks/aa/k${i}`)).toString()).toBe(`v${i}`);
    expect(flaky.stats.injected['lost-reply']).toBeGreaterThan(0);
    expect(flaky.stats.injected.transient).toBeGreaterThan(0);
    expect(flaky.stats.injected.throttle).toBeGreaterThan(0);
  });

  it('corrupts and truncates what a read returns, never the stored object', async () => {
    const { inner } = await store();
    const data = new SeededRandom(5).bytes(4096);
    await inner.put('chunks/cd/obj', data);
    const s = new FaultyStorage(inner, { seed: 9, rules: [{ ops: ['get'], rate: 1, kinds: { corrupt: 1, truncate: 1 } }] });
    for (let i = 0; i < 20; i++) {
      const got = await s.get('chunks/cd/obj');
      const f = s.log.at(-1)!;
      if (f.kind === 'corrupt') {
        expect(got.length).toBe(data.length);
        let bits = 0;
        for (let j = 0; j < got.length; j++) for (let x = got[j] ^ data[j]; x; x &= x - 1) bits++;
        expect(bits).toBe(1);
      } else {
        expect(f.kind).toBe('truncate');
        expect(got.length).toBeLessThan(data.length);
        expect(got.equals(data.subarray(0, got.length))).toBe(true);
      }
      expect((await inner.get('chunks/cd/obj')).equals(data)).toBe(true);
    }
    expect(s.stats.injected.corrupt + s.stats.injected.truncate).toBe(20);
    expect(s.stats.injected.corrupt).toBeGreaterThan(0);
    expect(s.stats.injected.truncate).toBeGreaterThan(0);
    expect([...s.badReads]).toEqual(['chunks/cd/obj']);
  });

  it('damage at rest: a put may store a flipped bit or a prefix and report success', async () => {
    const { inner } = await store();
    const s = new FaultyStorage(inner, { seed: 2, rules: [{ ops: ['put'], prefixes: ['chunks/'], rate: 1, kinds: { corrupt: 1 } }] });
    const data = Buffer.alloc(1000, 7);
    await s.put('chunks/ee/a', [data.subarray(0, 10), data.subarray(10)]);
    const stored = await inner.get('chunks/ee/a');
    expect(stored.length).toBe(1000);
    expect(stored.equals(data)).toBe(false);
    expect(data.equals(Buffer.alloc(1000, 7))).toBe(true); // the caller's buffer is untouched
    expect([...s.damagedAtRest]).toEqual(['chunks/ee/a']);
    const t = new FaultyStorage(inner, { seed: 2, rules: [{ ops: ['put'], rate: 1, kinds: { truncate: 1 } }] });
    await t.put('chunks/ee/b', data);
    expect((await inner.get('chunks/ee/b')).length).toBeLessThan(1000);
    expect(t.stats.injected.truncate).toBe(1);
  });

  it('a listing breaks off part-way; RetryingStorage restarts it and yields each object once', async () => {
    const { inner } = await store();
    for (let i = 0; i < 40; i++) await inner.put(`chunks/${String(i % 16).padStart(2, '0')}/c${i}`, Buffer.from('x'));
    const s = new FaultyStorage(inner, { seed: 4, rules: [{ ops: ['list'], rate: 1, kinds: { truncate: 1 } }] });
    await expect(collect(s.list('chunks/'))).rejects.toBeInstanceOf(TransientStorageError);
    const flaky = new FaultyStorage(inner, { seed: 4, rules: [{ ops: ['list'], rate: 0.5, kinds: { truncate: 1, transient: 1 } }] });
    const keys = await collect(new RetryingStorage(flaky, { attempts: 20, baseMs: 0, maxMs: 0 }).list('chunks/'));
    expect(keys).toEqual(await collect(inner.list('chunks/')));
    expect(keys).toHaveLength(40);
  });

  it('permanent faults are not retried; throttling is', async () => {
    const { inner } = await store();
    await inner.put('vault.json', Buffer.from('{}'));
    const p = new FaultyStorage(inner, { seed: 1, rules: [{ prefixes: ['vault.json'], rate: 1, kinds: { permanent: 1 } }] });
    const r = new RetryingStorage(p, { attempts: 5, baseMs: 0, maxMs: 0 });
    await expect(r.get('vault.json')).rejects.toBeInstanceOf(PermanentError);
    expect(p.stats.calls.get).toBe(1);
    const t = new FaultyStorage(inner, { seed: 1, rules: [{ rate: 1, kinds: { throttle: 1 } }] });
    const e = await settle(new RetryingStorage(t, { attempts: 3, baseMs: 0, maxMs: 0 }).get('vault.json'));
    expect(!e.ok && e.error).toBeInstanceOf(ThrottledError);
    expect(t.stats.calls.get).toBe(3);
  });

  it('hides localRoot unless asked, and passes extra arguments and other methods through', async () => {
    const { dir, inner } = await store();
    expect(new FaultyStorage(inner, { seed: 1, rules: [] }).localRoot).toBeUndefined();
    expect(new FaultyStorage(inner, { seed: 1, rules: [] }, ).url).toBe(`file://${dir}`);
    expect(new FaultyStorage(inner, { seed: 1, rules: [], exposeLocalRoot: true }).localRoot).toBe(dir);

    const seen: unknown[] = [];
    class Extended extends FileStorage {
      override async get(key: string, ...rest: unknown[]): Promise<Buffer> {
        seen.push(rest[0]);
        return super.get(key);
      }
      override async sweepTemporary(olderThanMs: number): Promise<{ removed: number; bytes: number }> {
        seen.push(`sweep ${olderThanMs}`);
        return { removed: 3, bytes: 30 };
      }
    }
    const ext = new Extended(dir);
    await ext.put('vault.json', Buffer.from('{}'));
    const s = new FaultyStorage(ext, { seed: 1, rules: [] }) as FaultyStorage & { sweepTemporary(ms: number): Promise<{ removed: number; bytes: number }> };
    await (s.get as (k: string, o: unknown) => Promise<Buffer>)('vault.json', { maxBytes: 10 });
    expect(await s.sweepTemporary(60_000)).toEqual({ removed: 3, bytes: 30 });
    expect(seen).toEqual([{ maxBytes: 10 }, 'sweep 60000']);
    const asStorage: Storage = s; // still a Storage
    expect(asStorage.url).toBe(ext.url);
  });

  it('counts every fault it injects, by kind and by operation', async () => {
    const { inner } = await store();
    for (let i = 0; i < 10; i++) await inner.put(`manifests/c/m${i}`, Buffer.alloc(32, i));
    const s = new FaultyStorage(inner, { seed: 99, delayMs: [0, 1], rules: [{ rate: 0.7, kinds: Object.fromEntries(FAULT_KINDS.map((k) => [k, 1])) }] });
    for (let i = 0; i < 200; i++) {
      const k = `manifests/c/m${i % 10}`;
      const op = i % 5;
      if (op === 0) await settle(s.get(k));
      else if (op === 1) await settle(s.put(`manifests/d/n${i}`, Buffer.from('x')));
      else if (op === 2) await settle(s.has(k));
      else if (op === 3) await settle(s.delete(`manifests/d/n${i - 2}`));
      else await settle(collect(s.list('manifests/c/')));
    }
    const total = FAULT_KINDS.reduce((a, k) => a + s.stats.injected[k], 0);
    expect(total).toBe(s.log.length);
    expect(total).toBe(s.totalInjected);
    for (const k of FAULT_KINDS) expect(s.log.filter((f) => f.kind === k)).toHaveLength(s.stats.injected[k]);
    for (const k of FAULT_KINDS) expect(s.stats.injected[k]).toBeGreaterThan(0);
    expect(s.log.some((f) => f.op === 'has' && (f.kind === 'corrupt' || f.kind === 'lost-reply'))).toBe(false);
    const stored = await fs.readdir(path.join(inner.root, 'manifests', 'c'));
    expect(stored).toHaveLength(10); // reads never changed what is stored
  });
});
