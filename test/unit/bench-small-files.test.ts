// The small-files benchmark's pieces (bench/small-files.ts, bench/s3-counter.ts):
// the tree is the same for the same seed (so every tool backs up the same
// bytes), the change touches 1% and adds 1,000 files, and S3 requests are
// classified by operation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseCount, smallChange, smallTree, treeDigest } from '../../bench/small-files.ts';
import { requestType } from '../../bench/s3-counter.ts';

describe('small-files benchmark', () => {
  let dir: string;
  beforeAll(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'memvault-bench-small-')); });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  it('generates the same tree for the same seed, another for another seed; the change rewrites 1% and adds 1,000 files', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((x) => path.join(dir, x));
    const ta = await smallTree(a, 1500, 11);
    await smallTree(b, 1500, 11);
    await smallTree(c, 1500, 12);
    const [da, db, dc] = await Promise.all([a, b, c].map(treeDigest));
    expect(da.files).toBe(1500);
    expect(ta.bytes / 1500).toBeGreaterThan(1024);
    expect(ta.bytes / 1500).toBeLessThan(4096);
    expect(db.digest).toBe(da.digest);
    expect(dc.digest).not.toBe(da.digest);
    const ch = await smallChange(a, 1500, 11);
    expect(ch).toMatchObject({ touched: 15, added: 1000 });
    expect((await treeDigest(a)).files).toBe(2500);
    expect((await readdir(path.join(a, 'new'))).length).toBe(1000);
  });

  it('parses file counts', () => {
    expect([parseCount('50k'), parseCount('200k'), parseCount('1M'), parseCount('1500')]).toEqual([50_000, 200_000, 1_000_000, 1500]);
    expect(() => parseCount('lots')).toThrow(/--files/);
  });

  it('classifies S3 requests (path-style) by operation', () => {
    const t = (method: string, url: string) => requestType({ method, url } as IncomingMessage);
    expect(t('PUT', '/bench/mv/packs/ab/abcd')).toBe('PUT');
    expect(t('GET', '/bench/mv/packs/ab/abcd')).toBe('GET');
    expect(t('HEAD', '/bench/restic/config')).toBe('HEAD');
    expect(t('GET', '/bench?list-type=2&prefix=mv%2Findex%2F')).toBe('LIST');
    expect(t('GET', '/bench/?location')).toBe('OTHER');
    expect(t('DELETE', '/bench/mv/locks/x')).toBe('DELETE');
    expect(t('POST', '/bench?delete')).toBe('DELETE');
    expect(t('PUT', '/bench')).toBe('OTHER');
  });
});
