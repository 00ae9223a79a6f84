// The behaviour every Storage backend owes the vault (functions/core/ports.ts),
// as one suite each backend runs against a real server or directory:
// file://, s3:// (s3rver) and azblob:// (Azurite). A backend passes it or is
// not a vault backend.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IntegrityError, NotFoundError, PermanentError } from '../../functions/core/errors.ts';
import type { Storage } from '../../functions/core/ports.ts';

export interface ContractBackend {
  /** A storage for the vault at `prefix` (a fresh one per call; same prefix, same objects). */
  make(prefix: string, o?: { pageSize?: number }): Storage;
  /** How many objects list() must page through to cross at least one page boundary. */
  pagedCount: number;
  /** Whether make() honours pageSize (else pagedCount alone crosses the backend's page size). */
  pageSize?: number;
}

export async function listKeys(s: Storage, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of s.list(prefix)) keys.push(o.key);
  return keys.sort();
}

/** Runs fn over items with at most `limit` in flight. */
export async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export function storageContract(name: string, backend: () => ContractBackend): void {
  describe(`Storage contract: ${name}`, () => {
    const vault = () => backend().make('vaults/primary');

    it('round-trips binary data byte for byte, and parts as their concatenation', async () => {
      const s = vault();
      const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const data = Buffer.concat([allBytes, randomBytes(300_000), allBytes]);
      await s.put('chunks/ab/abcdef', data);
      expect((await s.get('chunks/ab/abcdef')).equals(data)).toBe(true);
      await s.put('chunks/ab/parts', [data.subarray(0, 10), new Uint8Array(0), data.subarray(10)]);
      expect((await s.get('chunks/ab/parts')).equals(data)).toBe(true);
      await s.put('empty', new Uint8Array(0));
      expect((await s.get('empty')).length).toBe(0);
    });

    it('getRange() reads exactly the range; a range past the end is damage naming the key', async () => {
      const s = vault();
      const data = randomBytes(1_000_000);
      await s.put('packs/ab/range', data);
      expect((await s.getRange('packs/ab/range', 0, 10)).equals(data.subarray(0, 10))).toBe(true);
      expect((await s.getRange('packs/ab/range', 123_456, 500_000)).equals(data.subarray(123_456, 623_456))).toBe(true);
      expect((await s.getRange('packs/ab/range', 999_990, 10)).equals(data.subarray(999_990))).toBe(true);
      await expect(s.getRange('packs/ab/range', 999_990, 20)).rejects.toMatchObject({ name: 'IntegrityError', objectKey: 'packs/ab/range' });
      await expect(s.getRange('packs/ab/range', 2_000_000, 5)).rejects.toMatchObject({ name: 'IntegrityError', objectKey: 'packs/ab/range' });
      await expect(s.getRange('packs/ab/missing', 0, 5)).rejects.toMatchObject({ name: 'NotFoundError' });
    });

    it('put overwrites an object', async () => {
      const s = vault();
      await s.put('config', Buffer.from('v1'));
      await s.put('config', Buffer.from('version 2'));
      expect((await s.get('config')).toString()).toBe('version 2');
    });

    it('has() is true for a stored object and false for a missing one', async () => {
      const s = vault();
      await s.put('manifests/db/2024-01-01', Buffer.from('m'));
      expect(await s.has('manifests/db/2024-01-01')).toBe(true);
      expect(await s.has('manifests/db/1999-01-01')).toBe(false);
      expect(await s.has('manifests/db')).toBe(false);
    });

    it('get() of a missing key throws NotFoundError naming the key and the vault', async () => {
      const s = vault();
      const err = await s.get('chunks/zz/missing').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect((err as Error).message).toContain('chunks/zz/missing');
      expect((err as Error).message).toContain(s.url);
    });

    it('get() with maxBytes refuses a larger object (IntegrityError naming key, size and limit) and reads one within it', async () => {
      const s = vault();
      await s.put('chunks/ee/big', randomBytes(5000));
      const err = await s.get('chunks/ee/big', { maxBytes: 4999 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as IntegrityError).objectKey).toBe('chunks/ee/big');
      expect((err as Error).message).toBe(`${s.url}: object chunks/ee/big is 5000 bytes, more than the 4999 expected; refusing to read it (damaged or planted object)`);
      expect((await s.get('chunks/ee/big', { maxBytes: 5000 })).length).toBe(5000);
    });

    it('list() pages through more than one page and returns exactly the keys put, with sizes and times', async () => {
      const b = backend();
      const prefix = `vaults/paged-${randomBytes(3).toString('hex')}`;
      const s = b.make(prefix, { pageSize: b.pageSize });
      const keys = Array.from({ length: b.pagedCount }, (_, i) => `chunks/${String(i).padStart(5, '0')}`);
      await mapLimit(keys, 16, (k) => s.put(k, Buffer.from(k)));
      await s.put('manifests/one', Buffer.from('not a chunk'));
      const seen: { key: string; size: number; modified?: Date }[] = [];
      for await (const o of s.list('chunks/')) seen.push(o);
      expect(seen.length).toBe(keys.length);
      expect(seen.map((o) => o.key).sort()).toEqual(keys);
      expect(seen.every((o) => o.size === Buffer.byteLength(o.key))).toBe(true);
      expect(seen.every((o) => o.modified instanceof Date)).toBe(true);
      expect(await listKeys(s, 'manifests/')).toEqual(['manifests/one']);
      expect((await listKeys(s, '')).length).toBe(keys.length + 1);
      expect(await listKeys(s, 'chunks/0000')).toEqual(keys.filter((k) => k.startsWith('chunks/0000')));
    });

    it('delete() removes an object and is idempotent', async () => {
      const s = vault();
      await s.put('locks/backup', Buffer.from('lock'));
      await s.delete('locks/backup');
      expect(await s.has('locks/backup')).toBe(false);
      await expect(s.get('locks/backup')).rejects.toBeInstanceOf(NotFoundError);
      await expect(s.delete('locks/backup')).resolves.toBeUndefined();
      await expect(s.delete('locks/never-existed')).resolves.toBeUndefined();
    });

    it('keeps vaults with different prefixes apart, even when one prefix starts with the other', async () => {
      const b = backend();
      const a = b.make('iso/vault');
      const c = b.make('iso/vault2');
      await a.put('k1', Buffer.from('a'));
      await c.put('k2', Buffer.from('b'));
      expect(await listKeys(a, '')).toEqual(['k1']);
      expect(await listKeys(c, '')).toEqual(['k2']);
      expect(await listKeys(a, 'k')).toEqual(['k1']);
      expect(await a.has('k2')).toBe(false);
      await expect(c.get('k1')).rejects.toBeInstanceOf(NotFoundError);
    });

    it('rejects keys that would escape or blur the vault prefix', async () => {
      const s = vault();
      for (const bad of ['', '/abs', '../other/k', 'a//b', 'a/./b']) {
        await expect(s.put(bad, Buffer.from('x')), bad).rejects.toBeInstanceOf(PermanentError);
      }
    });

    it('sweepTemporary never removes a finished object', async () => {
      const s = vault();
      await s.put('chunks/ab/obj', Buffer.from('finished'));
      const r = await s.sweepTemporary?.(0);
      if (r) expect(r.removed).toBeGreaterThanOrEqual(0);
      expect((await s.get('chunks/ab/obj')).toString()).toBe('finished');
    });
  });
}
