// The redis component beside the server's own RDB, on the same keyspace: a
// working-memory dataset (strings of 100 B-4 KiB, log-uniform, hashes, lists,
// sets, zsets, a stream with a consumer group; a PX TTL on a third of the keys)
// in a throwaway redis-server on loopback (test/helpers/redis.ts).
//   memvault: backup, then restore into a fresh redis-server, once by full
//             sync (method rdb-sync: one RDB written from the DUMP payloads)
//             and once by RESTORE commands (method restore), each timed
//             without the validation that follows a restore (reported apart;
//             rdb-sync's log line gives its stream and load times);
//   native:   redis-cli --rdb FILE (the dump), then a redis-server started with
//             that file as its dbfilename, timed from spawn until it answers
//             PING (no longer LOADING) with DBSIZE equal to the source's.
//
//   npx tsx bench/redis-restore.ts [--keys 200000] [--repeat 1]
import { parseArgs } from 'node:util';
import { spawn, spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, mkdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { redisServerBinary, startRedis } from '../test/helpers/redis.ts';
import { freePort } from '../test/helpers/postgres.ts';
import { parseConfig } from '../functions/core/config.ts';
import { driverFor, kindSchemas } from '../functions/components/registry.ts';
import { initVaults } from '../functions/ops.ts';
import { openVault } from '../functions/services.ts';
import { backupComponent } from '../functions/core/backup.ts';
import { parseManifestKey, type Manifest } from '../functions/core/manifest.ts';
import { jsonLogger, silentLogger } from '../functions/logger.ts';
import { redisDriver, readRecords } from '../functions/components/redis.ts';
import { readEntry } from '../functions/core/writer.ts';

const { values } = parseArgs({ options: { keys: { type: 'string', default: '200000' }, repeat: { type: 'string', default: '1' } } });
const KEYS = Number(values.keys);
const REPEAT = Number(values.repeat);
const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** Deterministic pseudo-random numbers (mulberry32), so the same --keys gives the same data. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = 'the agent remembers user prefers concise answers about travel budget meeting notes embedding recall episode summary tool call result error retry plan step goal context window token cache session'.split(' ');
function text(r: () => number, bytes: number): string {
  let s = '';
  while (s.length < bytes) s += WORDS[Math.floor(r() * WORDS.length)] + (r() < 0.1 ? '. ' : ' ');
  return s.slice(0, bytes);
}

async function load(url: string): Promise<{ keys: number; volatile: number }> {
  const c = createClient({ url, RESP: 2 });
  c.on('error', () => undefined);
  await c.connect();
  const r = rng(12);
  let volatile = 0;
  let pending: Promise<unknown>[] = [];
  const send = async (args: string[]) => {
    pending.push(c.sendCommand(args));
    if (pending.length >= 2000) { await Promise.all(pending); pending = []; }
  };
  for (let i = 0; i < KEYS - 1; i++) {
    const p = r();
    let key: string;
    if (p < 0.6) {
      key = `mem:str:${i}`;
      await send(['SET', key, text(r, Math.round(100 * Math.pow(40.96, r())))]);
    } else if (p < 0.75) {
      key = `mem:hash:${i}`;
      const n = 5 + Math.floor(r() * 40);
      await send(['HSET', key, ...Array.from({ length: n }, (_v, j) => [`f${j}`, text(r, 10 + Math.floor(r() * 80))]).flat()]);
    } else if (p < 0.85) {
      key = `mem:list:${i}`;
      await send(['RPUSH', key, ...Array.from({ length: 5 + Math.floor(r() * 60) }, () => text(r, 20 + Math.floor(r() * 200)))]);
    } else if (p < 0.92) {
      key = `mem:set:${i}`;
      await send(['SADD', key, ...Array.from({ length: 5 + Math.floor(r() * 50) }, (_v, j) => `tag-${j}-${Math.floor(r() * 1000)}`)]);
    } else {
      key = `mem:zset:${i}`;
      await send(['ZADD', key, ...Array.from({ length: 5 + Math.floor(r() * 50) }, (_v, j) => [String(r() * 1000), `item-${j}`]).flat()]);
    }
    if (r() < 1 / 3) { await send(['PEXPIRE', key, String(3_600_000 + Math.floor(r() * 86_400_000))]); volatile++; }
  }
  for (let i = 0; i < 5000; i++) await send(['XADD', 'mem:events', '*', 'kind', WORDS[i % WORDS.length], 'n', String(i), 'body', text(r, 120)]);
  await send(['XGROUP', 'CREATE', 'mem:events', 'workers', '0']);
  await send(['XREADGROUP', 'GROUP', 'workers', 'w1', 'COUNT', '1000', 'STREAMS', 'mem:events', '>']);
  await Promise.all(pending);
  const keys = Number(await c.sendCommand(['DBSIZE']));
  await c.close();
  return { keys, volatile };
}

function ping(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.on('connect', () => s.write('PING\r\nDBSIZE\r\n'));
    s.on('data', (d) => {
      buf += String(d);
      if (buf.startsWith('-') || buf.split('\r\n').length > 2) { s.destroy(); resolve(buf); }
    });
    s.on('error', () => resolve(''));
  });
}

/** Starts a redis-server loading `rdb`; resolves with the time until it answers PING with `keys` keys. */
async function loadRdb(rdb: string, keys: number): Promise<number> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'memvault-rdbload-'));
  await copyFile(rdb, path.join(dir, 'dump.rdb'));
  spawnSync('sync');
  const port = await freePort();
  const t = Date.now();
  const proc = spawn(redisServerBinary(), ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--dbfilename', 'dump.rdb',
    '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
  try {
    for (;;) {
      const r = await ping(port);
      if (r.startsWith('+PONG')) {
        const ms = Date.now() - t;
        const n = Number(/:(\d+)/.exec(r)?.[1]);
        if (n !== keys) throw new Error(`the RDB loaded ${n} keys, the source has ${keys}`);
        return ms;
      }
      if (proc.exitCode !== null) throw new Error('redis-server loading the RDB exited');
      await new Promise((res) => setTimeout(res, 2));
    }
  } finally {
    proc.kill('SIGKILL');
    await new Promise((res) => setTimeout(res, 50));
    await rm(dir, { recursive: true, force: true });
  }
}

const source = await startRedis();
const dir = await mkdtemp(path.join(os.tmpdir(), 'memvault-redisbench-'));
const best = (xs: number[]) => Math.min(...xs);
try {
  let t = Date.now();
  const src = await load(source.url);
  console.log(`generated ${src.keys} keys (${src.volatile} with a TTL) in ${sec(Date.now() - t)}`);
  const cfg = parseConfig({ vault: { primary: `file://${dir}/vault` }, encryption: { key: `${dir}/memvault.key` },
    components: { cache: { kind: 'redis', url: source.url } } }, kindSchemas, dir);
  await initVaults(cfg);
  const vault = await openVault(cfg);
  const rdb = path.join(dir, 'dump.rdb');
  const times = { rdbDump: [] as number[], rdbLoad: [] as number[], backup: [] as number[], restore: [] as number[], rdbSync: [] as number[], validate: [] as number[], vaultRead: [] as number[] };
  let manifest: Manifest | undefined;
  await mkdir(path.join(dir, 'x'), { recursive: true });
  for (let i = 0; i < REPEAT; i++) {
    t = Date.now();
    const d = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(source.port), '--rdb', rdb], { encoding: 'utf8' });
    if (d.status !== 0) throw new Error(`redis-cli --rdb: ${d.stderr}`);
    times.rdbDump.push(Date.now() - t);
    times.rdbLoad.push(await loadRdb(rdb, src.keys));

    t = Date.now();
    const out = await backupComponent({ cfg, vault, driverFor, log: silentLogger }, 'cache', i === 0 ? 'full' : 'incremental');
    times.backup.push(Date.now() - t);
    manifest = await vault.readManifest(parseManifestKey(out.manifestKey)!) as Manifest;
    // The part of a restore that is reading the vault: every chunk fetched, decrypted, hashed and parsed into records, nothing sent.
    t = Date.now();
    for (const e of manifest.entries) for await (const _b of readRecords(readEntry(vault, e), (e.meta as { db: number }).db, e.path)) { /* read only */ }
    times.vaultRead.push(Date.now() - t);
    const ctx = { component: 'cache', settings: cfg.components.cache as never, manifest, vault, resolve: (p: string) => p, log: jsonLogger({}, 'info') };
    for (const method of ['rdb-sync', 'restore'] as const) {
      const target = await startRedis();
      try {
        const tgt = { dir: path.join(dir, 'x'), options: { url: target.url, method } };
        t = Date.now();
        const rr = await redisDriver.restore({ ...ctx, target: tgt });
        (method === 'rdb-sync' ? times.rdbSync : times.restore).push(Date.now() - t);
        if (rr.method !== method) throw new Error(`restored by ${rr.method}, not ${method}`);
        t = Date.now();
        const v = await redisDriver.validate({ ...ctx, target: tgt, location: rr.location });
        if (method === 'restore') times.validate.push(Date.now() - t);
        if (!v.ok) throw new Error(`validation after ${method} failed: ${JSON.stringify(v.checks.filter((x) => !x.ok))}`);
      } finally {
        await target.stop();
      }
    }
  }
  const rdbBytes = (await stat(rdb)).size;
  const stored = manifest!.entries.reduce((a, e) => a + e.size, 0);
  console.log(JSON.stringify({ keys: src.keys, rdbBytes, streamBytes: stored, ...times }));
  const row = (what: string, mv: number, native: number, nativeName: string) =>
    `| ${what.padEnd(28)} | ${sec(mv).padStart(8)} | ${sec(native).padStart(8)} | ${nativeName.padEnd(22)} | ${(mv / native).toFixed(1).padStart(5)}x |`;
  console.log(`\n${src.keys} keys, RDB ${(rdbBytes / 2 ** 20).toFixed(0)} MiB, memvault stream ${(stored / 2 ** 20).toFixed(0)} MiB; best of ${REPEAT}\n`);
  console.log('| step                         | memvault |   native | native tool            | ratio |');
  console.log('|------------------------------|----------|----------|------------------------|-------|');
  console.log(row('backup', best(times.backup), best(times.rdbDump), 'redis-cli --rdb'));
  console.log(row('restore, method rdb-sync', best(times.rdbSync), best(times.rdbLoad), 'redis-server RDB load'));
  console.log(row('restore, method restore', best(times.restore), best(times.rdbLoad), 'redis-server RDB load'));
  console.log(row('rdb-sync + validation', best(times.rdbSync) + best(times.validate), best(times.rdbLoad), 'redis-server RDB load'));
  console.log(`| validation alone             | ${sec(best(times.validate)).padStart(8)} |          |                        |       |`);
console.log(`| of the restore: vault read   | ${sec(best(times.vaultRead)).padStart(8)} |          |                        |       |`);
} finally {
  await source.stop();
  await rm(dir, { recursive: true, force: true });
}
