// verify-drill into network scratch targets, as on AWS: a PostgreSQL 15, a
// Redis and an S3-compatible server (s3rver) on loopback, run through the local
// runtime with the handler config marked as an AWS deploy (`aws` present), so
// that any restore into a directory is refused. restore-component and
// validate-restore share nothing but the state: the sandbox directory is
// removed before every step, and restore-component is checked to write no file
// on this machine. Restored rows / keys / objects equal the source; the scratch
// database, redis databases and objects are gone afterwards, on success and
// when validation fails; a failed cleanup alerts naming the scratch target.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { createClient } from 'redis';
import { ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { startPostgres, type PostgresHandle } from '../helpers/postgres.ts';
import { startRedis, type RedisHandle } from '../helpers/redis.ts';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.ts';
import { makeFixture, type Fixture } from '../helpers/fixture.ts';
import { createS3PrefixDriver } from '../../functions/components/s3-prefix.ts';
import { driverFor } from '../../functions/components/registry.ts';
import type { MemvaultConfig } from '../../functions/core/config.ts';
import type { Handler } from '../../functions/handlers/deps.ts';
import { alerts, run } from './helpers.ts';
import { awsSchema } from '../../functions/core/aws-config.ts';

const SCHEMA = `
  CREATE TABLE memories (id serial PRIMARY KEY, fact text NOT NULL, score real);
  INSERT INTO memories (fact, score) SELECT 'fact ' || g, g / 7.0 FROM generate_series(1, 300) g;
  CREATE INDEX memories_fact ON memories (fact);`;

async function listTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const e of await fs.readdir(path.join(root, rel), { withFileTypes: true }).catch(() => [])) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) await walk(r);
      out.push(r);
    }
  };
  await walk('');
  return out.sort();
}

async function pgDatabases(server: PostgresHandle): Promise<string[]> {
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  try {
    return (await c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'memvault_drill_%'")).rows.map((r) => r.datname);
  } finally {
    await c.end();
  }
}

async function pgRows(url: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<{ r: string }>('SELECT id || \'|\' || fact || \'|\' || score AS r FROM memories ORDER BY id')).rows.map((x) => x.r);
  } finally {
    await c.end();
  }
}

describe('verify-drill into scratch targets on database, redis and S3 servers', () => {
  let pgServer: PostgresHandle;
  let redis: RedisHandle;
  let s3: S3rverHandle;
  let admin: S3Client;
  let sourceUrl: string;
  const redisKeys: Record<string, string> = {};
  const objects: Record<string, Buffer> = { 'a/weights.bin': randomBytes(90_000), 'tokenizer.json': Buffer.from('{"v":1}') };

  beforeAll(async () => {
    [pgServer, redis, s3] = await Promise.all([startPostgres(), startRedis(), startS3rver()]);
    sourceUrl = await pgServer.createDatabase('memory', SCHEMA);
    const r = createClient({ url: redis.url });
    await r.connect();
    for (let i = 0; i < 40; i++) redisKeys[`session:${i}`] = `value ${i}`;
    for (const [k, v] of Object.entries(redisKeys)) await r.set(k, v);
    await r.hSet('profile:1', { name: 'ada', lang: 'en' });
    await r.close();
    admin = s3.client();
    for (const [k, v] of Object.entries(objects)) await admin.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `models/${k}`, Body: v, ContentLength: v.length }));
  }, 60_000);
  afterAll(async () => {
    admin?.destroy();
    await Promise.all([pgServer?.stop(), redis?.stop(), s3?.close()]);
  });

  async function setup(): Promise<{ f: Fixture; cfg: MemvaultConfig; deps: { driverFor: (k: string) => ReturnType<typeof driverFor> } }> {
    const f = await makeFixture({
      'memory-pg': { kind: 'postgres', url: sourceUrl, method: 'driver', drill: { url: pgServer.urlFor('postgres') } },
      'working-memory': { kind: 'redis', url: redis.url, databases: [0], drill: { url: redis.url, db: 9 } },
      weights: { kind: 's3-prefix', bucket: s3.bucket, prefix: 'models/', endpoint: s3.endpoint, drill: { bucket: s3.bucket, prefix: 'drill-scratch/', endpoint: s3.endpoint } },
    }, { extra: { sandbox: 'sandbox' } });
    const client = s3.client();
    const s3Driver = createS3PrefixDriver({ clientFor: () => client });
    const deps = { driverFor: (k: string) => (k === 's3-prefix' ? s3Driver : driverFor(k)) };
    // Marked as the handler config of an AWS deploy: a restore into a directory is refused.
    const cfg = { ...f.cfg, aws: awsSchema.parse({ account: '123456789012', region: 'eu-west-1', drRegion: 'eu-central-1' }) } as unknown as MemvaultConfig;
    return { f, cfg, deps };
  }

  /** Every step starts without the sandbox; restore-component writes no file on this machine. */
  function noFileHandOff(f: Fixture, seen: { restoreWrites: string[] }) {
    return (name: string, fn: Handler): Handler => async (event) => {
      await fs.rm(path.join(f.dir, 'sandbox'), { recursive: true, force: true });
      if (name !== 'RestoreComponent') return fn(event);
      const before = await listTree(f.dir);
      try {
        return await fn(event);
      } finally {
        const after = await listTree(f.dir);
        seen.restoreWrites.push(...after.filter((p) => !before.includes(p)));
      }
    };
  }

  it('restores each component into its scratch target, validates it there, and removes the scratch data', async () => {
    const { f, cfg, deps } = await setup();
    const backup = await run({ ...f, cfg }, 'backup-run', { type: 'full', replicate: false }, { deps });
    expect(backup.status, backup.cause).toBe('SUCCEEDED');

    // What the drill restores, seen from the scratch targets in the middle of the run (before cleanup).
    const seen = { restoreWrites: [] as string[], pgRows: [] as string[], redisKeys: 0, objects: [] as string[] };
    const wrapNoHandOff = noFileHandOff(f, seen);
    const r = await run({ ...f, cfg }, 'verify-drill', { readData: 'all' }, {
      deps, name: 'drill-scratch-1',
      wrap: (name, fn) => {
        const inner = wrapNoHandOff(name, fn);
        if (name !== 'CleanupRestore') return inner;
        return async (event: any) => {
          const c = event.item.component;
          if (c === 'memory-pg') seen.pgRows = await pgRows(pgServer.urlFor(event.item.options.scratchDatabase));
          if (c === 'working-memory') {
            const rc = createClient({ url: redis.url, database: 9 });
            await rc.connect();
            seen.redisKeys = await rc.dbSize();
            expect(await rc.get('session:7')).toBe('value 7');
            await rc.close();
          }
          if (c === 'weights') {
            const l = await admin.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'drill-scratch/' }));
            seen.objects = (l.Contents ?? []).map((o) => o.Key!.replace(/^drill-scratch\/d[0-9a-f]{11}\//, '')).sort();
          }
          return inner(event);
        };
      },
    });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const out = r.output as any;
    expect(out.restores.map((x: any) => [x.component, x.validation.ok]).sort()).toEqual([['memory-pg', true], ['weights', true], ['working-memory', true]]);
    expect(out.restores.find((x: any) => x.component === 'weights').validation.checks).toContainEqual(expect.objectContaining({ name: 'objects restored with matching size and SHA-256', ok: true, actual: 2 }));
    expect(seen.restoreWrites).toEqual([]);
    await expect(fs.stat(path.join(f.dir, 'sandbox'))).rejects.toThrow();

    // Restored content equals the source.
    expect(seen.pgRows).toEqual(await pgRows(sourceUrl));
    expect(seen.pgRows).toHaveLength(300);
    expect(seen.redisKeys).toBe(Object.keys(redisKeys).length + 1 + 1); // the keys, the hash, the drill's scratch mark
    expect(seen.objects).toEqual(Object.keys(objects).sort());
    for (const x of out.restores) expect(x.cleanup.cleaned).not.toMatch(/^no scratch/);

    // The scratch data is gone.
    expect(await pgDatabases(pgServer)).toEqual([]);
    const rc = createClient({ url: redis.url, database: 9 });
    await rc.connect();
    expect(await rc.dbSize()).toBe(0);
    await rc.close();
    const l = await admin.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'drill-scratch/' }));
    expect(l.Contents ?? []).toEqual([]);
    // The source is untouched.
    const src = await admin.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'models/' }));
    expect((src.Contents ?? []).map((o) => o.Key).sort()).toEqual(Object.keys(objects).map((k) => `models/${k}`).sort());
    expect(await alerts(f)).toEqual([]);
  }, 120_000);

  it('fails the drill naming the component when the restored data does not validate, and still drops the scratch database', async () => {
    const { f, cfg, deps } = await setup();
    expect((await run({ ...f, cfg }, 'backup-run', { type: 'full', replicate: false, components: ['memory-pg'] }, { deps })).status).toBe('SUCCEEDED');
    const seen = { restoreWrites: [] as string[] };
    const wrapNoHandOff = noFileHandOff(f, seen);
    const r = await run({ ...f, cfg }, 'verify-drill', { readData: 'none', components: ['memory-pg'] }, {
      deps, name: 'drill-scratch-bad',
      wrap: (name, fn) => {
        const inner = wrapNoHandOff(name, fn);
        if (name !== 'ValidateRestore') return inner;
        return async (event: any) => {
          // Damage the restored copy between the two steps: validation must see it in the scratch database.
          const c = new pg.Client({ connectionString: pgServer.urlFor(event.item.options.scratchDatabase) });
          await c.connect();
          await c.query('DELETE FROM memories WHERE id = 17');
          await c.end();
          return inner(event);
        };
      },
    });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('DrillFailed');
    expect(r.cause).toMatch(/memory-pg at validate: IntegrityError: .*table public\.memories: rows: expected 300, got 299/);
    expect((await alerts(f)).filter((a) => a.step === 'validate').map((a) => a.component)).toEqual(['memory-pg']);
    expect(await pgDatabases(pgServer)).toEqual([]);
    expect(seen.restoreWrites).toEqual([]);
  }, 120_000);

  it('alerts naming the scratch target when the cleanup fails', async () => {
    const { f, cfg, deps } = await setup();
    expect((await run({ ...f, cfg }, 'backup-run', { type: 'full', replicate: false, components: ['working-memory'] }, { deps })).status).toBe('SUCCEEDED');
    const rc = createClient({ url: redis.url });
    await rc.connect();
    try {
      const r = await run({ ...f, cfg }, 'verify-drill', { readData: 'none', components: ['working-memory'] }, {
        deps, name: 'drill-scratch-cleanup',
        wrap: (name, fn) => (name !== 'CleanupRestore' ? fn : async (event) => {
          // The scratch server starts asking for a password: the cleanup cannot connect.
          await rc.sendCommand(['CONFIG', 'SET', 'requirepass', 'now-locked']);
          try {
            return await fn(event);
          } finally {
            await rc.sendCommand(['AUTH', 'now-locked']);
            await rc.sendCommand(['CONFIG', 'SET', 'requirepass', '']);
          }
        }),
      });
      // The restore validated: the drill passes, and the leftover is alerted.
      expect(r.status, r.cause).toBe('SUCCEEDED');
      const a = (await alerts(f)).filter((x) => x.step === 'cleanup');
      expect(a).toHaveLength(1);
      expect(a[0].component).toBe('working-memory');
      expect(a[0].cause).toMatch(/drill cleanup of working-memory failed; remove the scratch data by hand: components\.working-memory\.drill \{url=redis:\/\/127\.0\.0\.1:\d+, db=9, tag=d[0-9a-f]{11}\}/);
      const c9 = createClient({ url: redis.url, database: 9 });
      await c9.connect();
      expect(await c9.dbSize()).toBeGreaterThan(0);
      await c9.flushDb();
      await c9.close();
    } finally {
      await rc.close();
    }
  }, 120_000);

  it('drills from the DR vault ("from": "secondary") into the same scratch targets', async () => {
    const { f, cfg, deps } = await setup();
    expect((await run({ ...f, cfg }, 'backup-run', { type: 'full', components: ['memory-pg', 'weights'] }, { deps })).status).toBe('SUCCEEDED');
    const seen = { restoreWrites: [] as string[] };
    const r = await run({ ...f, cfg }, 'verify-drill', { from: 'secondary', readData: 'all' }, { deps, wrap: noFileHandOff(f, seen) });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect((r.output as any).from).toBe('secondary');
    expect((r.output as any).restores.map((x: any) => [x.component, x.validation.ok]).sort()).toEqual([['memory-pg', true], ['weights', true]]);
    expect(seen.restoreWrites).toEqual([]);
    expect(await pgDatabases(pgServer)).toEqual([]);
    expect((await admin.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'drill-scratch/' }))).Contents ?? []).toEqual([]);
  }, 120_000);

  it('fails at plan-drill on AWS for a component without a drill target, naming components.<name>.drill', async () => {
    const { f, cfg, deps } = await setup();
    expect((await run({ ...f, cfg }, 'backup-run', { type: 'full', replicate: false, components: ['memory-pg'] }, { deps })).status).toBe('SUCCEEDED');
    const { drill: _d, ...noDrill } = cfg.components['memory-pg'];
    const bare = { ...cfg, components: { ...cfg.components, 'memory-pg': noDrill } } as MemvaultConfig;
    const r = await run({ ...f, cfg: bare }, 'verify-drill', { readData: 'none', components: ['memory-pg'] }, { deps });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('ConfigError');
    expect(r.cause).toMatch(/components\.memory-pg\.drill: not set; on AWS a drill restores memory-pg \(postgres\) into a scratch target/);
    expect((await alerts(f)).map((a) => a.step)).toEqual(['plan']);
  }, 60_000);

  it('refuses a console restore on AWS without a network target, listing the target fields of the kind', async () => {
    const { f, cfg, deps } = await setup();
    expect((await run({ ...f, cfg }, 'backup-run', { type: 'full', replicate: false, components: ['memory-pg'] }, { deps })).status).toBe('SUCCEEDED');
    const r = await run({ ...f, cfg }, 'restore', { mode: 'latest', components: ['memory-pg'] }, { deps });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('UsageError');
    expect(r.cause).toMatch(/target\.options\.memory-pg: on AWS a postgres restore goes to a network target, not a directory .*set url \(postgres:\/\/user@host:5432\/db\), or host\/port\/user\/database, with passwordEnv or secretArn/);
    await expect(fs.stat(path.join(f.dir, 'sandbox'))).rejects.toThrow();

    // Named: restored into that database, validated there.
    const target = pgServer.urlFor(`restored_${createHash('sha256').update(f.dir).digest('hex').slice(0, 8)}`);
    // A password never travels in a restore request (it would stay in the execution history): the URL without it, the password by passwordEnv.
    const u = new URL(target);
    process.env.MEMVAULT_TEST_RESTORE_PG_PASSWORD = decodeURIComponent(u.password);
    u.password = '';
    const ok = await run({ ...f, cfg }, 'restore', { mode: 'latest', components: ['memory-pg'], target: { options: { 'memory-pg': { url: u.toString(), passwordEnv: 'MEMVAULT_TEST_RESTORE_PG_PASSWORD' } } } }, { deps });
    expect(ok.status, ok.cause).toBe('SUCCEEDED');
    expect(await pgRows(target)).toEqual(await pgRows(sourceUrl));
    const dir = await run({ ...f, cfg }, 'restore', { mode: 'latest', target: { dir: 'sandbox/x' } }, { deps });
    expect(dir.error).toBe('UsageError');
    expect(dir.cause).toMatch(/target\.dir: on AWS a restore does not go to a directory/);
  }, 120_000);
});
