// redis: every key of every logical database (Redis, Valkey, ElastiCache)
// with its type, value and TTL, restored with DUMP/RESTORE semantics.
//
// Backup walks each database with SCAN ... COUNT n (never KEYS, so the server
// keeps serving between batches). A small Lua script reads, for each key of a
// batch of SCANned keys and atomically per key (a script runs alone, like
// MULTI/EXEC), TYPE, PTTL, DUMP and the value (GET / LRANGE / SMEMBERS /
// ZRANGE / HGETALL / XRANGE), so the dump, its TTL and the checksum describe
// the same version of the key even while clients write; a few such calls are
// pipelined, so a batch of keys costs one round trip, not one per key. A key deleted between SCAN and its read is left out.
// SCAN returns every key that exists for the whole scan; keys created or
// removed during it may or may not appear: the backup is per-key consistent,
// not a point-in-time image of the keyspace (use the service's RDB snapshot
// when that matters).
// One stream per database:
//   header  "MVREDIS1" | u32 database
//   record  u32 key length | key | u8 type length | type | i64 PTTL (ms, -1 none)
//           | i64 expiry as unix ms (-1 none) | u32 dump length | DUMP payload
// The manifest records per database the number of keys, keys per type, keys
// with a TTL, and an order-independent checksum of (key, type, value) computed
// from the logical value (sets and hashes sorted), which a restore into any
// server reproduces even when DUMP bytes would differ (hash table order).
// Restore sends RESTORE key ttl payload [REPLACE] [ABSTTL] on a raw RESP
// pipeline (redis-pipe.ts: 1 MiB writes, replies counted, the first error
// named with its key), records parsed in place from the chunks; TTLs
// are the remaining TTL at backup time (ttl: remaining, the default) or the
// original expiry instant (ttl: absolute; keys already expired are skipped).
// method rdb-sync (auto: where the target allows it) hands the target one RDB
// instead, written from the same payloads (redis-rdb.ts), by acting as its
// master for one full sync (redis-sync.ts); see restoreBySync below.
import { withEntries } from '../core/entry-log.ts';
import { hash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type * as Redis from 'redis';
import type { Driver, DriverBackupContext, DriverMaskContext, DriverRestoreContext, DriverValidateContext, DrillTargets, Masking, ValidationCheck } from './types.ts';
import { type KeyMaskRule, type MaskOutcome, describeRule, hashValue, ruleName } from '../core/mask.ts';
import { report } from './types.ts';
import type { Entry } from '../core/manifest.ts';
import { readEntry } from '../core/writer.ts';
import { ConfigError, IntegrityError, PermanentError, RetryableError, UsageError } from '../core/errors.ts';
import { RecordChecksum } from './vector.ts';
import { RespCommandError, RespPipe } from './redis-pipe.ts';
import { RdbWriter, rdbVersionFor, splitPayload, stringPayload } from './redis-rdb.ts';
import { SyncMaster } from './redis-sync.ts';
import net from 'node:net';
import { restoreEntriesToDir } from './restore-file.ts';
import { readDatabaseSecret, requireSecretField, SECRET_ARN, SECRET_ARN_MESSAGE } from '../adapters/secrets.ts';

export const redisSchema = z.object({
  /** redis://[user[:password]@]host:6379 (rediss:// for TLS). */
  url: z.string().regex(/^rediss?:\/\//, 'expected redis://host:port or rediss://host:port'),
  /** Environment variable holding the password (AUTH), when it is not in the URL (local runtime only: refused for AWS deploys). */
  passwordEnv: z.string().optional(),
  /**
   * Secrets Manager secret holding the AUTH password (the way on AWS): JSON
   * with "password" (an ElastiCache AUTH token or RBAC user password) and
   * optionally "username" (the RBAC user, when the url names none).
   */
  secretArn: z.string().regex(SECRET_ARN, SECRET_ARN_MESSAGE).optional(),
  /** Logical databases to back up. @default every non-empty one (INFO keyspace) */
  databases: z.array(z.number().int().min(0)).optional(),
  /** SCAN COUNT hint: keys per round trip. @default 1000 */
  scanCount: z.number().int().positive().default(1000),
  /** Where verify-drill restores this component: empty scratch databases, flushed after. */
  drill: z.object({
    /** redis://host:6379 of a scratch server (never the source's databases). */
    url: z.string().regex(/^rediss?:\/\//, 'expected redis://host:port or rediss://host:port'),
    passwordEnv: z.string().optional(),
    /** Secrets Manager secret holding the AUTH password (resolved with the component's credentials, see README). */
    secretArn: z.string().optional(),
    /** First scratch database: the backed-up databases go to db, db+1, ... in order; each must be empty. */
    db: z.number().int().min(0),
  }).strict().optional(),
});
export type RedisSettings = z.infer<typeof redisSchema>;

export interface KeyspaceFigures {
  keys: number;
  volatile: number;
  types: Record<string, number>;
  checksum: string;
}

const MAGIC = Buffer.from('MVREDIS1');

function redisField(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//');
}

let redisModule: Promise<typeof Redis> | undefined;
/** The redis client library, loaded on first use so other configs never pay its memory. */
const redisLib = () => (redisModule ??= import('redis'));

type Client = ReturnType<typeof makeClient>;

/** AUTH credentials that are not in the URL. */
interface RedisAuth { username?: string; password?: string }

function makeClient(lib: typeof Redis, url: string, auth: RedisAuth, database: number) {
  const { createClient, RESP_TYPES } = lib;
  return createClient({
    url, RESP: 2, database,
    ...(auth.username !== undefined ? { username: auth.username } : {}),
    ...(auth.password !== undefined ? { password: auth.password } : {}),
    socket: { connectTimeout: 10_000, reconnectStrategy: false },
  })
    .withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer, [RESP_TYPES.SIMPLE_STRING]: Buffer });
}

async function connect(url: string, auth: RedisAuth, database: number, what: string): Promise<Client> {
  const c = makeClient(await redisLib(), url, auth, database);
  c.on('error', () => undefined); // surfaced by the failing command
  try {
    await c.connect();
  } catch (err) {
    const msg = (err as Error).message;
    if (/WRONGPASS|NOAUTH|invalid password/i.test(msg)) throw new PermanentError(`${what}: authentication failed at ${redisField(url)}: ${msg}`);
    throw new RetryableError(`${what}: cannot connect to ${redisField(url)} db ${database}: ${msg}`, { cause: err });
  }
  return c;
}

function str(v: unknown): string {
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
}

/** The command that reads a key's whole logical value, by type (undefined: compare DUMP bytes). */
function valueCommand(type: string, key: Buffer): (string | Buffer)[] | undefined {
  switch (type) {
    case 'string': return ['GET', key];
    case 'list': return ['LRANGE', key, '0', '-1'];
    case 'set': return ['SMEMBERS', key];
    case 'zset': return ['ZRANGE', key, '0', '-1', 'WITHSCORES'];
    case 'hash': return ['HGETALL', key];
    case 'stream': return ['XRANGE', key, '-', '+'];
    default: return undefined;
  }
}

function flatten(v: unknown, out: Buffer[]): void {
  if (Array.isArray(v)) { out.push(Buffer.from(`[${v.length}`)); for (const x of v) flatten(x, out); }
  else if (Buffer.isBuffer(v)) out.push(v);
  else out.push(Buffer.from(v === null ? '\0null' : String(v)));
}

/** The items of (key, type, value) in canonical order: sets and hashes sorted, so any server holding the same data gives the same items. */
function canonicalItems(key: Buffer, type: string, value: unknown, dump: Buffer | null): Buffer[] {
  const items: Buffer[] = [key, Buffer.from(type)];
  if (type === 'set') {
    for (const m of [...(value as Buffer[])].sort(Buffer.compare)) items.push(m);
  } else if (type === 'hash') {
    const v = value as Buffer[];
    const pairs: [Buffer, Buffer][] = [];
    for (let i = 0; i < v.length; i += 2) pairs.push([v[i], v[i + 1]]);
    pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
    for (const [f, x] of pairs) items.push(f, x);
  } else if (valueCommand(type, key)) {
    flatten(value, items);
  } else if (dump) {
    items.push(dump);
  }
  return items;
}

/** Canonical bytes of (key, type, value): each item as u32 length | bytes, written into one buffer. */
export function canonical(key: Buffer, type: string, value: unknown, dump: Buffer | null): Buffer {
  const items = canonicalItems(key, type, value, dump);
  let n = 0;
  for (const b of items) n += 4 + b.length;
  const out = Buffer.allocUnsafe(n);
  let off = 0;
  for (const b of items) {
    out.writeUInt32LE(b.length, off);
    b.copy(out, off + 4);
    off += 4 + b.length;
  }
  return out;
}

/** SHA-256 of the canonical bytes of (key, type, value), what the keyspace checksum sums. */
function canonicalDigest(key: Buffer, type: string, value: unknown, dump: Buffer | null): Buffer {
  return hash('sha256', canonical(key, type, value, dump), 'buffer');
}

interface KeyRead { key: Buffer; type: string; pttl: number; dump: Buffer; digest: Buffer }

// Reads type, TTL, DUMP payload and logical value of each key of KEYS, one
// key at a time atomically (a script runs alone, like MULTI/EXEC, but can pick
// the read command by type). Many keys per call, so a SCAN batch costs a few
// round trips, not one per key; it stops after the key that brings the reply
// past ARGV[2] bytes (the caller sends the rest again), so a batch of large
// values never builds a reply of unbounded size. A key that no longer exists
// gives {'none'}.
const READ_KEYS = `
local function size(v)
  if type(v) == 'string' then return #v end
  if type(v) ~= 'table' then return 8 end
  local n = 0
  for i = 1, #v do n = n + size(v[i]) + 8 end
  return n
end
local budget = tonumber(ARGV[2])
local used = 0
local out = {}
for i, k in ipairs(KEYS) do
  local t = redis.call('TYPE', k).ok
  if t == 'none' then out[i] = {t} else
    local v
    if t == 'string' then v = redis.call('GET', k)
    elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
    elseif t == 'set' then v = redis.call('SMEMBERS', k)
    elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
    elseif t == 'hash' then v = redis.call('HGETALL', k)
    elseif t == 'stream' then v = redis.call('XRANGE', k, '-', '+')
    else v = false end
    local d = false
    if ARGV[1] == '1' or v == false then d = redis.call('DUMP', k) end
    out[i] = {t, redis.call('PTTL', k), d, v}
    used = used + size(d) + size(v)
  end
  if used >= budget then break end
end
return out`;

/** Keys per script call, calls in flight per connection, and the reply size after which a call stops early. */
const READ_BATCH = 128;
const READ_WINDOW = 4;
const READ_BUDGET = 8 << 20;

/** Reads keys atomically each, many per round trip; keys that no longer exist are left out. */
async function readKeys(c: Client, keys: Buffer[], withDump: boolean): Promise<KeyRead[]> {
  const out: KeyRead[] = [];
  let rest = keys;
  while (rest.length > 0) {
    const r = await c.sendCommand(['EVAL', READ_KEYS, String(rest.length), ...rest, withDump ? '1' : '0', String(READ_BUDGET)]) as unknown[][];
    if (r.length === 0) throw new IntegrityError('redis: the read script returned no key');
    for (let i = 0; i < r.length; i++) {
      const x = r[i];
      const type = str(x[0]);
      if (type === 'none') continue;
      const dump = (x[2] as Buffer | null) ?? null;
      if (withDump && dump === null) continue;
      const key = rest[i];
      out.push({ key, type, pttl: Number(x[1]), dump: withDump ? dump! : EMPTY, digest: canonicalDigest(key, type, x[3] ?? null, dump) });
    }
    rest = rest.slice(r.length);
  }
  return out;
}
const EMPTY = Buffer.alloc(0);

/**
 * Scans a database: the next SCAN is sent before the keys of this one are
 * read, and up to READ_WINDOW script calls of READ_BATCH keys are in flight on
 * the connection (pipelined), so the server is never waiting for the client.
 */
async function* scanKeys(c: Client, count: number, withDump: boolean): AsyncGenerator<KeyRead> {
  const scan = (cursor: string) => c.sendCommand(['SCAN', cursor, 'COUNT', String(count)]) as Promise<[Buffer, Buffer[]]>;
  let next: Promise<[Buffer, Buffer[]]> | undefined = scan('0');
  const inflight: Promise<KeyRead[]>[] = [];
  while (next) {
    const [cur, keys] = await next;
    const cursor = str(cur);
    next = cursor !== '0' ? scan(cursor) : undefined;
    next?.catch(() => undefined); // handled when awaited
    for (let i = 0; i < keys.length; i += READ_BATCH) {
      const p = readKeys(c, keys.slice(i, i + READ_BATCH), withDump);
      p.catch(() => undefined); // handled when awaited
      inflight.push(p);
      while (inflight.length >= READ_WINDOW) yield* await inflight.shift()!;
    }
  }
  while (inflight.length > 0) yield* await inflight.shift()!;
}

function i64(n: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigInt64LE(BigInt(n));
  return b;
}

function encodeRecord(k: KeyRead, now: number): Buffer {
  const t = Buffer.from(k.type);
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32LE(k.key.length);
  const dl = Buffer.allocUnsafe(4);
  dl.writeUInt32LE(k.dump.length);
  return Buffer.concat([head, k.key, Buffer.from([t.length]), t, i64(k.pttl), i64(k.pttl >= 0 ? now + k.pttl : -1), dl, k.dump]);
}

interface RestoreRecord { key: Buffer; pttl: number; expireAt: number; dump: Buffer }

/**
 * The records of one database's stream, parsed in place: keys and payloads are
 * views into the chunks (no copy), one array per chunk; a record that spans
 * chunks is joined once, when all of it has arrived.
 */
export async function* readRecords(src: AsyncIterable<Buffer>, db: number, name: string): AsyncGenerator<RestoreRecord[]> {
  let pend: Buffer[] = [];
  let pendLen = 0;
  let need = MAGIC.length + 4;
  let headerSeen = false;
  for await (const chunk of src) {
    pend.push(chunk);
    pendLen += chunk.length;
    if (pendLen < need) continue;
    const buf = pend.length === 1 ? pend[0] : Buffer.concat(pend, pendLen);
    let off = 0;
    if (!headerSeen) {
      if (!buf.subarray(0, MAGIC.length).equals(MAGIC) || buf.readUInt32LE(MAGIC.length) !== db) throw new IntegrityError(`${name}: not the memvault stream of redis db ${db}`);
      headerSeen = true;
      off = MAGIC.length + 4;
    }
    const out: RestoreRecord[] = [];
    need = 0;
    while (off < buf.length) {
      const left = buf.length - off;
      if (left < 5) break;
      const kl = buf.readUInt32LE(off);
      if (left < 4 + kl + 1) break;
      const tl = buf[off + 4 + kl];
      const head = 4 + kl + 1 + tl + 16 + 4;
      if (left < head) break;
      const t = off + 4 + kl + 1 + tl;
      const total = head + buf.readUInt32LE(t + 16);
      if (left < total) { need = total; break; }
      out.push({ key: buf.subarray(off + 4, off + 4 + kl), pttl: Number(buf.readBigInt64LE(t)), expireAt: Number(buf.readBigInt64LE(t + 8)), dump: buf.subarray(t + 20, off + total) });
      off += total;
    }
    const rest = buf.subarray(off);
    pend = rest.length ? [rest] : [];
    pendLen = rest.length;
    if (need === 0) need = pendLen + 1;
    if (out.length) yield out;
  }
  if (!headerSeen) throw new IntegrityError(`${name}: not the memvault stream of redis db ${db}`);
  if (pendLen > 0) throw new IntegrityError(`${name}: stream ends inside a record (${pendLen} bytes left)`);
}

export function parseKeyspace(info: string): number[] {
  const dbs: number[] = [];
  for (const line of info.split(/\r?\n/)) {
    const m = /^db(\d+):keys=(\d+)/.exec(line);
    if (m && Number(m[2]) > 0) dbs.push(Number(m[1]));
  }
  return dbs.sort((a, b) => a - b);
}

/** The AUTH credentials of a source or target: from its secret, or passwordEnv (local), or none (in the URL or no AUTH). */
async function credentials(s: { passwordEnv?: string; secretArn?: string }, field: string): Promise<RedisAuth> {
  if (s.secretArn) {
    const sf = `${field}.secretArn`;
    const sec = await readDatabaseSecret(s.secretArn, sf);
    const password = requireSecretField(sec, 'password', s.secretArn, sf, 'the AUTH token or the RBAC user\'s password');
    return { password, ...(sec.username ? { username: sec.username } : {}) };
  }
  if (!s.passwordEnv) return {};
  const v = process.env[s.passwordEnv];
  if (v === undefined) throw new ConfigError(`${field}.passwordEnv: environment variable ${s.passwordEnv} is not set`);
  return { password: v };
}

interface RedisRestoreOptions {
  url?: string;
  force: boolean;
  ttl: 'remaining' | 'absolute';
  passwordEnv?: string;
  secretArn?: string;
  /** Where the connection came from, for messages. */
  field: string;
  /** Database each backed-up database is restored into (source db -> target db). @default the same number */
  databaseMap: Record<string, number>;
  /** A drill: databases numbered from this one, in order of the backed-up databases. */
  scratchDb?: number;
  /** A drill: the run's tag, the value of SCRATCH_MARK. */
  tag?: string;
  /** How keys reach the target: one RDB by full sync (rdb-sync), RESTORE commands (restore), or rdb-sync where the target allows it (auto). */
  method: RestoreMethod;
  /** rdb-sync: the address memvault listens on for the target (host or host:port). @default 127.0.0.1 for a loopback target, else the local address of a connection to the target */
  syncListen?: { host: string; port: number };
  /** rdb-sync: the address the target connects to (host:port, e.g. behind NAT). @default the listen address */
  syncAnnounce?: { host: string; port: number };
}

type RestoreMethod = 'auto' | 'rdb-sync' | 'restore';

function hostPort(v: unknown, field: string): { host: string; port: number } | undefined {
  if (v === undefined) return undefined;
  const m = typeof v === 'string' ? /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(v) : null;
  if (!m || Number(m[2] ?? 0) > 65535) throw new UsageError(`restore target option ${field}: expected "host" or "host:port", got ${JSON.stringify(v)}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2] ?? 0) };
}

type RedisDrill = NonNullable<RedisSettings['drill']>;

const REDIS_TARGET_FIELDS = 'url (redis://host:6379), with passwordEnv; databaseMap ({"0": 5}) to restore into other database numbers';

function restoreOptions(o: Record<string, unknown> | undefined, drill?: RedisDrill): RedisRestoreOptions {
  const opts = o ?? {};
  if (opts.ttl !== undefined && opts.ttl !== 'remaining' && opts.ttl !== 'absolute') throw new UsageError(`restore target option ttl: expected "remaining" or "absolute", got ${JSON.stringify(opts.ttl)}`);
  const ttl = (opts.ttl as 'remaining' | 'absolute') ?? 'remaining';
  if (opts.method !== undefined && opts.method !== 'auto' && opts.method !== 'rdb-sync' && opts.method !== 'restore') {
    throw new UsageError(`restore target option method: expected "auto", "rdb-sync" or "restore", got ${JSON.stringify(opts.method)}`);
  }
  const method = (opts.method as RestoreMethod) ?? 'auto';
  const syncListen = hostPort(opts.syncListen, 'syncListen');
  const syncAnnounce = hostPort(opts.syncAnnounce, 'syncAnnounce');
  if (opts.scratch === true) {
    // A drill: the connection comes from components.<name>.drill, never through the execution input.
    if (!drill) throw new UsageError('restore target option scratch: the component has no drill setting (components.<name>.drill)');
    if (typeof opts.tag !== 'string' || !/^d[0-9a-f]{11}$/.test(opts.tag)) throw new UsageError(`restore target option tag: expected the drill's tag, got ${JSON.stringify(opts.tag)}`);
    return { url: drill.url, passwordEnv: drill.passwordEnv, secretArn: drill.secretArn, force: false, ttl, field: 'drill', databaseMap: {}, scratchDb: drill.db, tag: opts.tag, method, syncListen, syncAnnounce };
  }
  if (opts.url !== undefined && (typeof opts.url !== 'string' || !/^rediss?:\/\//.test(opts.url))) throw new UsageError('restore target option url: expected redis://host:port');
  if (opts.secretArn !== undefined && (typeof opts.secretArn !== 'string' || !SECRET_ARN.test(opts.secretArn))) throw new UsageError(`restore target option secretArn: ${SECRET_ARN_MESSAGE}`);
  if (opts.secretArn !== undefined && opts.url === undefined) throw new UsageError('restore target option secretArn: also set url (rediss://host:port of the target; the secret holds only the credentials)');
  const map = opts.databaseMap ?? {};
  if (typeof map !== 'object' || Array.isArray(map) || Object.entries(map as object).some(([k, v]) => !/^\d+$/.test(k) || !Number.isInteger(v) || (v as number) < 0)) {
    throw new UsageError(`restore target option databaseMap: expected {"<backed-up db>": <target db>}, got ${JSON.stringify(map)}`);
  }
  return {
    url: opts.url as string | undefined, force: opts.force === true, ttl, passwordEnv: opts.passwordEnv as string | undefined,
    secretArn: opts.secretArn as string | undefined, field: 'restore target', databaseMap: map as Record<string, number>,
    method, syncListen, syncAnnounce,
  };
}

/** The target database of each backed-up database of a manifest. */
function targetDbs(m: { entries?: Entry[]; id: string }, o: RedisRestoreOptions): Map<number, number> {
  // One entry per database: a Redis backup's entries are always inline.
  if (!m.entries) throw new IntegrityError(`backup ${m.id}: a Redis backup with its entries in parts is not one memvault writes`);
  const dbs = m.entries.map((e) => (e.meta as { db: number }).db).sort((a, b) => a - b);
  return new Map(dbs.map((db, i) => [db, o.scratchDb !== undefined ? o.scratchDb + i : o.databaseMap[String(db)] ?? db]));
}

/**
 * A drill writes this key into each scratch database right after finding it
 * empty, so its cleanup flushes only databases the drill itself filled (never
 * one that held keys when the drill came, e.g. a wrongly configured db).
 */
const SCRATCH_MARK = Buffer.from('memvault:drill-scratch');

async function figuresOf(c: Client, count: number, skip?: Buffer): Promise<KeyspaceFigures> {
  const sum = new RecordChecksum();
  const f: KeyspaceFigures = { keys: 0, volatile: 0, types: {}, checksum: '' };
  for await (const k of scanKeys(c, count, false)) {
    if (skip && k.key.equals(skip)) continue;
    sum.addDigest(k.digest);
    f.keys++;
    if (k.pttl >= 0) f.volatile++;
    f.types[k.type] = (f.types[k.type] ?? 0) + 1;
  }
  f.checksum = sum.hex();
  return f;
}

/** Why rdb-sync cannot be used on this target; auto falls back to RESTORE, an explicit rdb-sync fails with it. */
class SyncUnavailable extends Error {
  override name = 'SyncUnavailable';
}

/** How long the target has to connect to memvault's listener after REPLICAOF. */
const SYNC_CONNECT_MS = 10_000;

function infoField(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

/** The local address of a connection to the target: the address it most likely reaches memvault at. */
function localAddressTowards(url: string): Promise<string> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (/^(127\.|localhost$|::1$)/.test(host)) return Promise.resolve('127.0.0.1');
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port: Number(u.port || 6379) });
    const timer = setTimeout(() => { s.destroy(); reject(new Error('connect timeout')); }, 10_000);
    s.once('connect', () => { clearTimeout(timer); const a = s.localAddress ?? '127.0.0.1'; s.destroy(); resolve(a.replace(/^::ffff:/, '')); });
    s.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

/**
 * rdb-sync: the whole backup as one RDB handed to the target by a full sync
 * (redis-sync.ts), for every database at once. Before anything changes on the
 * target it checks what the method needs and throws SyncUnavailable when the
 * target cannot take it: REPLICAOF or CONFIG refused (managed services), a
 * server not empty (a full sync replaces every database; only an explicit
 * rdb-sync with force goes on), payloads of a newer RDB version than the
 * target loads, a maxmemory the data would not fit, or a target that cannot
 * reach the listener. The target's masterauth is set to a one-time password
 * the listener asks for (so nothing else that reaches the port gets the data)
 * and set back after; REPLICAOF NO ONE ends the sync whatever happens.
 */
async function restoreBySync(
  ctx: DriverRestoreContext<RedisSettings>, m: { entries: Entry[]; driver: Record<string, unknown> }, opts: RedisRestoreOptions & { url: string },
  pw: RedisAuth, to: Map<number, number>,
): Promise<number> {
  const where = `${ctx.component}: restore into ${redisField(opts.url)}`;
  const admin = await connect(opts.url, pw, 0, `${ctx.component}: restore`);
  const cmd = async (args: string[]) => str(await admin.sendCommand(args));
  let master: SyncMaster | undefined;
  let replicating = false;
  const saved: [string, string][] = [];
  const iters = new Map<Entry, AsyncGenerator<RestoreRecord[]>>();
  const inner: AsyncGenerator<RestoreRecord[]>[] = [];
  let tReplicaof = 0;
  let tConnected = 0;
  try {
    const info = await cmd(['INFO', 'all']);
    const targetRdb = rdbVersionFor(infoField(info, 'redis_version') ?? '');
    const held = parseKeyspace(info);
    if (held.length > 0 && !(opts.force && opts.method === 'rdb-sync')) {
      const what = `the target holds keys in db ${held.join(', ')} and a full sync replaces every database`;
      if (opts.method === 'rdb-sync') throw new UsageError(`${where}: method rdb-sync: ${what}; restore into an empty server, pass force (every database of the server is flushed) or use method restore`);
      throw new SyncUnavailable(what);
    }
    if (infoField(info, 'role') !== 'master') {
      throw new SyncUnavailable(`the target is a replica (role ${infoField(info, 'role')}) of another server; REPLICAOF NO ONE after a sync would detach it`);
    }
    if (process.env.AWS_LAMBDA_FUNCTION_NAME && opts.method === 'auto') {
      throw new SyncUnavailable('memvault runs in Lambda, which takes no inbound connection the target could sync from');
    }
    const maxmemory = Number(infoField(info, 'maxmemory') ?? 0);
    const need = m.entries.reduce((a, e) => a + e.size, 0);
    if (maxmemory > 0 && need > maxmemory - Number(infoField(info, 'used_memory') ?? 0)) {
      throw new SyncUnavailable(`the target's maxmemory (${maxmemory} bytes) leaves less room than the backup's ${need} bytes, and a replica loads past maxmemory (RESTORE keeps to the target's eviction policy)`);
    }
    // The RDB version of the payloads, from the first record (one backup comes from one server).
    let firstVersion = 0;
    for (const e of m.entries) {
      const it = readRecords(readEntry(ctx.vault, e), (e.meta as { db: number }).db, e.path);
      const first = await it.next();
      inner.push(it);
      iters.set(e, (async function* () { if (!first.done) yield first.value; yield* it; })());
      if (!first.done && first.value.length > 0) { firstVersion = splitPayload(first.value[0].dump, `${where} db ${to.get((e.meta as { db: number }).db)}: key ${keyName(first.value[0].key)}`).version; break; }
    }
    if (firstVersion === 0) throw new SyncUnavailable('the backup holds no key');
    if (firstVersion > targetRdb) throw new SyncUnavailable(`the backup's DUMP payloads are RDB version ${firstVersion}, newer than the target loads (${targetRdb})`);

    const host = opts.syncListen?.host ?? await localAddressTowards(opts.url);
    master = await SyncMaster.listen(host, opts.syncListen?.port ?? 0).catch((err: Error) => { throw new SyncUnavailable(`cannot listen on ${host}: ${err.message}`); });
    const announce = { host: opts.syncAnnounce?.host ?? host, port: opts.syncAnnounce?.port || master.port };
    try {
      for (const name of ['masterauth', 'masteruser', 'repl-diskless-load']) {
        const r = await admin.sendCommand(['CONFIG', 'GET', name]) as Buffer[];
        if (r.length >= 2) saved.push([name, str(r[1])]);
      }
      await cmd(['CONFIG', 'SET', 'masterauth', master.secret]);
      await cmd(['CONFIG', 'SET', 'masteruser', '']);
    } catch (err) {
      throw new SyncUnavailable(`the target refuses CONFIG (needed to give it the sync's one-time password): ${(err as Error).message}`);
    }
    // Load straight from the socket (no temporary file) when the server is empty.
    if (held.length === 0) await cmd(['CONFIG', 'SET', 'repl-diskless-load', 'on-empty-db']).catch(() => undefined);
    const [sec, usec] = (await admin.sendCommand(['TIME']) as Buffer[]).map((b) => Number(str(b)));
    const skew = sec * 1000 + Math.floor(usec / 1000) - Date.now();
    try {
      await cmd(['REPLICAOF', announce.host, String(announce.port)]);
      replicating = true;
      tReplicaof = Date.now();
    } catch (err) {
      throw new SyncUnavailable(`the target refuses REPLICAOF (managed services such as ElastiCache do): ${(err as Error).message}`);
    }
    const link = await master.waitForReplica(SYNC_CONNECT_MS).then((l) => { tConnected = Date.now(); return l; }, (err: Error) => {
      throw new SyncUnavailable(`the target did not sync from memvault at ${announce.host}:${announce.port} (${err.message}); set the target options syncListen / syncAnnounce to an address it reaches`);
    });

    // The target is syncing from here: errors are errors, not a reason to fall back.
    const queue: Buffer[] = [];
    const w = new RdbWriter((b) => queue.push(b));
    const send = async () => { while (queue.length) await link.write(queue.shift()!); };
    w.header(firstVersion, { 'redis-ver': String(m.driver.serverVersion ?? 'unknown'), 'redis-bits': '64', ctime: String(Math.floor(Date.now() / 1000)), 'memvault': 'rdb-sync' });
    const figures = (m.driver.databases ?? {}) as Record<string, KeyspaceFigures>;
    const expect = new Map<number, number>();
    const now = Date.now();
    for (const e of [...m.entries].sort((a, b) => to.get((a.meta as { db: number }).db)! - to.get((b.meta as { db: number }).db)!)) {
      const source = (e.meta as { db: number }).db;
      const db = to.get(source)!;
      const fig = figures[String(source)];
      w.selectDb(db, (fig?.keys ?? 0) + (opts.tag ? 1 : 0), fig?.volatile ?? 0);
      if (opts.tag) w.key(SCRATCH_MARK, -1, stringPayload(Buffer.from(opts.tag), firstVersion));
      let restored = 0;
      let expired = 0;
      try {
        for await (const batch of iters.get(e) ?? readRecords(readEntry(ctx.vault, e), source, e.path)) {
          for (const r of batch) {
            const what = `key ${keyName(r.key)}`;
            const p = splitPayload(r.dump, what);
            if (p.version > targetRdb) throw new PermanentError(`${what}: DUMP payload of RDB version ${p.version}, newer than the target loads (${targetRdb})`);
            let at = -1;
            if (r.pttl >= 0) {
              if (opts.ttl === 'absolute') {
                if (r.expireAt <= now) { expired++; continue; }
                at = r.expireAt;
              } else at = Date.now() + skew + Math.max(1, r.pttl);
            }
            w.key(r.key, at, p);
            restored++;
          }
          await send();
        }
      } catch (err) {
        if (err instanceof IntegrityError) throw new IntegrityError(`${where} db ${db}: ${err.message}`, err.objectKey);
        if (err instanceof PermanentError) throw new PermanentError(`${where} db ${db}: ${err.message}`, { cause: err });
        throw err;
      }
      const expected = (e.meta as { keys: number }).keys;
      if (restored + expired !== expected) throw new IntegrityError(`${ctx.component}: ${e.path}: read ${restored + expired} keys, backup has ${expected}`);
      if (expired > 0) ctx.log.info('redis restore: keys already past their original expiry were skipped', { component: ctx.component, db, expired });
      expect.set(db, restored + (opts.tag ? 1 : 0));
    }
    w.end();
    await send();
    await link.end();
    const tSent = Date.now();
    // Loaded when the link is up and no sync is in progress; a failed load shows as a dropped link or a new connection.
    const deadline = tSent + 60_000 + w.size / 20_000; // at least 20 MB/s after the stream
    for (;;) {
      if (link.failure) throw new RetryableError(`${where}: rdb-sync: ${link.failure.message}`);
      const r = await cmd(['INFO', 'replication']);
      if (infoField(r, 'master_link_status') === 'up' && infoField(r, 'master_sync_in_progress') === '0') break;
      if (Date.now() > deadline) throw new RetryableError(`${where}: rdb-sync: the target had not loaded the stream ${Math.round((Date.now() - tSent) / 1000)} s after it was sent (master_link_status ${infoField(r, 'master_link_status')})`);
      await new Promise((res) => setTimeout(res, 20));
    }
    const tLoaded = Date.now();
    // Counted while a replica: a replica expires no key, so a key whose TTL runs out meanwhile is still counted.
    const ks = parseKeyspaceCounts(await cmd(['INFO', 'keyspace']));
    for (const [db, n] of expect) {
      if ((ks.get(db) ?? 0) !== n) throw new IntegrityError(`${where} db ${db}: the target loaded ${ks.get(db) ?? 0} keys, the stream held ${n}`);
    }
    await cmd(['REPLICAOF', 'NO', 'ONE']);
    replicating = false;
    ctx.log.info('redis restore: loaded by rdb-sync', {
      component: ctx.component, bytes: w.size, connectMs: tConnected - tReplicaof, streamMs: tSent - tConnected, loadAfterStreamMs: tLoaded - tSent,
    });
    return need;
  } finally {
    master?.close();
    if (replicating) await cmd(['REPLICAOF', 'NO', 'ONE']).catch(() => undefined);
    for (const [name, value] of saved) await cmd(['CONFIG', 'SET', name, value]).catch(() => undefined);
    for (const it of [...iters.values(), ...inner]) await it.return(undefined).catch(() => undefined);
    await admin.close().catch(() => undefined);
  }
}

function keyName(k: Buffer): string {
  return k.subarray(0, 200).toString('utf8');
}

function parseKeyspaceCounts(info: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const m of info.matchAll(/^db(\d+):keys=(\d+)/gm)) out.set(Number(m[1]), Number(m[2]));
  return out;
}

export const redisDriver: Driver<RedisSettings> & DrillTargets<RedisSettings> & Masking<RedisSettings> = {
  kind: 'redis',
  mode: 'stream',
  schema: redisSchema,
  networkTargetFields: REDIS_TARGET_FIELDS,
  isNetworkTarget: (o) => !!o && (o.url !== undefined || o.scratch === true),
  drillTarget: (ctx) => (ctx.settings.drill ? { scratch: true, tag: ctx.tag } : undefined),

  async cleanupTarget(ctx) {
    const opts = restoreOptions(ctx.target.options, ctx.settings.drill);
    if (opts.scratchDb === undefined || !opts.url) throw new UsageError(`${ctx.component}: drill cleanup: the target is not the component's drill target`);
    const pw = await credentials(opts, opts.field);
    const flushed: number[] = [];
    const untouched: number[] = [];
    for (const db of targetDbs(ctx.manifest, opts).values()) {
      const c = await connect(opts.url, pw, db, `${ctx.component}: drill cleanup`);
      try {
        if (str(await c.sendCommand(['GET', SCRATCH_MARK])) === opts.tag) {
          await c.sendCommand(['FLUSHDB']);
          flushed.push(db);
        } else untouched.push(db);
      } finally {
        await c.close().catch(() => undefined);
      }
    }
    return `${redisField(opts.url)}: ${flushed.length ? `db ${flushed.join(', ')} flushed` : 'nothing flushed'}${untouched.length ? `; db ${untouched.join(', ')} not filled by this drill, left as they are` : ''}`;
  },

  async backup(ctx: DriverBackupContext<RedisSettings>) {
    const s = ctx.settings;
    const field = `components.${ctx.component}`;
    const pw = await credentials(s, field);
    const first = await connect(s.url, pw, 0, ctx.component);
    let dbs: number[];
    let version: string;
    try {
      const info = str(await first.sendCommand(['INFO', 'keyspace']));
      version = /redis_version:(\S+)/.exec(str(await first.sendCommand(['INFO', 'server'])))?.[1] ?? 'unknown';
      dbs = s.databases ?? parseKeyspace(info);
    } finally {
      await first.close().catch(() => undefined);
    }
    const entries: Entry[] = [];
    const databases: Record<string, KeyspaceFigures & { backupTime: number }> = {};
    for (const db of dbs) {
      const c = await connect(s.url, pw, db, ctx.component);
      try {
        const sum = new RecordChecksum();
        const fig: KeyspaceFigures = { keys: 0, volatile: 0, types: {}, checksum: '' };
        const backupTime = Date.now();
        async function* stream(): AsyncGenerator<Buffer> {
          const h = Buffer.allocUnsafe(4);
          h.writeUInt32LE(db);
          yield Buffer.concat([MAGIC, h]);
          let batch: Buffer[] = [];
          let size = 0;
          for await (const k of scanKeys(c, s.scanCount, true)) {
            sum.addDigest(k.digest);
            fig.keys++;
            if (k.pttl >= 0) fig.volatile++;
            fig.types[k.type] = (fig.types[k.type] ?? 0) + 1;
            const rec = encodeRecord(k, Date.now());
            batch.push(rec);
            size += rec.length;
            if (size >= 1 << 20) { yield Buffer.concat(batch); batch = []; size = 0; }
          }
          if (batch.length) yield Buffer.concat(batch);
        }
        const w = await ctx.writer.writeStream(stream());
        fig.checksum = sum.hex();
        databases[String(db)] = { ...fig, backupTime };
        entries.push({ path: `db${db}.redis`, type: 'file', mode: 0o600, size: w.size, sha256: w.sha256, chunks: w.chunks, meta: { db, keys: fig.keys } });
      } finally {
        await c.close().catch(() => undefined);
      }
    }
    return { entries, meta: { source: redisField(s.url), serverVersion: version, databases }, warnings: [] };
  },

  async restore(ctx: DriverRestoreContext<RedisSettings>) {
    const opts = restoreOptions(ctx.target.options, ctx.settings.drill);
    const m = await withEntries(ctx.vault, ctx.manifest);
    if (!opts.url) {
      const bytes = await restoreEntriesToDir(ctx.vault, ctx.component, m.entries, ctx.target.dir);
      return { location: ctx.target.dir, bytes, entries: m.entries.length };
    }
    const pw = await credentials(opts, opts.field);
    const to = targetDbs(m, opts);
    let bytes = 0;
    // Refuse a non-empty target before writing anything.
    for (const e of m.entries) {
      const db = to.get((e.meta as { db: number }).db)!;
      const c = await connect(opts.url, pw, db, `${ctx.component}: restore`);
      try {
        const n = Number(await c.sendCommand(['DBSIZE']));
        if (n > 0 && !opts.force) {
          throw new UsageError(opts.scratchDb !== undefined
            ? `drill target ${redisField(opts.url)} db ${db} (components.${ctx.component}.drill) already holds ${n} keys; drills restore into empty scratch databases only (a failed cleanup leaves keys: flush it by hand)`
            : `restore target ${redisField(opts.url)} db ${db} already holds ${n} keys; restore into an empty server or pass force (existing keys are replaced)`);
        }
      } finally {
        await c.close().catch(() => undefined);
      }
    }
    if (opts.method !== 'restore') {
      try {
        const bytes = await restoreBySync(ctx, { entries: m.entries, driver: m.driver }, { ...opts, url: opts.url }, pw, to);
        return { location: `${redisField(opts.url)} db ${[...to.values()].join(', ')}`, bytes, entries: m.entries.length, method: 'rdb-sync' };
      } catch (err) {
        if (err instanceof RetryableError || err instanceof PermanentError) throw err;
        if (!(err instanceof SyncUnavailable)) throw new RetryableError(`${ctx.component}: restore into ${redisField(opts.url)}: rdb-sync: ${(err as Error).message}`, { cause: err });
        if (opts.method === 'rdb-sync') throw new PermanentError(`${ctx.component}: restore into ${redisField(opts.url)}: method rdb-sync: ${err.message}`);
        ctx.log.info('redis restore: rdb-sync not possible on this target, restoring with RESTORE commands', { component: ctx.component, target: redisField(opts.url), reason: err.message });
      }
    }
    if (opts.tag) {
      for (const db of to.values()) {
        const c = await connect(opts.url, pw, db, `${ctx.component}: restore`);
        try {
          await c.sendCommand(['SET', SCRATCH_MARK, opts.tag]);
        } finally {
          await c.close().catch(() => undefined);
        }
      }
    }
    for (const e of m.entries) {
      const source = (e.meta as { db: number }).db;
      const db = to.get(source)!;
      const where = `${ctx.component}: restore into ${redisField(opts.url)} db ${db}`;
      let pipe: RespPipe | undefined;
      try {
        pipe = await RespPipe.open(opts.url, pw, db).catch((err: Error) => {
          throw new RetryableError(`${where}: cannot connect: ${err.message}`, { cause: err });
        });
        let restored = 0;
        let expired = 0;
        const now = Date.now();
        const p = pipe;
        const tail = opts.force ? (opts.ttl === 'absolute' ? ['REPLACE', 'ABSTTL'] : ['REPLACE']) : (opts.ttl === 'absolute' ? ['ABSTTL'] : []);
        for await (const batch of readRecords(readEntry(ctx.vault, e), source, e.path)) {
          for (const r of batch) {
            let args: (string | Buffer)[];
            if (r.pttl < 0) args = opts.force ? ['RESTORE', r.key, '0', r.dump, 'REPLACE'] : ['RESTORE', r.key, '0', r.dump];
            else if (opts.ttl === 'absolute') {
              if (r.expireAt <= now) { expired++; continue; }
              args = ['RESTORE', r.key, String(r.expireAt), r.dump, ...tail];
            } else args = ['RESTORE', r.key, String(Math.max(1, r.pttl)), r.dump, ...tail.filter((x) => x !== 'ABSTTL')];
            await p.send(args, r.key);
            restored++;
          }
        }
        await p.finish();
        const expected = (e.meta as { keys: number }).keys;
        if (restored + expired !== expected) throw new IntegrityError(`${e.path}: read ${restored + expired} keys, backup has ${expected}`);
        if (expired > 0) ctx.log.info('redis restore: keys already past their original expiry were skipped', { component: ctx.component, db, expired });
        bytes += e.size;
      } catch (err) {
        if (err instanceof IntegrityError) throw new IntegrityError(`${ctx.component}: ${err.message}`, err.objectKey);
        if (err instanceof RespCommandError) throw new PermanentError(`${where}: key ${err.message}`, { cause: err });
        if (err instanceof RetryableError || err instanceof PermanentError) throw err;
        throw new RetryableError(`${where}: ${(err as Error).message}`, { cause: err });
      } finally {
        pipe?.close();
      }
    }
    return { location: `${redisField(opts.url)} db ${[...to.values()].join(', ')}`, bytes, entries: m.entries.length, method: 'restore' };
  },

  async validate(hctx: DriverValidateContext<RedisSettings>) {
    const ctx = { ...hctx, manifest: await withEntries(hctx.vault, hctx.manifest) };
    const opts = restoreOptions(ctx.target.options, ctx.settings.drill);
    const expected = (ctx.manifest.driver.databases ?? {}) as Record<string, KeyspaceFigures>;
    const checks: ValidationCheck[] = [];
    if (!opts.url) {
      for (const e of ctx.manifest.entries) {
        const st = await fs.stat(path.join(ctx.location, e.path)).catch(() => null);
        checks.push({ name: `${e.path} restored`, ok: st?.size === e.size, expected: e.size, actual: st?.size });
      }
      return report(checks);
    }
    const pw = await credentials(opts, opts.field);
    const to = targetDbs(ctx.manifest, opts);
    for (const [db, fig] of Object.entries(expected)) {
      let c: Client | undefined;
      try {
        c = await connect(opts.url, pw, to.get(Number(db)) ?? Number(db), `${ctx.component}: validate`);
        const masked = ctx.masked?.databases?.[db];
        if (masked) {
          // Masked keys differ from the backup (deleted, or other values): the key count is compared,
          // and the keys no rule matched with their digest taken before masking.
          const rules = (ctx.settings.mask ?? []) as KeyMaskRule[];
          const u = await untouchedFigures(c, ctx.settings.scanCount ?? 1000, rules.map((r) => redisGlob(r.keys)), opts.tag ? SCRATCH_MARK : undefined);
          const keys = await keyCount(c, opts.tag ? SCRATCH_MARK : undefined);
          checks.push({ name: `db ${db}: keys (${masked.deleted} deleted by masking)`, ok: keys === fig.keys - masked.deleted, expected: fig.keys - masked.deleted, actual: keys });
          checks.push({ name: `db ${db}: keys no mask rule matches (checksum of keys, types and values checked before masking)`, ok: u.keys === masked.untouchedKeys && u.checksum === masked.untouchedSha256, expected: masked.untouchedSha256, actual: u.checksum });
          continue;
        }
        const a = await figuresOf(c, ctx.settings.scanCount ?? 1000, opts.tag ? SCRATCH_MARK : undefined);
        checks.push({ name: `db ${db}: keys`, ok: a.keys === fig.keys, expected: fig.keys, actual: a.keys });
        checks.push({ name: `db ${db}: keys per type`, ok: JSON.stringify(sortKeys(a.types)) === JSON.stringify(sortKeys(fig.types)), expected: fig.types, actual: a.types });
        checks.push({ name: `db ${db}: keys with a TTL`, ok: a.volatile === fig.volatile, expected: fig.volatile, actual: a.volatile });
        checks.push({ name: `db ${db}: checksum of keys, types and values`, ok: a.checksum === fig.checksum, expected: fig.checksum, actual: a.checksum });
      } catch (err) {
        checks.push({ name: `db ${db}: read the restored keys`, ok: false, actual: (err as Error).message });
      } finally {
        await c?.close().catch(() => undefined);
      }
    }
    return report(checks);
  },

  async mask(ctx: DriverMaskContext<RedisSettings>) {
    const opts = restoreOptions(ctx.target.options, ctx.settings.drill);
    if (!opts.url) {
      throw new ConfigError(`components.${ctx.component}.mask: a sanitized restore of a redis component needs a server target (target option url, or components.${ctx.component}.drill for drills); a dump file cannot be masked`);
    }
    const rules = ctx.rules as KeyMaskRule[];
    const globs = rules.map((r) => redisGlob(r.keys));
    const touched = rules.map(() => 0);
    const databases: NonNullable<MaskOutcome['databases']> = {};
    const pw = await credentials(opts, opts.field);
    const skip = opts.tag ? SCRATCH_MARK : undefined;
    for (const [db, to] of targetDbs(ctx.manifest, opts)) {
      const c = await connect(opts.url, pw, to, `${ctx.component}: mask`);
      try {
        const before = await untouchedFigures(c, ctx.settings.scanCount ?? 1000, globs, skip);
        let deleted = 0;
        let changed = 0;
        for (const k of before.matched) {
          const i = globs.findIndex((g) => g.test(k.key.toString('latin1')));
          const rule = rules[i];
          const where = `${ruleName(ctx.component, i)} (${describeRule(rule)})`;
          if (rule.method === 'delete') {
            await c.sendCommand(['DEL', k.key]);
            deleted++;
          } else if (k.type === 'string') {
            const v = rule.method === 'redact' ? rule.value ?? '' : String(hashValue(ctx.key, str(await c.sendCommand(['GET', k.key]))));
            await c.sendCommand(['SET', k.key, v, 'KEEPTTL']);
            changed++;
          } else if (k.type === 'hash') {
            const fields = rule.field !== undefined ? [rule.field] : ((await c.sendCommand(['HKEYS', k.key])) as Buffer[]).map((f) => str(f));
            for (const f of fields) {
              const old = await c.sendCommand(['HGET', k.key, f]);
              if (old === null || old === undefined) continue;
              await c.sendCommand(['HSET', k.key, f, rule.method === 'redact' ? rule.value ?? '' : String(hashValue(ctx.key, str(old)))]);
            }
            changed++;
          } else {
            throw new ConfigError(`${where}: key ${k.key.toString('latin1')} in db ${db} is a ${k.type}; method ${rule.method} applies to strings and hashes (use method: delete)`);
          }
          touched[i]++;
        }
        const after = await untouchedFigures(c, ctx.settings.scanCount ?? 1000, globs, skip);
        if (after.keys !== before.keys || after.checksum !== before.checksum) {
          throw new IntegrityError(`${ctx.component}: masking db ${to} changed keys no rule matches`);
        }
        databases[String(db)] = { deleted, changed, untouchedKeys: before.keys, untouchedSha256: before.checksum };
      } finally {
        await c.close().catch(() => undefined);
      }
    }
    return { rules: rules.map((r, i) => ({ rule: ruleName(ctx.component, i), describe: describeRule(r), touched: touched[i], unit: 'keys' as const })), databases };
  },
};

/** A Redis MATCH glob (`*`, `?`, `[abc]`, `[^a]`, `\x`) as a RegExp over the key's bytes (latin1). */
export function redisGlob(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i];
    if (ch === '\\' && i + 1 < glob.length) re += glob[++i].replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    else if (ch === '*') re += '[\\s\\S]*';
    else if (ch === '?') re += '[\\s\\S]';
    else if (ch === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) { re += '\\['; continue; }
      const body = glob.slice(i + 1, end).replace(/^\^/, '^').replace(/\\/g, '\\\\');
      re += `[${body}]`;
      i = end;
    } else re += ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Keys of the database, and the digest of those no glob matches (the matched ones listed). */
async function untouchedFigures(c: Client, count: number, globs: RegExp[], skip?: Buffer): Promise<{ keys: number; checksum: string; matched: KeyRead[] }> {
  const sum = new RecordChecksum();
  let keys = 0;
  const matched: KeyRead[] = [];
  for await (const k of scanKeys(c, count, false)) {
    if (skip && k.key.equals(skip)) continue;
    const name = k.key.toString('latin1');
    if (globs.some((g) => g.test(name))) { matched.push(k); continue; }
    sum.addDigest(k.digest);
    keys++;
  }
  return { keys, checksum: sum.hex(), matched };
}

async function keyCount(c: Client, skip?: Buffer): Promise<number> {
  const n = Number(await c.sendCommand(['DBSIZE']));
  return skip && Number(await c.sendCommand(['EXISTS', skip])) === 1 ? n - 1 : n;
}

function sortKeys(o: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}
