// s3-prefix driver against a real S3-compatible server (s3rver on loopback),
// through the real backup engine and a file:// vault.
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { createS3PrefixDriver, planPartitions, backupPartition } from '../../functions/components/s3-prefix.ts';
import { BackupWriter } from '../../functions/core/writer.ts';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.ts';
import { makeHarness, type Harness } from '../helpers/driver-harness.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function put(c: S3Client, bucket: string, key: string, body: Buffer) {
  await c.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }));
}

async function getBytes(c: S3Client, bucket: string, key: string): Promise<Buffer> {
  const r = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

async function listKeys(c: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const r = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of r.Contents ?? []) out.push(o.Key!);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out.sort();
}

/** Counts GetObject requests per key sent through a client. */
function countGets(c: S3Client): Map<string, number> {
  const gets = new Map<string, number>();
  c.middlewareStack.add((next, context) => async (args) => {
    if (context.commandName === 'GetObjectCommand') {
      const key = (args.input as { Key: string }).Key;
      gets.set(key, (gets.get(key) ?? 0) + 1);
    }
    return next(args);
  }, { step: 'initialize', name: 'countGets' });
  return gets;
}

describe('s3-prefix driver against s3rver', () => {
  let server: S3rverHandle;
  let admin: S3Client;
  let source: S3Client;
  let gets: Map<string, number>;
  let h: Harness;
  const original: Record<string, Buffer> = {
    'checkpoints/step-100.pt': randomBytes(300_000),
    'checkpoints/step-200.pt': randomBytes(200_000),
    'weights/model.safetensors': randomBytes(700_000),
    'weights/tokenizer.json': Buffer.from('{"vocab":{"a":1,"b":2}}'.repeat(500)),
    'logs/2026-01-01.log.gz': randomBytes(50_000),
    'empty.txt': Buffer.alloc(0),
    'unicode/naïve café ✓.txt': Buffer.from('names are kept exactly'),
  };

  beforeAll(async () => {
    server = await startS3rver();
    admin = server.client();
    source = server.client();
    gets = countGets(source);
    for (const [k, v] of Object.entries(original)) await put(admin, server.bucket, `models/${k}`, v);
    await put(admin, server.bucket, 'models-old/not-mine.bin', Buffer.from('outside the prefix'));
    const driver = createS3PrefixDriver({ clientFor: (o) => (o.endpoint === 'http://restore-target' ? admin : source) });
    h = await makeHarness(driver, 'model-weights', {
      bucket: server.bucket, prefix: 'models', endpoint: server.endpoint, maxObjectsPerPartition: 3,
    });
  });
  afterAll(async () => {
    await server?.close();
    await h?.close();
  });

  it('backs up every object under the prefix and restores them byte-equal into a directory', async () => {
    const out = await h.backup('full');
    const m = await h.manifest(out.backupId);
    expect(m.entries.map((e) => e.path).sort()).toEqual(Object.keys(original).sort());
    expect(m.driver).toMatchObject({ objects: 7, partitions: 3 });
    expect(out.stats.bytesRead).toBe(Object.values(original).reduce((a, b) => a + b.length, 0));
    for (const k of Object.keys(original)) expect(gets.get(`models/${k}`)).toBe(1);

    const r = await h.restore(out.backupId);
    expect(r.validation.ok).toBe(true);
    for (const [k, v] of Object.entries(original)) {
      expect(sha(await fs.readFile(path.join(r.location, k)))).toBe(sha(v));
    }
  });

  it('second backup reuses unchanged objects without reading them, re-reads changed ones, drops deleted ones', async () => {
    gets.clear();
    const changed = randomBytes(200_000);
    const added = Buffer.from('a new checkpoint');
    await put(admin, server.bucket, 'models/checkpoints/step-200.pt', changed);
    await put(admin, server.bucket, 'models/checkpoints/step-300.pt', added);
    await admin.send(new DeleteObjectCommand({ Bucket: server.bucket, Key: 'models/logs/2026-01-01.log.gz' }));

    const out = await h.backup('incremental');
    const m = await h.manifest(out.backupId);
    expect([...gets.keys()].sort()).toEqual(['models/checkpoints/step-200.pt', 'models/checkpoints/step-300.pt']);
    expect(out.stats.bytesRead).toBe(changed.length + added.length);
    expect(m.driver).toMatchObject({ objects: 7, unchanged: 5 });
    const paths = m.entries.map((e) => e.path);
    expect(paths).not.toContain('logs/2026-01-01.log.gz');
    expect(paths).toContain('checkpoints/step-300.pt');
    expect(m.entries.find((e) => e.path === 'checkpoints/step-200.pt')!.sha256).toBe(sha(changed));

    // A full backup reads everything again.
    gets.clear();
    await h.backup('full');
    expect(gets.size).toBe(7);

    // Restore into another bucket prefix on the server; every object byte-equal, nothing else there.
    const r = await h.restore(out.backupId, { bucket: server.bucket, prefix: 'restored/models', endpoint: 'http://restore-target' });
    expect(r.validation.ok).toBe(true);
    expect(r.location).toBe(`s3://${server.bucket}/restored/models/`);
    const expected = { ...original, 'checkpoints/step-200.pt': changed, 'checkpoints/step-300.pt': added } as Record<string, Buffer>;
    delete expected['logs/2026-01-01.log.gz'];
    expect(await listKeys(admin, server.bucket, 'restored/models/')).toEqual(Object.keys(expected).map((k) => `restored/models/${k}`).sort());
    for (const [k, v] of Object.entries(expected)) expect(sha(await getBytes(admin, server.bucket, `restored/models/${k}`))).toBe(sha(v));
  });

  it('validation fails when a restored object is altered or missing', async () => {
    const out = await h.backup('incremental');
    const r = await h.restore(out.backupId);
    await fs.writeFile(path.join(r.location, 'weights/tokenizer.json'), 'tampered');
    await fs.rm(path.join(r.location, 'empty.txt'));
    const driver = createS3PrefixDriver({ clientFor: () => source });
    const m = await h.manifest(out.backupId);
    const v = await driver.validate({
      component: 'model-weights', settings: h.cfg.components['model-weights'] as never, manifest: m, vault: h.vault,
      target: { dir: r.location }, location: r.location, resolve: (p) => p, log: { info() {}, warn() {}, error() {} },
    });
    expect(v.ok).toBe(false);
    expect(JSON.stringify(v.checks)).toContain('weights/tokenizer.json: size 8');
    expect(JSON.stringify(v.checks)).toContain('empty.txt: missing');
  });

  it('partitions cover every key exactly once, and a key added after planning lands in the open last range', async () => {
    const prefix = 'part-test/';
    const keys = Array.from({ length: 23 }, (_, i) => `${prefix}k${String(i).padStart(3, '0')}`);
    for (const k of keys) await put(admin, server.bucket, k, Buffer.from(k));
    const parts = await planPartitions({ bucket: server.bucket, prefix }, source, { maxObjectsPerPartition: 5 });
    expect(parts.map((p) => p.objects)).toEqual([5, 5, 5, 5, 3]);
    expect(parts[0].startAfter).toBeUndefined();
    expect(parts.at(-1)!.endKey).toBeUndefined();
    for (let i = 1; i < parts.length; i++) expect(parts[i].startAfter).toBe(parts[i - 1].endKey);

    await put(admin, server.bucket, `${prefix}zz-late`, Buffer.from('late'));
    const writer = new BackupWriter(h.vault, new Set());
    const seen: string[] = [];
    for (const p of parts) {
      const r = await backupPartition({ bucket: server.bucket, prefix }, source, p, { component: 'x', type: 'full', writer, log: { info() {}, warn() {}, error() {} } });
      seen.push(...r.entries.map((e) => e.path));
    }
    expect(seen.sort()).toEqual([...keys.map((k) => k.slice(prefix.length)), 'zz-late'].sort());
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('names the bucket when it does not exist', async () => {
    const driver = createS3PrefixDriver({ clientFor: () => source });
    await expect(planPartitions({ bucket: 'no-such-bucket', prefix: '' }, source, { maxObjectsPerPartition: 10 }))
      .rejects.toThrow(/no-such-bucket.*does not exist/);
    expect(driver.kind).toBe('s3-prefix');
  });

  it('restores a large object with a multipart upload', async () => {
    const big = randomBytes(6 * 1024 * 1024 + 123);
    await put(admin, server.bucket, 'big/weights.bin', big);
    const driver = createS3PrefixDriver({ clientFor: () => source });
    const h2 = await makeHarness(driver, 'big', { bucket: server.bucket, prefix: 'big/', endpoint: server.endpoint });
    try {
      const out = await h2.backup('full');
      const r = await h2.restore(out.backupId, { bucket: server.bucket, prefix: 'big-restored', endpoint: server.endpoint, multipartThreshold: 1024 * 1024, partSize: 5 * 1024 * 1024 });
      expect(r.validation.ok).toBe(true);
      expect(sha(await getBytes(admin, server.bucket, 'big-restored/weights.bin'))).toBe(sha(big));
    } finally {
      await h2.close();
    }
  });
});
