// Sanitized restores into network targets, as on AWS (the handler config marked
// as an AWS deploy, so nothing is restored into a directory): a real
// PostgreSQL 15 and Redis on loopback. A drill masks the scratch database and
// the scratch redis databases before validation (seen from the cleanup step,
// the last one before they are dropped); a "sandbox": true restore into a
// database masks it; a production restore of the same backup keeps the values.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createClient } from 'redis';
import { startPostgres, type PostgresHandle } from '../helpers/postgres.ts';
import { startRedis, type RedisHandle } from '../helpers/redis.ts';
import { makeFixture } from '../helpers/fixture.ts';
import type { MemvaultConfig } from '../../functions/core/config.ts';
import { awsSchema } from '../../functions/core/aws-config.ts';
import { run } from './helpers.ts';
import { restoreItem } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { fullBackup, vaultSetup } from '../helpers/pg-vault.ts';

const EMAILS = ['ada.lovelace@prod-corp.com', 'grace.hopper@prod-corp.com', 'alan.turing@prod-corp.com'];
const NAMES = ['Ada Lovelace', 'Grace Hopper', 'Alan Turing'];
const TOKENS = ['sk_live_4f9a8b7c6d5e4f3a', 'sk_live_0a1b2c3d4e5f6a7b', 'sk_live_99887766554433aa'];

const SCHEMA = `
  CREATE SCHEMA app;
  CREATE TABLE app.users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, name text, settings jsonb, plan text, touched int NOT NULL DEFAULT 0,
    email_len int GENERATED ALWAYS AS (length(email)) STORED);
  CREATE TABLE orders (id serial PRIMARY KEY, user_email text NOT NULL, total numeric(10,2) NOT NULL);
  CREATE TABLE facts (id serial PRIMARY KEY, fact text NOT NULL);
  CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.touched := NEW.touched + 1; RETURN NEW; END $$;
  CREATE TRIGGER users_touch BEFORE UPDATE ON app.users FOR EACH ROW EXECUTE FUNCTION app.touch();
  ${EMAILS.map((e, i) => `INSERT INTO app.users (email, name, settings, plan) VALUES ('${e}', '${NAMES[i]}', '{"api": {"token": "${TOKENS[i]}"}, "theme": "dark"}', 'pro');`).join('\n')}
  INSERT INTO orders (user_email, total) SELECT e, 10 * g FROM unnest(ARRAY['${EMAILS.join("','")}']) e, generate_series(1, 4) g;
  INSERT INTO facts (fact) SELECT 'fact ' || g FROM generate_series(1, 200) g;`;

const PG_MASK = [
  { table: 'app.users', column: 'email', method: 'hash' },
  { table: 'app.users', column: 'name', method: 'redact' },
  { table: 'app.users', column: 'settings', path: '$.api.token', method: 'constant', value: 'masked-token' },
  { table: 'orders', column: 'user_email', method: 'hash' },
];
const REDIS_MASK = [
  { keys: 'session:*', method: 'delete' },
  { keys: 'user:*', method: 'hash', field: 'email' },
  { keys: 'token:?', method: 'redact', value: 'x' },
];

async function pgAll(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

async function redisDump(url: string, db: number): Promise<Record<string, unknown>> {
  const c = createClient({ url, database: db });
  await c.connect();
  const out: Record<string, unknown> = {};
  try {
    for (const k of (await c.keys('*')).sort()) {
      const t = await c.type(k);
      out[k] = t === 'hash' ? await c.hGetAll(k) : t === 'string' ? await c.get(k) : t;
    }
  } finally {
    await c.close();
  }
  return out;
}

/** A password never travels in a restore request: the URL without it, the password by passwordEnv. */
function passwordless(url: string): { url: string; passwordEnv: string } {
  const u = new URL(url);
  process.env.MEMVAULT_TEST_MASK_PG_PASSWORD = decodeURIComponent(u.password);
  u.password = '';
  return { url: u.toString(), passwordEnv: 'MEMVAULT_TEST_MASK_PG_PASSWORD' };
}

describe('sanitized restores into network targets (postgres, redis)', () => {
  let pgServer: PostgresHandle;
  let redis: RedisHandle;
  let sourceUrl: string;

  beforeAll(async () => {
    [pgServer, redis] = await Promise.all([startPostgres(), startRedis()]);
    sourceUrl = await pgServer.createDatabase('memory', SCHEMA);
    const r = createClient({ url: redis.url });
    await r.connect();
    for (let i = 0; i < 10; i++) await r.set(`session:${i}`, `session of ${EMAILS[i % 3]}`);
    for (let i = 0; i < 3; i++) await r.hSet(`user:${i}`, { email: EMAILS[i], lang: 'en' });
    await r.set('token:1', TOKENS[0], { EX: 3600 });
    for (let i = 0; i < 20; i++) await r.set(`cache:${i}`, `value ${i}`);
    await r.close();
  }, 60_000);
  afterAll(async () => {
    await Promise.all([pgServer?.stop(), redis?.stop()]);
  });

  async function setup(pgMask: unknown[] = PG_MASK) {
    const f = await makeFixture({
      'memory-pg': { kind: 'postgres', url: sourceUrl, method: 'driver', drill: { url: pgServer.urlFor('postgres') }, mask: pgMask },
      'working-memory': { kind: 'redis', url: redis.url, databases: [0], drill: { url: redis.url, db: 9 }, mask: REDIS_MASK },
    }, { extra: { sandbox: 'sandbox' } });
    const cfg = { ...f.cfg, aws: awsSchema.parse({ account: '123456789012', region: 'eu-west-1', drRegion: 'eu-central-1' }) } as unknown as MemvaultConfig;
    return { f: { ...f, cfg } };
  }

  it('a drill masks the scratch database and redis databases before validation: no production value, counts equal, joins kept, the rest equal', async () => {
    const { f } = await setup();
    expect((await run(f, 'backup-run', { type: 'full', replicate: false })).status).toBe('SUCCEEDED');
    const seen: { users: any[]; orders: any[]; facts: any[]; joined: any[]; redis: Record<string, unknown> } = { users: [], orders: [], facts: [], joined: [], redis: {} };
    const r = await run(f, 'verify-drill', { readData: 'none' }, {
      name: 'mask-net-1',
      wrap: (name, fn) => name !== 'CleanupRestore' ? fn : async (event: any) => {
        if (event.item.component === 'memory-pg') {
          const url = pgServer.urlFor(event.item.options.scratchDatabase);
          seen.users = await pgAll(url, 'SELECT id, email, name, settings, plan, touched, email_len FROM app.users ORDER BY id');
          seen.orders = await pgAll(url, 'SELECT id, user_email, total FROM orders ORDER BY id');
          seen.facts = await pgAll(url, 'SELECT * FROM facts ORDER BY id');
          seen.joined = await pgAll(url, 'SELECT count(*)::int AS n FROM orders o JOIN app.users u ON u.email = o.user_email');
        } else {
          seen.redis = await redisDump(redis.url, 9);
        }
        return fn(event);
      },
    });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const out = r.output as any;
    const pgOut = out.restores.find((x: any) => x.component === 'memory-pg');
    expect(pgOut.masking.rules.map((m: any) => [m.rule, m.touched, m.unit])).toEqual([
      ['components.memory-pg.mask.0', 3, 'rows'], ['components.memory-pg.mask.1', 3, 'rows'], ['components.memory-pg.mask.2', 3, 'rows'], ['components.memory-pg.mask.3', 12, 'rows'],
    ]);
    expect(pgOut.validation.checks.filter((c: any) => /unmasked columns/.test(c.name)).map((c: any) => c.ok)).toEqual([true, true]);
    const rOut = out.restores.find((x: any) => x.component === 'working-memory');
    expect(rOut.masking.rules.map((m: any) => [m.touched, m.unit])).toEqual([[10, 'keys'], [3, 'keys'], [1, 'keys']]);
    expect(rOut.validation.checks.find((c: any) => /keys \(10 deleted/.test(c.name))?.ok).toBe(true);

    // The scratch database held no production value when validation ran.
    const text = JSON.stringify([seen.users, seen.orders]);
    for (const v of [...EMAILS, ...NAMES, ...TOKENS]) expect(text.includes(v), v).toBe(false);
    const src = await pgAll(sourceUrl, 'SELECT id, email, name, settings, plan, touched, email_len FROM app.users ORDER BY id');
    expect(seen.users.map((u) => [u.id, u.plan, u.touched, u.settings.theme, u.name, u.settings.api.token])).toEqual(src.map((u) => [u.id, u.plan, 0, 'dark', null, 'masked-token']));
    expect(seen.users.map((u) => u.email.length)).toEqual(EMAILS.map((e) => e.split('@')[0].length + '@12345678.invalid'.length));
    expect(seen.joined).toEqual([{ n: 12 }]);
    expect(seen.orders.map((o) => [o.id, o.total])).toEqual((await pgAll(sourceUrl, 'SELECT id, total FROM orders ORDER BY id')).map((o) => [o.id, o.total]));
    expect(seen.facts).toEqual(await pgAll(sourceUrl, 'SELECT * FROM facts ORDER BY id'));

    // Redis: sessions gone, emails hashed (the same hash as in PostgreSQL: one key per vault), token redacted, the rest equal.
    expect(Object.keys(seen.redis).filter((k) => k.startsWith('session:'))).toEqual([]);
    expect(JSON.stringify(seen.redis).includes('prod-corp')).toBe(false);
    expect(seen.redis['token:1']).toBe('x');
    expect((seen.redis['user:0'] as any).lang).toBe('en');
    expect(seen.users.map((u) => u.email)).toContain((seen.redis['user:0'] as any).email);
    for (let i = 0; i < 20; i++) expect(seen.redis[`cache:${i}`]).toBe(`value ${i}`);
  }, 120_000);

  it('a "sandbox": true restore into a database masks it; a production restore of the same backup keeps every value', async () => {
    const { f } = await setup();
    expect((await run(f, 'backup-run', { type: 'full', replicate: false, components: ['memory-pg'] })).status).toBe('SUCCEEDED');
    const sanitized = pgServer.urlFor('sanitized_copy');
    const s = await run(f, 'restore', { mode: 'latest', components: ['memory-pg'], sandbox: true, target: { options: { 'memory-pg': passwordless(sanitized) } } }, { name: 'net-sanitized' });
    expect(s.status, s.cause).toBe('SUCCEEDED');
    const masked = await pgAll(sanitized, 'SELECT email, name, settings FROM app.users ORDER BY id');
    for (const v of [...EMAILS, ...NAMES, ...TOKENS]) expect(JSON.stringify(masked).includes(v)).toBe(false);
    expect(await pgAll(sanitized, 'SELECT count(*)::int AS n FROM orders')).toEqual([{ n: 12 }]);

    const production = pgServer.urlFor('production_copy');
    const p = await run(f, 'restore', { mode: 'latest', components: ['memory-pg'], target: { options: { 'memory-pg': passwordless(production) } } }, { name: 'net-production' });
    expect(p.status, p.cause).toBe('SUCCEEDED');
    expect(await pgAll(production, 'SELECT email, name, settings FROM app.users ORDER BY id')).toEqual(await pgAll(sourceUrl, 'SELECT email, name, settings FROM app.users ORDER BY id'));
    expect((p.output as any).components[0].masking).toBeNull();
  }, 120_000);

  it('a rule naming a missing column fails the drill naming the rule, and the scratch database is dropped', async () => {
    const { f } = await setup([PG_MASK[0], { table: 'app.users', column: 'phone', method: 'redact' }]);
    expect((await run(f, 'backup-run', { type: 'full', replicate: false, components: ['memory-pg'] })).status).toBe('SUCCEEDED');
    const r = await run(f, 'verify-drill', { readData: 'none', components: ['memory-pg'] }, { name: 'mask-net-bad' });
    expect(r.status).toBe('FAILED');
    expect(r.cause).toMatch(/components\.memory-pg\.mask\.1 \(app\.users\.phone redact\): table app\.users has no column "phone"/);
    expect(await pgAll(pgServer.urlFor('postgres'), "SELECT datname FROM pg_database WHERE datname LIKE 'memvault_drill_%'")).toEqual([]);
  }, 120_000);

  it('vector: a sanitized restore masks metadata columns, keeps ids and vectors; unsanitized keeps the metadata', async () => {
    const src = await pgServer.createDatabase('vec_mask_src', `
      CREATE TABLE emb (id text PRIMARY KEY, v real[], owner text, attrs jsonb);
      INSERT INTO emb SELECT 'doc-' || g, ARRAY[g, g / 2.0, -g]::real[], (ARRAY['${EMAILS.join("','")}'])[1 + g % 3], jsonb_build_object('token', 'sk_live_' || g, 'lang', 'en') FROM generate_series(1, 60) g;`);
    const s = await vaultSetup({ emb: { kind: 'vector', url: src, table: 'emb', vectorColumn: 'v', metadataColumns: ['owner', 'attrs'], dimensions: 3,
      mask: [{ table: 'emb', column: 'owner', method: 'hash' }, { table: 'emb', column: 'attrs', path: '$.token', method: 'redact' }] } });
    const { ref } = await fullBackup(s, 'emb');
    const deps = { cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger };
    const masked = pgServer.urlFor('vec_mask_sanitized');
    const r = await restoreItem(deps, { component: 'emb', ref }, s.dir, { url: masked }, true);
    expect(r.validation.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.masking!.rules.map((m) => m.touched)).toEqual([60, 60]);
    expect(r.validation.checks.find((c) => /unmasked metadata/.test(c.name))?.ok).toBe(true);
    const rows: any[] = await pgAll(masked, 'SELECT id, v::text AS v, owner, attrs FROM emb ORDER BY id');
    expect(JSON.stringify(rows)).not.toMatch(/prod-corp|sk_live_/);
    const orig = await pgAll(src, 'SELECT id, v::text AS v, owner, attrs FROM emb ORDER BY id');
    expect(rows.map((x) => [x.id, x.v, x.attrs.lang, x.attrs.token])).toEqual(orig.map((x) => [x.id, x.v, 'en', null]));
    expect(new Set(rows.map((x) => x.owner)).size).toBe(3);
    const plain = pgServer.urlFor('vec_mask_production');
    const p = await restoreItem(deps, { component: 'emb', ref }, s.dir, { url: plain });
    expect(p.validation.ok).toBe(true);
    expect(await pgAll(plain, 'SELECT id, v::text AS v, owner, attrs FROM emb ORDER BY id')).toEqual(orig);
  }, 120_000);
});
