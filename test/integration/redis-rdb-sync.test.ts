// Redis restores by full sync (method rdb-sync): memvault writes one RDB from
// the backup's DUMP payloads and hands it to the target as its master. Real
// redis-servers on loopback: a source with every type and encoding (int
// strings, listpacks, intsets, hashtables, skiplists, quicklists, a stream
// with consumer groups and pending entries, a 20 MB value), TTLs, three
// databases restored through a databaseMap; the CRC64 against the server's own
// DUMP footers; a target with REPLICAOF renamed away (falls back to RESTORE);
// a backup holding a corrupt payload (refused, naming the key).
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
import { redisDriver, readRecords } from '../../functions/components/redis.ts';
import { readEntry } from '../../functions/core/writer.ts';
import { crc64, Crc64, splitPayload } from '../../functions/components/redis-rdb.ts';
import { IntegrityError, PermanentError } from '../../functions/core/errors.ts';
import type { Driver } from '../../functions/components/types.ts';

type Raw = RawRedis;
const open = openRaw;

/** The redis driver with every stream its backup writes passed through `edit` first (damage made on purpose). */
function editedStreams(edit: (src: AsyncIterable<Buffer>) => AsyncIterable<Buffer>): Driver<never> {
  return {
    ...(redisDriver as unknown as Driver<never>),
    backup: (ctx) => redisDriver.backup({
      ...ctx,
      writer: { ...ctx.writer, writeStream: (src: AsyncIterable<Buffer>) => ctx.writer.writeStream(edit(src)) } as typeof ctx.writer,
    } as never),
  };
}
async function withClient<T>(url: string, db: number, f: (c: Raw) => Promise<T>): Promise<T> {
  const c = await open(url, db);
  try { return await f(c); } finally { await c.close(); }
}
const text = (v: unknown) => String(v);

interface KeyState { type: string; encoding: string; value: unknown; pttl: number; expireAt: number }

/** Every key of a database: type, encoding, a canonical value (SHA-free: hex), PTTL and PEXPIRETIME. */
async function snapshot(url: string, db: number): Promise<Map<string, KeyState>> {
  return withClient(url, db, async (c) => {
    const out = new Map<string, KeyState>();
    let cursor = '0';
    do {
      const [next, keys] = await c.sendCommand(['SCAN', cursor, 'COUNT', '500']) as [Buffer, Buffer[]];
      cursor = next.toString();
      for (const k of keys) {
        const type = text(await c.sendCommand(['TYPE', k]));
        const read: Record<string, (string | Buffer)[]> = {
          string: ['GET', k], list: ['LRANGE', k, '0', '-1'], set: ['SMEMBERS', k], zset: ['ZRANGE', k, '0', '-1', 'WITHSCORES'],
          hash: ['HGETALL', k], stream: ['XINFO', 'STREAM', k, 'FULL'],
        };
        const hex = (v: unknown): unknown => (Buffer.isBuffer(v) ? v.toString('hex') : Array.isArray(v) ? v.map(hex) : v);
        let value = hex(await c.sendCommand(read[type]));
        if (type === 'set') value = (value as string[]).sort();
        if (type === 'hash') {
          const v = value as string[];
          value = Object.fromEntries(Array.from({ length: v.length / 2 }, (_x, i) => [v[2 * i], v[2 * i + 1]]));
        }
        out.set(k.toString('latin1'), {
          type, value, encoding: text(await c.sendCommand(['OBJECT', 'ENCODING', k])),
          pttl: Number(await c.sendCommand(['PTTL', k])), expireAt: Number(await c.sendCommand(['PEXPIRETIME', k])),
        });
      }
    } while (cursor !== '0');
    return out;
  });
}

/** Source and restored keys equal in type, encoding and value; TTLs: remaining (at most the backup's, less by the time since) or, given `expiries`, absolute (the instant the backup recorded, to the millisecond). */
function expectSame(src: Map<string, KeyState>, dst: Map<string, KeyState>, what: string, expiries?: Map<string, number>): void {
  expect([...dst.keys()].sort(), what).toEqual([...src.keys()].sort());
  for (const [k, s] of src) {
    const d = dst.get(k)!;
    expect({ type: d.type, encoding: d.encoding }, `${what} ${k}`).toEqual({ type: s.type, encoding: s.encoding });
    expect(d.value, `${what} ${k} value`).toEqual(s.value);
    if (s.pttl < 0) expect(d.pttl, `${what} ${k} ttl`).toBe(-1);
    else if (expiries) {
      expect(d.expireAt, `${what} ${k} expiry`).toBe(expiries.get(k));
      expect(Math.abs(d.expireAt - s.expireAt), `${what} ${k} expiry`).toBeLessThan(30_000);
    }
    else {
      expect(d.pttl, `${what} ${k} ttl`).toBeLessThanOrEqual(s.pttl);
      expect(d.pttl, `${what} ${k} ttl`).toBeGreaterThan(s.pttl - 30_000);
    }
  }
}

interface Setup { dir: string; cfg: MemvaultConfig; vault: Vault }
async function setup(components: Record<string, unknown>): Promise<Setup> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'memvault-rdbsync-'));
  const cfg = parseConfig({ vault: { primary: `file://${dir}/vault` }, encryption: { key: `${dir}/memvault.key` }, components }, kindSchemas, dir);
  await initVaults(cfg);
  return { dir, cfg, vault: await openVault(cfg) };
}

const huge = Buffer.alloc(20 * 1024 * 1024);
for (let i = 0; i < huge.length; i += 4) huge.writeUInt32LE((i * 2654435761) >>> 0, i);
const MAP = { '3': 7 };
/** Source database -> target database under MAP. */
const DBS: [number, number][] = [[0, 0], [3, 7], [5, 5]];

let source: RedisHandle;
let s: Setup;
let ref: NonNullable<ReturnType<typeof parseManifestKey>>;
let manifest: Manifest;
let before: Map<number, Map<string, KeyState>>;
const servers: RedisHandle[] = [];
async function server(config?: string): Promise<RedisHandle> {
  const h = await startRedis(config === undefined ? {} : { config });
  servers.push(h);
  return h;
}
const deps = () => ({ cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger });
const ctxOf = (m: Manifest) => ({ component: 'cache', settings: s.cfg.components.cache as never, manifest: m, vault: s.vault, resolve: (p: string) => p, log: silentLogger });

beforeAll(async () => {
  source = await server();
  await withClient(source.url, 0, async (c) => {
    await c.sendCommand(['SET', 'str:embstr', 'hello world']);
    await c.sendCommand(['SET', 'str:int', '12345']);
    await c.sendCommand(['SET', 'str:negint', '-9007199254740993']);
    await c.sendCommand(['SET', 'str:raw', 'r'.repeat(200)]);
    await c.sendCommand(['SET', Buffer.from([0x00, 0xff, 0x0a, 0x80]), Buffer.from([1, 2, 0, 255, 13, 10])]);
    await c.sendCommand(['SET', 'k'.repeat(20_000), 'a key longer than 16383 bytes (32-bit RDB length)']);
    await c.sendCommand(['SET', 'blob:20mb', huge]);
    await c.sendCommand(['RPUSH', 'list:small', 'a', 'b', '', 'ünï ✓']);
    await c.sendCommand(['RPUSH', 'list:big', ...Array.from({ length: 2000 }, (_v, i) => `item-${i}-${'x'.repeat(100)}`)]);
    await c.sendCommand(['SADD', 'set:intset', '1', '2', '300000', '-5']);
    await c.sendCommand(['SADD', 'set:small', 'a', 'b', 'c']);
    await c.sendCommand(['SADD', 'set:big', ...Array.from({ length: 600 }, (_v, i) => `member-${i}`)]);
    await c.sendCommand(['ZADD', 'zset:small', '1.5', 'x', '-2', 'y', 'inf', 'z', '1.5', 'w']);
    await c.sendCommand(['ZADD', 'zset:big', ...Array.from({ length: 300 }, (_v, i) => [String(i / 7), `m${i}`]).flat()]);
    await c.sendCommand(['HSET', 'hash:small', 'name', 'Ada', 'mood', 'curious', 'n', '7']);
    await c.sendCommand(['HSET', 'hash:big', ...Array.from({ length: 600 }, (_v, i) => [`f${i}`, `v${i}`]).flat()]);
    for (let i = 1; i <= 50; i++) await c.sendCommand(['XADD', 'stream:jobs', `${i}-0`, 'job', `j${i}`, 'n', String(i)]);
    await c.sendCommand(['XDEL', 'stream:jobs', '10-0']);
    await c.sendCommand(['XGROUP', 'CREATE', 'stream:jobs', 'workers', '0']);
    await c.sendCommand(['XGROUP', 'CREATE', 'stream:jobs', 'audit', '$']);
    await c.sendCommand(['XREADGROUP', 'GROUP', 'workers', 'w1', 'COUNT', '5', 'STREAMS', 'stream:jobs', '>']);
    await c.sendCommand(['XREADGROUP', 'GROUP', 'workers', 'w2', 'COUNT', '3', 'STREAMS', 'stream:jobs', '>']);
    await c.sendCommand(['XACK', 'stream:jobs', 'workers', '2-0']);
    await c.sendCommand(['SET', 'ttl:session', 'soon', 'PX', '3600000']);
    await c.sendCommand(['HSET', 'ttl:hash', 'a', '1']);
    await c.sendCommand(['EXPIRE', 'ttl:hash', '7200']);
    await c.sendCommand(['SETEX', 'ttl:counter', '5000', '42']);
    for (let i = 0; i < 3000; i++) await c.sendCommand(['SET', `memo:${i}`, `value-${i}`.repeat(1 + (i % 5))]);
  });
  await withClient(source.url, 3, async (c) => {
    await c.sendCommand(['SET', 'db3:only', 'here']);
    await c.sendCommand(['LPUSH', 'db3:queue', 'j1', 'j2']);
    await c.sendCommand(['SET', 'db3:ttl', 'x', 'PX', '900000']);
  });
  await withClient(source.url, 5, async (c) => {
    await c.sendCommand(['HSET', 'db5:h', 'f', 'v']);
    await c.sendCommand(['SADD', 'db5:s', '10', '20']);
  });
  before = new Map();
  for (const [db] of DBS) before.set(db, await snapshot(source.url, db));
  s = await setup({ cache: { kind: 'redis', url: source.url } });
  const out = await backupComponent(deps(), 'cache', 'full');
  ref = parseManifestKey(out.manifestKey)!;
  manifest = await s.vault.readManifest(ref);
}, 120_000);

afterAll(async () => {
  await Promise.all(servers.map((h) => h.stop()));
  if (s) await rm(s.dir, { recursive: true, force: true });
});

describe('redis rdb-sync', () => {
  it('the data covers every encoding the RDB carries', () => {
    const enc = new Set([...before.get(0)!.values()].map((k) => `${k.type}/${k.encoding}`));
    for (const e of ['string/int', 'string/embstr', 'string/raw', 'list/quicklist', 'set/intset', 'set/hashtable', 'zset/listpack', 'zset/skiplist', 'hash/listpack', 'hash/hashtable', 'stream/stream']) {
      expect(enc, e).toContain(e);
    }
  });

  it('CRC64 is the one of the server\'s DUMP footers', async () => {
    expect(crc64(Buffer.from('123456789'))).toBe(0xe9c6d914c4b8d9can);
    await withClient(source.url, 0, async (c) => {
      let n = 0;
      for (const k of before.get(0)!.keys()) {
        const d = await c.sendCommand(['DUMP', Buffer.from(k, 'latin1')]) as Buffer;
        expect(crc64(d.subarray(0, d.length - 8)), k.slice(0, 40)).toBe(d.readBigUInt64LE(d.length - 8));
        // Split in odd pieces: the running CRC is the same.
        const c3 = new Crc64();
        for (let i = 0; i < d.length - 8; i += 13) c3.update(d, i, Math.min(i + 13, d.length - 8));
        expect(c3.bytes().equals(d.subarray(d.length - 8))).toBe(true);
        const p = splitPayload(d, k);
        expect(p.version).toBeGreaterThanOrEqual(10);
        n++;
      }
      expect(n).toBeGreaterThan(3000);
      const d = Buffer.from(await c.sendCommand(['DUMP', 'hash:small']) as Buffer);
      d[3] ^= 0x01;
      expect(() => splitPayload(d, 'key hash:small')).toThrow(/key hash:small: DUMP payload checksum/);
    });
  });

  it('restores every type, TTLs and databases through a databaseMap by full sync, and validates', async () => {
    const t = await server();
    await withClient(t.url, 0, (c) => c.sendCommand(['CONFIG', 'SET', 'masterauth', 'keep-me']));
    const r = await restoreItem(deps(), { component: 'cache', ref }, s.dir, { url: t.url, method: 'rdb-sync', databaseMap: MAP });
    expect(r.method).toBe('rdb-sync');
    expect(r.validation.checks.filter((x) => !x.ok)).toEqual([]);
    expect(r.validation.ok).toBe(true);
    for (const [from, to] of DBS) expectSame(before.get(from)!, await snapshot(t.url, to), `db ${from} -> ${to}`);
    await withClient(t.url, 0, async (c) => {
      expect((await c.sendCommand(['GET', 'blob:20mb']) as Buffer).equals(huge)).toBe(true);
      const info = text(await c.sendCommand(['INFO', 'all']));
      expect(info).toMatch(/^role:master\r?$/m);
      expect(info).not.toMatch(/cmdstat_restore:/); // loaded from the RDB, not by RESTORE commands
      expect(info).toMatch(/^db7:keys=3,/m);
      expect(info).not.toMatch(/^db3:/m);
      expect((await c.sendCommand(['CONFIG', 'GET', 'masterauth']) as Buffer[]).map(text)).toEqual(['masterauth', 'keep-me']);
      expect((await c.sendCommand(['CONFIG', 'GET', 'repl-diskless-load']) as Buffer[]).map(text)).toEqual(['repl-diskless-load', 'disabled']);
      // A master again: it takes writes.
      expect(text(await c.sendCommand(['SET', 'after', '1']))).toBe('OK');
    });
  }, 120_000);

  it('ttl: absolute keeps each expiry instant and skips keys already past it', async () => {
    // A key that expires after the backup read it (the backup of the 20 MB value takes a while on a loaded machine) and before the restore.
    await withClient(source.url, 0, (c) => c.sendCommand(['SET', 'ttl:brief', 'gone soon', 'PX', '8000']));
    const out = await backupComponent(deps(), 'cache', 'full');
    const m = await s.vault.readManifest(parseManifestKey(out.manifestKey)!);
    // The expiry instants the backup recorded, per key.
    const expiries = new Map<number, Map<string, number>>();
    for (const e of m.entries) {
      const db = (e.meta as { db: number }).db;
      const x = new Map<string, number>();
      for await (const batch of readRecords(readEntry(s.vault, e), db, e.path)) for (const rec of batch) x.set(rec.key.toString('latin1'), rec.expireAt);
      expiries.set(db, x);
    }
    const brief = expiries.get(0)!.get('ttl:brief')!;
    expect(brief).toBeGreaterThan(0);
    await new Promise((res) => setTimeout(res, Math.max(0, brief - Date.now() + 100)));
    const t = await server();
    const r = await redisDriver.restore({ ...ctxOf(m), target: { dir: s.dir, options: { url: t.url, method: 'rdb-sync', ttl: 'absolute', databaseMap: MAP } } });
    expect(r.method).toBe('rdb-sync');
    for (const [from, to] of DBS) expectSame(await snapshot(source.url, from), await snapshot(t.url, to), `db ${from} -> ${to}`, expiries.get(from));
    expect(await withClient(t.url, 0, (c) => c.sendCommand(['EXISTS', 'ttl:brief']))).toBe(0);
  }, 120_000);

  it('a drill into an empty scratch server: restored by full sync with the drill\'s mark in each database, validated, cleaned up', async () => {
    const t = await server();
    const settings = { ...(s.cfg.components.cache as object), drill: { url: t.url, db: 4 } };
    const ctx = { ...ctxOf(manifest), settings: settings as never };
    const target = { dir: s.dir, options: { scratch: true, tag: 'd0123456789a' } };
    const r = await redisDriver.restore({ ...ctx, target });
    expect(r.method).toBe('rdb-sync');
    for (const db of [4, 5, 6]) expect(text(await withClient(t.url, db, (c) => c.sendCommand(['GET', 'memvault:drill-scratch'])))).toBe('d0123456789a');
    const v = await redisDriver.validate({ ...ctx, target, location: r.location });
    expect(v.checks.filter((x) => !x.ok)).toEqual([]);
    expect(await withClient(t.url, 6, (c) => c.sendCommand(['HGET', 'db5:h', 'f'])).then(text)).toBe('v');
    expect(await redisDriver.cleanupTarget({ ...ctx, target, log: silentLogger } as never)).toContain('db 4, 5, 6 flushed');
    expect(text(await withClient(t.url, 0, (c) => c.sendCommand(['INFO', 'keyspace'])))).not.toMatch(/^db\d+:/m);
  }, 120_000);

  it('a target with REPLICAOF disabled: rdb-sync is refused, auto falls back to RESTORE and restores everything', async () => {
    const t = await server('rename-command REPLICAOF ""\n');
    const err = await redisDriver.restore({ ...ctxOf(manifest), target: { dir: s.dir, options: { url: t.url, method: 'rdb-sync', databaseMap: MAP } } }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(new RegExp(`^cache: restore into redis://127\\.0\\.0\\.1:${t.port}: method rdb-sync: the target refuses REPLICAOF .*unknown command`));
    await withClient(t.url, 0, async (c) => {
      expect(text(await c.sendCommand(['INFO', 'keyspace']))).not.toMatch(/^db\d+:/m);
      expect((await c.sendCommand(['CONFIG', 'GET', 'masterauth']) as Buffer[]).map(text)).toEqual(['masterauth', '']);
    });
    const r = await restoreItem(deps(), { component: 'cache', ref }, s.dir, { url: t.url, databaseMap: MAP });
    expect(r.method).toBe('restore');
    expect(r.validation.checks.filter((x) => !x.ok)).toEqual([]);
    for (const [from, to] of DBS) expectSame(before.get(from)!, await snapshot(t.url, to), `db ${from} -> ${to}`);
    expect(text(await withClient(t.url, 0, (c) => c.sendCommand(['INFO', 'commandstats'])))).toMatch(/cmdstat_restore:calls=\d+/);
  }, 120_000);

  it('auto keeps to RESTORE when another database of the target holds keys (a full sync would flush it)', async () => {
    const t = await server();
    await withClient(t.url, 9, (c) => c.sendCommand(['SET', 'other:app', 'keep']));
    const r = await restoreItem(deps(), { component: 'cache', ref }, s.dir, { url: t.url, databaseMap: MAP });
    expect(r.method).toBe('restore');
    expect(r.validation.ok).toBe(true);
    expect(text(await withClient(t.url, 9, (c) => c.sendCommand(['GET', 'other:app'])))).toBe('keep');
    const t2 = await server();
    await withClient(t2.url, 9, (c) => c.sendCommand(['SET', 'other:app', 'keep']));
    await expect(redisDriver.restore({ ...ctxOf(manifest), target: { dir: s.dir, options: { url: t2.url, method: 'rdb-sync' } } })).rejects.toThrow(/db 9 .*pass force/);
    expect(text(await withClient(t2.url, 9, (c) => c.sendCommand(['GET', 'other:app'])))).toBe('keep');
  }, 120_000);

  it('a target that cannot reach memvault\'s listener: auto falls back to RESTORE, rdb-sync fails naming the address', async () => {
    const t = await server();
    const spare = await server();
    const nowhere = spare.port; // a port where nothing listens any more
    await spare.stop();
    const options = { url: t.url, databaseMap: MAP, syncListen: '127.0.0.1', syncAnnounce: `127.0.0.1:${nowhere}` };
    const err = await redisDriver.restore({ ...ctxOf(manifest), target: { dir: s.dir, options: { ...options, method: 'rdb-sync' } } }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toContain(`method rdb-sync: the target did not sync from memvault at 127.0.0.1:${nowhere} (no replica connected within 10 s)`);
    await withClient(t.url, 0, async (c) => {
      const info = text(await c.sendCommand(['INFO', 'all']));
      expect(info).toMatch(/^role:master\r?$/m);
      expect(info).not.toMatch(/^db\d+:/m);
    });
    const r = await restoreItem(deps(), { component: 'cache', ref }, s.dir, options);
    expect(r.method).toBe('restore');
    expect(r.validation.ok).toBe(true);
  }, 120_000);

  it('payloads of an RDB version newer than the target loads: rdb-sync refuses, auto leaves it to RESTORE (which refuses too)', async () => {
    // A backup whose payloads claim RDB version 99 (footers recomputed): as if taken from a newer server.
    const newer = editedStreams((src) => (async function* () {
      let first = true;
      for await (const b0 of src) {
        const b = Buffer.from(b0);
        let off = first ? 12 : 0; // the stream header comes alone, then whole records
        first = false;
        while (off < b.length) {
          const kl = b.readUInt32LE(off);
          const t = off + 4 + kl + 1 + b[off + 4 + kl];
          const dl = b.readUInt32LE(t + 16);
          const d = b.subarray(t + 20, t + 20 + dl);
          d.writeUInt16LE(99, dl - 10);
          new Crc64().update(d, 0, dl - 8).bytes().copy(d, dl - 8);
          off = t + 20 + dl;
        }
        yield b;
      }
    })());
    const out = await backupComponent({ ...deps(), driverFor: ((k: string) => (k === 'redis' ? newer : driverFor(k as never))) as typeof driverFor }, 'cache', 'full');
    const m = await s.vault.readManifest(parseManifestKey(out.manifestKey)!);
    const t = await server();
    const err = await redisDriver.restore({ ...ctxOf(m), target: { dir: s.dir, options: { url: t.url, method: 'rdb-sync' } } }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/method rdb-sync: the backup's DUMP payloads are RDB version 99, newer than the target loads \(10\)/);
    const err2 = await redisDriver.restore({ ...ctxOf(m), target: { dir: s.dir, options: { url: t.url } } }).catch((e: Error) => e);
    expect((err2 as Error).message).toMatch(new RegExp(`^cache: restore into redis://127\\.0\\.0\\.1:${t.port} db 0: key .*payload version`));
  }, 120_000);

  it('a corrupt payload in the backup is refused, naming the key, and the target is left empty', async () => {
    await withClient(source.url, 0, (c) => c.sendCommand(['SET', 'str:victim', 'victim-value-0123456789']));
    let corrupted = 0;
    const corrupting = editedStreams((src) => (async function* () {
      for await (const b of src) {
        const i = b.indexOf('victim-value-');
        if (i >= 0) { const x = Buffer.from(b); x[i + 14] ^= 0x20; corrupted++; yield x; } else yield b;
      }
    })());
    const out = await backupComponent({ ...deps(), driverFor: ((k: string) => (k === 'redis' ? corrupting : driverFor(k as never))) as typeof driverFor }, 'cache', 'full');
    expect(corrupted).toBe(1);
    const m = await s.vault.readManifest(parseManifestKey(out.manifestKey)!);
    const t = await server();
    const err = await redisDriver.restore({ ...ctxOf(m), target: { dir: s.dir, options: { url: t.url } } }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(new RegExp(`^cache: restore into redis://127\\.0\\.0\\.1:${t.port} db 0: key str:victim: DUMP payload checksum`));
    await withClient(t.url, 0, async (c) => {
      const info = text(await c.sendCommand(['INFO', 'all']));
      expect(info).toMatch(/^role:master\r?$/m);
      expect(info).not.toMatch(/^db\d+:/m);
    });
    // RESTORE refuses it too, naming the key.
    const err2 = await redisDriver.restore({ ...ctxOf(m), target: { dir: s.dir, options: { url: t.url, method: 'restore' } } }).catch((e: Error) => e);
    expect((err2 as Error).message).toMatch(new RegExp(`^cache: restore into redis://127\\.0\\.0\\.1:${t.port} db 0: key str:victim: .*checksum`));
    await withClient(source.url, 0, (c) => c.sendCommand(['DEL', 'str:victim']));
  }, 120_000);
});
