// S3Storage against a real S3-compatible server (s3rver on loopback), plus
// error-mapping tests with a mocked S3Client for the failures s3rver cannot
// produce on demand (throttling, 5xx, access denied, resets).
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mockClient, type AwsClientStub } from 'aws-sdk-client-mock';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  type GetObjectCommandOutput,
} from '@aws-sdk/client-s3';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { S3Storage, createS3Client } from '../../functions/adapters/storage/s3.ts';
import { RetryingStorage } from '../../functions/adapters/storage/retrying.ts';
import { LazyS3Storage } from '../../functions/adapters/storage/s3-location.ts';
import { IntegrityError, NotFoundError, PermanentError, TransientStorageError } from '../../functions/core/errors.ts';
import type { Storage } from '../../functions/core/ports.ts';
import { legacyOpenSslAvailable, startS3rver, type S3rverHandle } from '../helpers/s3rver.ts';

async function listKeys(s: Storage, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of s.list(prefix)) keys.push(o.key);
  return keys.sort();
}

/** Runs fn over items with at most `limit` in flight. */
async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

describe('S3Storage against s3rver', () => {
  let server: S3rverHandle;
  let client: S3Client;
  let vault: S3Storage;

  beforeAll(async () => {
    server = await startS3rver();
    client = server.client();
    vault = new S3Storage({ bucket: server.bucket, prefix: 'vaults/primary', client });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('round-trips binary data byte for byte', async () => {
    const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const data = Buffer.concat([allBytes, randomBytes(300_000), allBytes]);
    await vault.put('chunks/ab/abcdef', data);
    const back = await vault.get('chunks/ab/abcdef');
    expect(back.length).toBe(data.length);
    expect(back.equals(data)).toBe(true);

    await vault.put('empty', new Uint8Array(0));
    expect((await vault.get('empty')).length).toBe(0);
  });

  it('getRange: one ranged GET; a range past the end is damage naming the object, a missing object NotFoundError', async () => {
    const data = randomBytes(100_000);
    await vault.put('packs/ab/ranged', data);
    expect((await vault.getRange('packs/ab/ranged', 12_345, 50_000)).equals(data.subarray(12_345, 62_345))).toBe(true);
    expect((await vault.getRange('packs/ab/ranged', 99_996, 4)).equals(data.subarray(99_996))).toBe(true);
    for (const [offset, length] of [[99_990, 20], [100_000, 10]]) {
      const err = await vault.getRange('packs/ab/ranged', offset, length).catch((e: unknown) => e);
      expect(err, `${offset}+${length}`).toBeInstanceOf(IntegrityError);
      expect((err as IntegrityError).objectKey).toBe('packs/ab/ranged');
    }
    await expect(vault.getRange('packs/ab/none', 0, 10)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('overwrites an object with put', async () => {
    await vault.put('config', Buffer.from('v1'));
    await vault.put('config', Buffer.from('version 2'));
    expect((await vault.get('config')).toString()).toBe('version 2');
  });

  it('has() is true for a stored object and false for a missing one', async () => {
    await vault.put('manifests/db/2024-01-01', Buffer.from('m'));
    expect(await vault.has('manifests/db/2024-01-01')).toBe(true);
    expect(await vault.has('manifests/db/1999-01-01')).toBe(false);
  });

  it('get() of a missing key throws NotFoundError naming the key and the vault', async () => {
    const err = await vault.get('chunks/zz/missing').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toContain('chunks/zz/missing');
    expect((err as Error).message).toContain(`s3://${server.bucket}/vaults/primary`);
  });

  it('list() pages through more than 1000 objects and returns exactly the keys put', async () => {
    // s3rver encrypts continuation tokens with DES (OpenSSL legacy provider).
    expect(legacyOpenSslAvailable(), 'run vitest with node --openssl-legacy-provider (see vitest.config.ts)').toBe(true);
    const lister = new S3Storage({ bucket: server.bucket, prefix: 'vaults/paged', client });
    const keys = Array.from({ length: 1100 }, (_, i) => `chunks/${String(i).padStart(5, '0')}`);
    await mapLimit(keys, 32, (k) => lister.put(k, Buffer.from(k)));
    await lister.put('manifests/one', Buffer.from('not a chunk'));

    const seen: { key: string; size: number; modified?: Date }[] = [];
    for await (const o of lister.list('chunks/')) seen.push(o);
    expect(seen.length).toBe(1100);
    expect(seen.map((o) => o.key).sort()).toEqual(keys);
    expect(seen.every((o) => o.size === Buffer.byteLength(o.key))).toBe(true);
    expect(seen.every((o) => o.modified instanceof Date)).toBe(true);

    expect(await listKeys(lister, 'manifests/')).toEqual(['manifests/one']);
    expect((await listKeys(lister, '')).length).toBe(1101);
  });

  it('delete() removes an object and is idempotent', async () => {
    await vault.put('locks/backup', Buffer.from('lock'));
    await vault.delete('locks/backup');
    expect(await vault.has('locks/backup')).toBe(false);
    await expect(vault.get('locks/backup')).rejects.toBeInstanceOf(NotFoundError);
    await expect(vault.delete('locks/backup')).resolves.toBeUndefined();
    await expect(vault.delete('locks/never-existed')).resolves.toBeUndefined();
  });

  it('keeps vaults with different prefixes apart, even when one prefix starts with the other', async () => {
    const a = new S3Storage({ bucket: server.bucket, prefix: 'iso/vault', client });
    const b = new S3Storage({ bucket: server.bucket, prefix: 'iso/vault2', client });
    const nested = new S3Storage({ bucket: server.bucket, prefix: '/iso//vault/', client });
    const root = new S3Storage({ bucket: server.bucket, prefix: '', client });
    await a.put('k1', Buffer.from('a'));
    await b.put('k2', Buffer.from('b'));

    expect(await listKeys(a, '')).toEqual(['k1']);
    expect(await listKeys(b, '')).toEqual(['k2']);
    expect(await listKeys(a, 'k')).toEqual(['k1']);
    expect(await a.has('k2')).toBe(false);
    await expect(b.get('k1')).rejects.toBeInstanceOf(NotFoundError);

    // Keys land at `${prefix}/${key}`, with no double or leading slashes.
    expect(await listKeys(root, 'iso/')).toEqual(['iso/vault/k1', 'iso/vault2/k2']);
    expect(nested.url).toBe(`s3://${server.bucket}/iso/vault`);
    expect((await nested.get('k1')).toString()).toBe('a');
    expect((await root.get('iso/vault2/k2')).toString()).toBe('b');
  });

  /** A vault on its own client (one new connection) that records the socket of each GetObject body. */
  function metered() {
    const c = server.client();
    const sockets: Socket[] = [];
    c.middlewareStack.add((next) => async (args) => {
      const out = await next(args);
      const socket = ((out.response as { body?: IncomingMessage }).body)?.socket;
      if (socket) sockets.push(socket);
      return out;
    }, { step: 'deserialize', name: 'recordBodySocket' });
    return { storage: new S3Storage({ bucket: server.bucket, prefix: 'vaults/primary', client: c }), bytesRead: () => sockets.reduce((n, s) => n + s.bytesRead, 0) };
  }

  it('get with maxBytes refuses an oversized object by its Content-Length without downloading it, naming key, size and limit', async () => {
    const size = 24 * 1024 * 1024;
    await vault.put('chunks/ee/oversized', randomBytes(size));
    // The measure itself: an unbounded get downloads it all.
    const whole = metered();
    expect((await whole.storage.get('chunks/ee/oversized')).length).toBe(size);
    expect(whole.bytesRead()).toBeGreaterThanOrEqual(size);

    const bounded = metered();
    const err = await new RetryingStorage(bounded.storage, { attempts: 5, baseMs: 1, maxMs: 1, sleep: async () => {} })
      .get('chunks/ee/oversized', { maxBytes: 1024 * 1024 }).then(() => 'read it all', (e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).objectKey).toBe('chunks/ee/oversized');
    expect((err as Error).message).toBe(`${vault.url}: object chunks/ee/oversized is ${size} bytes, more than the 1048576 expected; refusing to read it (damaged or planted object)`);
    expect(bounded.bytesRead()).toBeLessThan(size / 4);
    // Within the bound it reads as usual.
    expect((await bounded.storage.get('chunks/ee/oversized', { maxBytes: size })).length).toBe(size);
  });

  it('LazyS3Storage passes maxBytes and sweepTemporary through; S3 has no temporaries to sweep', async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = server.credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = server.credentials.secretAccessKey;
    try {
      const lazy = new RetryingStorage(new LazyS3Storage({ url: `s3://${server.bucket}/vaults/lazy`, endpoint: server.endpoint, region: 'us-east-1' }));
      await lazy.put('chunks/ab/obj', randomBytes(2000));
      await lazy.put('chunks/ab/obj.tmp-0123456789ab', Buffer.from('an object with a temporary-looking name'));
      await expect(lazy.get('chunks/ab/obj', { maxBytes: 1999 })).rejects.toBeInstanceOf(IntegrityError);
      expect((await lazy.get('chunks/ab/obj', { maxBytes: 2000 })).length).toBe(2000);
      expect(await lazy.sweepTemporary(0)).toEqual({ removed: 0, bytes: 0 });
      expect(await listKeys(lazy, 'chunks/')).toEqual(['chunks/ab/obj', 'chunks/ab/obj.tmp-0123456789ab']);
    } finally {
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID; else process.env.AWS_ACCESS_KEY_ID = saved.id;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY; else process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    }
  });

  it('rejects keys that would escape or blur the vault prefix', async () => {
    for (const bad of ['', '/abs', '../other/k', 'a//b', 'a/./b']) {
      await expect(vault.put(bad, Buffer.from('x'))).rejects.toBeInstanceOf(PermanentError);
    }
  });
});

describe('S3Storage error mapping (mocked S3Client)', () => {
  let s3: AwsClientStub<S3Client>;
  const bucket = 'memvault-test';
  const fastRetry = { attempts: 5, baseMs: 1, maxMs: 1, sleep: async () => {} };

  const serviceError = (name: string, httpStatusCode: number, message = name) =>
    new S3ServiceException({ name, $fault: httpStatusCode >= 500 ? 'server' : 'client', $metadata: { httpStatusCode }, message });
  const body = (data: Buffer) => Readable.from([data]) as unknown as GetObjectCommandOutput['Body'];
  const storage = () => new S3Storage({ bucket, prefix: 'vault', client: new S3Client({ region: 'us-east-1' }) });

  beforeAll(() => {
    s3 = mockClient(S3Client);
  });
  beforeEach(() => {
    s3.reset();
  });
  afterAll(() => {
    s3.restore();
  });

  it.each([
    ['SlowDown', 503],
    ['ServiceUnavailable', 503],
    ['Throttling', 400],
    ['ThrottlingException', 400],
    ['RequestLimitExceeded', 400],
    ['InternalError', 500],
    ['BadGateway', 502],
    ['TooManyRequests', 429],
  ])('%s (HTTP %i) becomes TransientStorageError', async (name, code) => {
    s3.on(GetObjectCommand).rejects(serviceError(name, code));
    const err = await storage().get('chunks/x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientStorageError);
    expect((err as Error).name).toBe('TransientStorageError');
    expect((err as Error).message).toContain('chunks/x');
  });

  it.each([
    ['ECONNRESET', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })],
    ['ETIMEDOUT', Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' })],
    ['socket hang up', new Error('socket hang up')],
    ['TimeoutError', Object.assign(new Error('Connection timed out after 1000 ms'), { name: 'TimeoutError' })],
  ])('network failure %s becomes TransientStorageError', async (_label, cause) => {
    s3.on(PutObjectCommand).rejects(cause);
    await expect(storage().put('chunks/x', Buffer.from('x'))).rejects.toBeInstanceOf(TransientStorageError);
  });

  it('RetryingStorage retries a throttled GetObject and then returns the data', async () => {
    s3.on(GetObjectCommand)
      .rejectsOnce(serviceError('SlowDown', 503, 'Please reduce your request rate.'))
      .rejectsOnce(serviceError('SlowDown', 503, 'Please reduce your request rate.'))
      .resolves({ Body: body(Buffer.from('chunk bytes')), ContentLength: 11 });
    const retrying = new RetryingStorage(storage(), fastRetry);
    expect((await retrying.get('chunks/ab')).toString()).toBe('chunk bytes');
    const calls = s3.commandCalls(GetObjectCommand);
    expect(calls.length).toBe(3);
    expect(calls.every((c) => c.args[0].input.Key === 'vault/chunks/ab' && c.args[0].input.Bucket === bucket)).toBe(true);
  });

  /** A body of 256 pieces of `chunk` bytes (16 MiB), far more than any limit below, counting the pieces pulled. */
  function endlessBody(chunk = 64 * 1024) {
    const state = { pulled: 0, stream: undefined as Readable | undefined };
    state.stream = Readable.from((function* () {
      for (let i = 0; i < 256; i++) {
        state.pulled++;
        yield Buffer.alloc(chunk);
      }
    })());
    return state;
  }

  it('a body that runs past maxBytes (no or a lying Content-Length) is stopped at the limit, not read to its end', async () => {
    for (const ContentLength of [undefined, 100]) {
      s3.reset();
      const b = endlessBody();
      s3.on(GetObjectCommand).resolves({ Body: b.stream as unknown as GetObjectCommandOutput['Body'], ContentLength });
      const err = await storage().get('chunks/ab/x', { maxBytes: 1024 * 1024 }).then(() => 'read it all', (e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as Error).message).toMatch(/object chunks\/ab\/x is at least \d+ bytes, more than the 1048576 expected/);
      expect(b.pulled).toBeLessThanOrEqual(1024 * 1024 / (64 * 1024) + 2);
      expect(b.stream!.destroyed).toBe(true);
    }
  }, 20_000);

  it('an oversized Content-Length is refused before the body is read, and not retried', async () => {
    const bodies: ReturnType<typeof endlessBody>[] = [];
    s3.on(GetObjectCommand).callsFake(() => {
      const b = endlessBody();
      bodies.push(b);
      return { Body: b.stream as unknown as GetObjectCommandOutput['Body'], ContentLength: 10 * 1024 * 1024 };
    });
    const err = await new RetryingStorage(storage(), fastRetry).get('chunks/ab/x', { maxBytes: 1024 }).then(() => 'read it all', (e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toContain('object chunks/ab/x is 10485760 bytes, more than the 1024 expected');
    expect(s3.commandCalls(GetObjectCommand).length).toBe(1);
    expect(bodies[0].pulled).toBe(0);
    expect(bodies[0].stream!.destroyed).toBe(true);
  }, 20_000);

  it('AccessDenied becomes PermanentError naming the bucket and the action, and is not retried', async () => {
    s3.on(GetObjectCommand).rejects(serviceError('AccessDenied', 403, 'Access Denied'));
    const retrying = new RetryingStorage(storage(), fastRetry);
    const err = await retrying.get('chunks/ab').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect(err).not.toBeInstanceOf(TransientStorageError);
    expect((err as Error).message).toContain(bucket);
    expect((err as Error).message).toContain('s3:GetObject');
    expect(s3.commandCalls(GetObjectCommand).length).toBe(1);
  });

  it('AccessDenied on PutObject names the put action', async () => {
    s3.on(PutObjectCommand).rejects(serviceError('AccessDenied', 403, 'Access Denied'));
    const err = await storage().put('manifests/m', Buffer.from('m')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/s3:PutObject.*memvault-test|memvault-test.*s3:PutObject/);
  });

  it('NoSuchKey becomes NotFoundError naming the key, and is not retried', async () => {
    s3.on(GetObjectCommand).rejects(new NoSuchKey({ $metadata: { httpStatusCode: 404 }, message: 'The specified key does not exist.' }));
    const retrying = new RetryingStorage(storage(), fastRetry);
    const err = await retrying.get('manifests/gone').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toContain('manifests/gone');
    expect((err as Error).message).toContain('s3://memvault-test/vault');
    expect(s3.commandCalls(GetObjectCommand).length).toBe(1);
  });

  it('has() maps a 404 HeadObject to false and a throttled one to TransientStorageError', async () => {
    s3.on(HeadObjectCommand).rejectsOnce(serviceError('NotFound', 404)).rejectsOnce(serviceError('SlowDown', 503));
    expect(await storage().has('x')).toBe(false);
    await expect(storage().has('x')).rejects.toBeInstanceOf(TransientStorageError);
  });

  it('delete() of a missing object is not an error', async () => {
    s3.on(DeleteObjectCommand).rejects(serviceError('NotFound', 404));
    await expect(storage().delete('x')).resolves.toBeUndefined();
  });

  it('list() follows continuation tokens under the vault prefix and strips it from keys', async () => {
    s3.on(ListObjectsV2Command, { ContinuationToken: undefined })
      .resolves({ IsTruncated: true, NextContinuationToken: 't1', Contents: [{ Key: 'vault/chunks/a', Size: 1 }] })
      .on(ListObjectsV2Command, { ContinuationToken: 't1' })
      .resolves({ IsTruncated: false, Contents: [{ Key: 'vault/chunks/b', Size: 2 }] });
    const got: { key: string; size: number }[] = [];
    for await (const o of storage().list('chunks/')) got.push({ key: o.key, size: o.size });
    expect(got).toEqual([{ key: 'chunks/a', size: 1 }, { key: 'chunks/b', size: 2 }]);
    const calls = s3.commandCalls(ListObjectsV2Command);
    expect(calls.map((c) => c.args[0].input)).toEqual([
      { Bucket: bucket, Prefix: 'vault/chunks/', ContinuationToken: undefined },
      { Bucket: bucket, Prefix: 'vault/chunks/', ContinuationToken: 't1' },
    ]);
  });

  it('a throttled page makes list() fail with TransientStorageError', async () => {
    s3.on(ListObjectsV2Command).rejects(serviceError('SlowDown', 503));
    const drain = async () => {
      for await (const _ of storage().list('')) void _;
    };
    await expect(drain()).rejects.toBeInstanceOf(TransientStorageError);
  });
});

describe('S3Storage construction', () => {
  it('fromLocation parses bucket and prefix', () => {
    const s = S3Storage.fromLocation({ url: 's3://my-bucket/backups/prod/', region: 'eu-west-1' });
    expect(s.bucket).toBe('my-bucket');
    expect(s.prefix).toBe('backups/prod');
    expect(s.url).toBe('s3://my-bucket/backups/prod');
    const root = S3Storage.fromLocation({ url: 's3://my-bucket', region: 'eu-west-1' });
    expect(root.prefix).toBe('');
    expect(root.url).toBe('s3://my-bucket');
    expect(S3Storage.fromLocation({ url: 's3://my-bucket/', region: 'eu-west-1' }).prefix).toBe('');
  });

  it('fromLocation rejects a url that is not s3://bucket/prefix', () => {
    for (const url of ['file:///tmp/x', 's3://', 's3:///prefix', 'my-bucket/prefix']) {
      expect(() => S3Storage.fromLocation({ url, region: 'us-east-1' }), url).toThrow(/expected s3:\/\/bucket\/prefix/);
    }
  });

  it('a custom endpoint defaults to path-style and checksums only when required', async () => {
    const c = createS3Client({ endpoint: 'http://127.0.0.1:9' });
    expect(c.config.forcePathStyle).toBe(true);
    expect(await c.config.requestChecksumCalculation()).toBe('WHEN_REQUIRED');
    expect(await c.config.responseChecksumValidation()).toBe('WHEN_REQUIRED');
    expect(await c.config.region()).toBe('us-east-1');
    expect(createS3Client({ endpoint: 'http://127.0.0.1:9', forcePathStyle: false }).config.forcePathStyle).toBe(false);
    const s = S3Storage.fromLocation({ url: 's3://b/p', endpoint: 'http://127.0.0.1:9' });
    expect(s.client.config.forcePathStyle).toBe(true);
  });
});
