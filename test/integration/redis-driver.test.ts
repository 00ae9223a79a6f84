// The redis driver against real redis-servers started by the harness: a
// source with every core type, binary keys and values, TTLs and several
// logical databases, written to by clients during the backup; the backup is
// restored into a second, fresh redis-server and every key's type, value and
// TTL is compared with the source.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisHandle, openRaw, type RawRedis } from '../helpers/redis.ts';
import { parseConfig, type MemvaultConfig } from '../../functions/core/config.ts';
import { driverFor, kindSchemas } from '../../functions/components/registry.ts';
import { initVaults } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { backupComponent } from '../../functions/core/backup.ts';
import { restoreItem } from '../../functions/core/restore.ts';
import { parseManifestKey, type Manifest } from '../../functions/core/manifest.ts';
import type { Vault } from '../../functions/core/vault.ts';
import { silentLogger } from '../../functions/logger.ts';
import { redisDriver, parseKeyspace, type KeyspaceFigures } from '../../functions/components/redis.ts';
import { RetryableError, UsageError } from '../../functions/core/errors.ts';

type Raw = RawRedis;
const open = openRaw;

/** Every key with type, a canonical value and its TTL, read straight from the server. */
async function snapshotKeys(c: Raw): Promise<Map<string, { type: string; value: unknown; pttl: number }>> {
  const out = new Map<string, { type: string; value: unknown; pttl: number }>();
  let cursor = '0';
  do {
    const [next, keys] = await c.sendCommand(['SCAN', cursor, 'COUNT', '500']) as [Buffer, Buffer[]];
    cursor = next.toString();
    for (const k of keys) {
      const type = String(await c.sendCommand(['TYPE', k]));
      const read: Record<string, (string | Buffer)[]> = {
        string: ['GET', k], list: ['LRANGE', k, '0', '-1'], set: ['SMEMBERS', k], zset: ['ZRANGE', k, '0', '-1', 'WITHSCORES'],
        hash: ['HGETALL', k], stream: ['XRANGE', k, '-', '+'],
      };
      let value = await c.sendCommand(read[type]) as unknown;
      const hex = (v: unknown): unknown => (Buffer.isBuffer(v) ? v.toString('hex') : Array.isArray(v) ? v.map(hex) : v);
      value = hex(value);
      if (type === 'set') value = (value as string[]).sort();
      if (type === 'hash') {
        const v = value as string[];
        value = Object.fromEntries(Array.from({ length: v.length / 2 }, (_x, i) => [v[2 * i], v[2 * i + 1]]));
      }
      out.set(k.toString('hex'), { type, value, pttl: Number(await c.sendCommand(['PTTL', k])) });
    }
  } while (cursor !== '0');
  return out;
}

interface Setup { dir: string; cfg: MemvaultConfig; vault: Vault }
async function setup(components: Record<string, unknown>): Promise<Setup> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'memvault-redistest-'));
  const cfg = parseConfig({ vault: { primary: `file://${dir}/vault` }, encryption: { key: `${dir}/memvault.key` }, components }, kindSchemas, dir);
  await initVaults(cfg);
  return { dir, cfg, vault: await openVault(cfg) };
}

let source: RedisHandle;
let fresh: RedisHandle;
let s: Setup;
let manifest: Manifest;
let ref: NonNullable<ReturnType<typeof parseManifestKey>>;
let before: Map<string, { type: string; value: unknown; pttl: number }>;
let liveBefore: number;
let liveAfter: number;
let writesDuring: number;

beforeAll(async () => {
  [source, fresh] = await Promise.all([startRedis(), startRedis()]);
  const c = await open(source.url);
  // db 0: every core type, binary data, TTLs, enough keys for several SCAN batches.
  const binKey = Buffer.from([0x00, 0xff, 0x0a, 0x80, 0x7f]);
  await c.sendCommand(['SET', binKey, Buffer.from([1, 2, 0, 255, 13, 10])]);
  await c.sendCommand(['SET', 'session:volatile', 'soon', 'PX', '3600000']);
  await c.sendCommand(['RPUSH', 'list:chat', 'hi', 'there', '', 'ünï ✓']);
  await c.sendCommand(['SADD', 'set:small', 'a', 'b', 'c']);
  await c.sendCommand(['SADD', 'set:big', ...Array.from({ length: 600 }, (_v, i) => `member-${i}`)]); // hashtable encoding
  await c.sendCommand(['SADD', 'set:ints', '1', '2', '300000']);
  await c.sendCommand(['ZADD', 'zset:scores', '1.5', 'x', '-2', 'y', 'inf', 'z', '1.5', 'w']);
  await c.sendCommand(['HSET', 'hash:big', ...Array.from({ length: 400 }, (_v, i) => [`f${i}`, `v${i}`]).flat()]);
  await c.sendCommand(['HSET', 'hash:user:1', 'name', 'Ada', 'mood', 'curious']);
  await c.sendCommand(['EXPIRE', 'hash:user:1', '7200']);
  await c.sendCommand(['XADD', 'stream:events', '1-1', 'kind', 'start']);
  await c.sendCommand(['XADD', 'stream:events', '2-0', 'kind', 'stop', 'n', '2']);
  await c.sendCommand(['SETEX', 'counter:ttl', '5000', '42']);
  for (let i = 0; i < 1500; i++) await c.sendCommand(['SET', `memo:${i}`, `value-${i}`.repeat(1 + (i % 5))]);
  // db 3: another logical database; db 5 stays empty.
  const d3 = await open(source.url, 3);
  await d3.sendCommand(['SET', 'db3:only', 'here']);
  await d3.sendCommand(['LPUSH', 'db3:queue', 'j1', 'j2']);
  await d3.close();
  before = await snapshotKeys(c);
  await c.close();

  // Writers during the backup: new immutable keys live:N (value N), and churn on a key that is deleted and recreated.
  const w = await open(source.url);
  let stop = false;
  const stamps: number[] = [];
  let n = 0;
  const writer = (async () => {
    while (!stop) {
      await w.sendCommand(['SET', `live:${n}`, String(n)]);
      n++;
      await w.sendCommand(['DEL', 'churn']);
      await w.sendCommand(['RPUSH', 'churn', 'a', 'b']);
      stamps.push(Date.now());
    }
  })();
  while (n < 50) await new Promise((r) => setTimeout(r, 5));
  liveBefore = n;
  s = await setup({ cache: { kind: 'redis', url: source.url, scanCount: 100 } });
  const t0 = Date.now();
  let out;
  let t1 = 0;
  try {
    out = await backupComponent({ cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger }, 'cache', 'full');
    t1 = Date.now();
  } finally {
    stop = true;
    await writer;
  }
  liveAfter = n;
  writesDuring = stamps.filter((t) => t >= t0 && t <= t1).length;
  await w.close();
  ref = parseManifestKey(out.manifestKey)!;
  manifest = await s.vault.readManifest(ref);
});

afterAll(async () => {
  await Promise.all([source?.stop(), fresh?.stop()]);
  if (s) await rm(s.dir, { recursive: true, force: true });
});

describe('redis driver', () => {
  it('backs up every non-empty database, with clients writing during the SCAN', () => {
    expect(writesDuring).toBeGreaterThan(0);
    expect(manifest.entries.map((e) => e.path)).toEqual(['db0.redis', 'db3.redis']);
    const dbs = manifest.driver.databases as Record<string, KeyspaceFigures>;
    expect(dbs['3']).toMatchObject({ keys: 2, volatile: 0, types: { string: 1, list: 1 } });
    // live:N keys (plus "churn", when the scan met it between its DEL and RPUSH it is left out).
    const live = dbs['0'].keys - before.size;
    expect(live).toBeGreaterThanOrEqual(liveBefore);
    expect(live).toBeLessThanOrEqual(liveAfter + 1);
    expect(dbs['0'].volatile).toBe(3);
  });

  it('restores into a fresh server: every key with its type, value and TTL', async () => {
    const r = await restoreItem({ cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger }, { component: 'cache', ref }, s.dir, { url: fresh.url });
    expect(r.validation.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.validation.ok).toBe(true);
    const c = await open(fresh.url);
    try {
      const after = await snapshotKeys(c);
      for (const [k, v] of before) {
        const a = after.get(k);
        expect(a, `key ${Buffer.from(k, 'hex').toString()}`).toBeDefined();
        expect({ type: a!.type, value: a!.value }).toEqual({ type: v.type, value: v.value });
        if (v.pttl < 0) expect(a!.pttl).toBe(-1);
        else {
          expect(a!.pttl).toBeLessThanOrEqual(v.pttl);
          expect(a!.pttl).toBeGreaterThan(v.pttl - 15_000);
        }
      }
      // Keys written during the backup: each restored one has the value its writer gave it, none is invented.
      const live = [...after.keys()].map((k) => Buffer.from(k, 'hex').toString()).filter((k) => k.startsWith('live:'));
      expect(live.length).toBeGreaterThanOrEqual(liveBefore);
      expect(live.length).toBeLessThanOrEqual(liveAfter);
      for (const k of live) expect(after.get(Buffer.from(k).toString('hex'))!.value).toBe(Buffer.from(k.slice(5)).toString('hex'));
      // A key deleted and recreated during the scan is restored whole (both elements) or, if it was gone when read, not at all.
      const churn = after.get(Buffer.from('churn').toString('hex'));
      if (churn) expect(churn.value).toEqual(['61', '62']);
      expect(after.size).toBe((manifest.driver.databases as Record<string, KeyspaceFigures>)['0'].keys);
      const d3 = await open(fresh.url, 3);
      expect(await snapshotKeys(d3)).toEqual(await (async () => { const x = await open(source.url, 3); try { return await snapshotKeys(x); } finally { await x.close(); } })());
      await d3.close();
    } finally {
      await c.close();
    }
  });

  it('validation fails when a restored value, type or TTL differs', async () => {
    const c = await open(fresh.url);
    try {
      const ctx = { component: 'cache', settings: s.cfg.components.cache as never, manifest, vault: s.vault, target: { dir: s.dir, options: { url: fresh.url } }, location: fresh.url, resolve: (p: string) => p, log: silentLogger };
      await c.sendCommand(['HSET', 'hash:big', 'f7', 'changed']);
      await c.sendCommand(['PERSIST', 'session:volatile']);
      const v = await redisDriver.validate(ctx);
      expect(v.checks.filter((x) => !x.ok).map((x) => x.name).sort()).toEqual(['db 0: checksum of keys, types and values', 'db 0: keys with a TTL']);
      await c.sendCommand(['HSET', 'hash:big', 'f7', 'v7']);
      await c.sendCommand(['PEXPIRE', 'session:volatile', '3600000']);
      expect((await redisDriver.validate(ctx)).ok).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('refuses a non-empty target unless forced, and keeps original expiry instants with ttl: absolute', async () => {
    const ctx = { component: 'cache', settings: s.cfg.components.cache as never, manifest, vault: s.vault, resolve: (p: string) => p, log: silentLogger };
    await expect(redisDriver.restore({ ...ctx, target: { dir: s.dir, options: { url: fresh.url } } })).rejects.toThrow(UsageError);
    const c = await open(fresh.url);
    try {
      await c.sendCommand(['SET', 'list:chat', 'overwritten']);
      await redisDriver.restore({ ...ctx, target: { dir: s.dir, options: { url: fresh.url, force: true, ttl: 'absolute' } } });
      expect((await c.sendCommand(['LRANGE', 'list:chat', '0', '-1']) as Buffer[]).map(String)).toEqual(['hi', 'there', '', 'ünï ✓']);
      const expireAt = Number(await c.sendCommand(['PEXPIRETIME', 'session:volatile']));
      const t = Date.parse(manifest.startedAt);
      expect(expireAt).toBeGreaterThan(t + 3_600_000 - 15_000);
      expect(expireAt).toBeLessThanOrEqual(Date.parse(manifest.finishedAt) + 3_600_000);
    } finally {
      await c.close();
    }
  });

  it('without a url, leaves the streams as files', async () => {
    const dir = path.join(s.dir, 'files');
    const ctx = { component: 'cache', settings: s.cfg.components.cache as never, manifest, resolve: (p: string) => p, log: silentLogger };
    const r = await redisDriver.restore({ ...ctx, vault: s.vault, target: { dir } });
    expect((await redisDriver.validate({ ...ctx, vault: s.vault, target: { dir }, location: r.location })).ok).toBe(true);
  });

  it('reads the non-empty databases from INFO keyspace', () => {
    expect(parseKeyspace('# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=5\r\ndb3:keys=2,expires=0,avg_ttl=0\r\ndb7:keys=0,expires=0\r\n')).toEqual([0, 3]);
  });
});

describe('redis driver: large values and streams with consumer groups', () => {
  let src: RedisHandle;
  let dst: RedisHandle;
  let big: Setup;
  const huge = Buffer.alloc(20 * 1024 * 1024);
  for (let i = 0; i < huge.length; i += 4) huge.writeUInt32LE((i * 2654435761) >>> 0, i);

  beforeAll(async () => {
    [src, dst] = await Promise.all([startRedis(), startRedis()]);
    big = await setup({ big: { kind: 'redis', url: src.url } });
  });
  afterAll(async () => {
    await Promise.all([src?.stop(), dst?.stop()]);
    if (big) await rm(big.dir, { recursive: true, force: true });
  });

  it('restores 20 MB values bit-exact and streams with their consumer groups and pending entries', async () => {
    const c = await open(src.url);
    try {
      await c.sendCommand(['SET', 'blob:a', huge]);
      await c.sendCommand(['RPUSH', 'blob:list', huge.subarray(0, 5 * 1024 * 1024), 'x', huge.subarray(7, 3 * 1024 * 1024)]);
      for (let i = 0; i < 300; i++) await c.sendCommand(['SET', `small:${i}`, `v${i}`]);
      for (let i = 1; i <= 20; i++) await c.sendCommand(['XADD', 'stream:jobs', `${i}-0`, 'job', `j${i}`]);
      await c.sendCommand(['XGROUP', 'CREATE', 'stream:jobs', 'workers', '0']);
      await c.sendCommand(['XGROUP', 'CREATE', 'stream:jobs', 'audit', '$']);
      await c.sendCommand(['XREADGROUP', 'GROUP', 'workers', 'w1', 'COUNT', '5', 'STREAMS', 'stream:jobs', '>']);
      await c.sendCommand(['XACK', 'stream:jobs', 'workers', '2-0']);
      const groups = async (x: Raw) => JSON.stringify(await x.sendCommand(['XINFO', 'GROUPS', 'stream:jobs']), (_k, v) => (v?.type === 'Buffer' ? Buffer.from(v.data).toString() : v));
      const pending = async (x: Raw) => (await x.sendCommand(['XPENDING', 'stream:jobs', 'workers', '-', '+', '100']) as unknown[][]).map((p) => String(p[0]));
      const wantGroups = await groups(c);
      const out = await backupComponent({ cfg: big.cfg, vault: big.vault, driverFor, log: silentLogger }, 'big', 'full');
      const r = await restoreItem({ cfg: big.cfg, vault: big.vault, driverFor, log: silentLogger }, { component: 'big', ref: parseManifestKey(out.manifestKey)! }, big.dir, { url: dst.url });
      expect(r.validation.checks.filter((x) => !x.ok)).toEqual([]);
      const d = await open(dst.url);
      try {
        expect((await d.sendCommand(['GET', 'blob:a']) as Buffer).equals(huge)).toBe(true);
        const l = await d.sendCommand(['LRANGE', 'blob:list', '0', '-1']) as Buffer[];
        expect(l[0].equals(huge.subarray(0, 5 * 1024 * 1024)) && l[2].equals(huge.subarray(7, 3 * 1024 * 1024)) && String(l[1]) === 'x').toBe(true);
        expect(await groups(d)).toBe(wantGroups);
        expect(await pending(d)).toEqual(['1-0', '3-0', '4-0', '5-0']);
        expect(Number(await d.sendCommand(['DBSIZE']))).toBe(303);
      } finally {
        await d.close();
      }
    } finally {
      await c.close();
    }
  }, 60_000);

  it('an unreachable target is a retryable error naming the component and the target', async () => {
    const out = await backupComponent({ cfg: big.cfg, vault: big.vault, driverFor, log: silentLogger }, 'big', 'full');
    const manifest = await big.vault.readManifest(parseManifestKey(out.manifestKey)!);
    const t = await startRedis();
    await t.stop(); // a port where nothing listens any more
    const ctx = { component: 'big', settings: big.cfg.components.big as never, vault: big.vault, resolve: (p: string) => p, log: silentLogger };
    const err = await redisDriver.restore({ ...ctx, manifest, target: { dir: big.dir, options: { url: t.url } } }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as Error).message).toContain(`big: restore: cannot connect to redis://127.0.0.1:${t.port} db 0`);
  }, 60_000);

  it('an error during the restore names the component, the target and the key', async () => {
    const c = await open(src.url);
    const ctx = { component: 'big', settings: big.cfg.components.big as never, vault: big.vault, resolve: (p: string) => p, log: silentLogger };
    try {
      const out = await backupComponent({ cfg: big.cfg, vault: big.vault, driverFor, log: silentLogger }, 'big', 'full');
      const manifest = await big.vault.readManifest(parseManifestKey(out.manifestKey)!);
      const t = await startRedis();
      try {
        // A target with no room: it passes the emptiness check, then the RESTOREs fail (OOM).
        const tc = await open(t.url);
        await tc.sendCommand(['CONFIG', 'SET', 'maxmemory', '1mb']);
        await tc.sendCommand(['CONFIG', 'SET', 'maxmemory-policy', 'noeviction']);
        await tc.close();
        const err = await redisDriver.restore({ ...ctx, manifest, target: { dir: big.dir, options: { url: t.url } } }).catch((e: Error) => e);
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).toMatch(new RegExp(`^big: restore into redis://127\\.0\\.0\\.1:${t.port} db 0: key .*OOM`));
      } finally {
        await t.stop();
      }
    } finally {
      await c.close();
    }
  }, 60_000);
});
