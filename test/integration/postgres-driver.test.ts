// The postgres driver against a real PostgreSQL 15 started by the harness:
// both export methods (pg_dump and the pure driver path) back up a database
// while writers commit transfers and orders, restore into a fresh database and
// validate there. Consistency is checked by invariants the writers keep in
// every transaction (total balance constant, order total = sum of its items),
// and restored rows are compared with the source where nothing writes.
import { spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import pg from 'pg';
import { startPostgres, type PostgresHandle } from '../helpers/postgres.ts';
import { parseConfig } from '../../functions/core/config.ts';
import { driverFor, kindSchemas } from '../../functions/components/registry.ts';
import { restoreItem } from '../../functions/core/restore.ts';
import { parseManifestKey, type Manifest } from '../../functions/core/manifest.ts';
import { silentLogger } from '../../functions/logger.ts';
import { postgresDriver, resolvePgConnection, type DatabaseFigures } from '../../functions/components/postgres.ts';
import { NotFoundError, PermanentError, RetryableError, UsageError } from '../../functions/core/errors.ts';
import { fullBackup, pgQuery, vaultSetup, type Setup } from '../helpers/pg-vault.ts';

const SCHEMA = `
CREATE EXTENSION citext;
CREATE EXTENSION pg_trgm;
CREATE SCHEMA memory;
CREATE TYPE memory.mood AS ENUM ('calm', 'curious', 'alarmed');
CREATE TABLE accounts (id serial PRIMARY KEY, owner citext UNIQUE NOT NULL, balance bigint NOT NULL CHECK (balance >= 0));
CREATE TABLE orders (id bigserial PRIMARY KEY, created timestamptz NOT NULL DEFAULT now(), total numeric(12,2) NOT NULL);
CREATE TABLE order_items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE, qty int NOT NULL, amount numeric(12,2) NOT NULL);
CREATE INDEX order_items_order ON order_items (order_id);
CREATE TABLE memory.notes (
  id int PRIMARY KEY, body text, tags text[], embedding real[], data jsonb, mood memory.mood, blob bytea,
  at timestamptz, touched int NOT NULL DEFAULT 0,
  words tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(body, ''))) STORED);
CREATE INDEX notes_body_trgm ON memory.notes USING gin (body gin_trgm_ops);
CREATE VIEW memory.calm_notes AS SELECT id, body FROM memory.notes WHERE mood = 'calm';
CREATE FUNCTION memory.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.touched := NEW.touched + 1; RETURN NEW; END $$;
CREATE TRIGGER notes_touch BEFORE UPDATE ON memory.notes FOR EACH ROW EXECUTE FUNCTION memory.touch();
CREATE SEQUENCE memory.ticket START 1000 INCREMENT 7;
SELECT nextval('memory.ticket'), nextval('memory.ticket');
INSERT INTO accounts (owner, balance) SELECT 'Owner-' || g, 1000 FROM generate_series(1, 50) g;
INSERT INTO orders (total) SELECT 30 FROM generate_series(1, 40);
INSERT INTO order_items (order_id, qty, amount) SELECT o.id, 1, 10 FROM orders o, generate_series(1, 3);
INSERT INTO memory.notes (id, body, tags, embedding, data, mood, blob, at) VALUES
  (1, E'tab\\there\\nnew line \\\\ backslash', ARRAY['a', 'b c', NULL], ARRAY[0.1, -2.5, 3e-8]::real[], '{"k": [1, 2, {"x": null}]}', 'calm', '\\x00ff10', '2024-02-29 12:00:00+02'),
  (2, NULL, '{}', NULL, 'null', 'alarmed', '', NULL),
  (3, 'ünïcødé ✓ 💾 "quotes" ''single''', ARRAY['\\N', 'x'], ARRAY[1, 2, 3]::real[], '{"deep": {"a": "b\\tc"}}', 'curious', NULL, '1999-12-31 23:59:59.999999+00'),
  (4, E'carriage\\rreturn', NULL, '{}', '[]', 'calm', '\\x5c4e', 'infinity');
UPDATE memory.notes SET body = body WHERE id = 4;
`;

const TOTAL_BALANCE = 50 * 1000;

const q = (url: string) => pgQuery(url);

/** Writers committing transfers (total constant) and orders with items (total = sum of items) until stopped. */
function startWriters(url: string) {
  let stop = false;
  const commits: number[] = [];
  const worker = async (kind: 'transfer' | 'order') => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      while (!stop) {
        await c.query('BEGIN');
        if (kind === 'transfer') {
          const a = 1 + Math.floor(Math.random() * 50);
          const b = 1 + ((a + Math.floor(Math.random() * 48)) % 50);
          const amt = 1 + Math.floor(Math.random() * 5);
          // Lock both rows in id order first, so two concurrent transfers cannot deadlock.
          await c.query('SELECT id FROM accounts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE', [a, b]);
          const r = await c.query('UPDATE accounts SET balance = balance - $2 WHERE id = $1 AND balance >= $2', [a, amt]);
          if (r.rowCount === 1) await c.query('UPDATE accounts SET balance = balance + $2 WHERE id = $1', [b, amt]);
        } else {
          const n = 1 + Math.floor(Math.random() * 4);
          const o = await c.query<{ id: string }>('INSERT INTO orders (total) VALUES ($1) RETURNING id', [n * 2.5]);
          for (let i = 0; i < n; i++) await c.query('INSERT INTO order_items (order_id, qty, amount) VALUES ($1, 1, 2.5)', [o.rows[0].id]);
        }
        await c.query('COMMIT');
        commits.push(Date.now());
      }
    } finally {
      await c.end();
    }
  };
  const done = Promise.all([worker('transfer'), worker('order'), worker('transfer')]);
  return {
    commits,
    async stop() { stop = true; await done; },
  };
}

const setup = (components: Record<string, unknown>): Promise<Setup> => vaultSetup(components, 'memvault-pgtest-');

const backup = fullBackup;

const sourceNotes = `SELECT id, body, tags, embedding::text AS embedding, data, mood::text AS mood, encode(blob, 'hex') AS blob, at::text AS at, touched, words::text AS words FROM memory.notes ORDER BY id`;
const structure = `SELECT c.relname, (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid)::int AS indexes,
  (SELECT count(*) FROM pg_constraint k WHERE k.conrelid = c.oid)::int AS constraints,
  (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)::int AS triggers
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'memory') AND c.relkind IN ('r', 'v') ORDER BY 1`;

let server: PostgresHandle;
beforeAll(async () => { server = await startPostgres(); });
afterAll(async () => { await server?.stop(); });

describe.each(['pg_dump', 'driver'] as const)('postgres driver, method %s', (method) => {
  let s: Setup;
  let srcUrl: string;
  let manifest: Manifest;
  let ref: ReturnType<typeof parseManifestKey> & object;
  let ordersBefore: number;
  let ordersAfter: number;
  let commitsDuring: number;
  const restoredUrl = () => server.urlFor(`restored_${method}`);

  beforeAll(async () => {
    srcUrl = await server.createDatabase(`src_${method}`, SCHEMA);
    s = await setup({ memdb: { kind: 'postgres', url: srcUrl, method } });
    const writers = startWriters(srcUrl);
    while (writers.commits.length < 20) await new Promise((r) => setTimeout(r, 10));
    ordersBefore = Number((await q(srcUrl)('SELECT count(*) AS n FROM orders'))[0].n);
    const t0 = Date.now();
    const b = await backup(s, 'memdb');
    const t1 = Date.now();
    // Give the writers time to commit past the end of the backup, then stop them.
    await new Promise((r) => setTimeout(r, 50));
    await writers.stop();
    commitsDuring = writers.commits.filter((t) => t >= t0 && t <= t1).length;
    ordersAfter = Number((await q(srcUrl)('SELECT count(*) AS n FROM orders'))[0].n);
    manifest = b.manifest;
    ref = b.ref;
  });
  afterAll(async () => { await rm(s.dir, { recursive: true, force: true }); });

  it('records one snapshot of a database under write load', () => {
    expect(commitsDuring).toBeGreaterThan(0);
    expect(manifest.driver.method).toBe(method);
    expect(manifest.warnings).toEqual([]);
    const figs = manifest.driver as unknown as DatabaseFigures;
    expect(Object.keys(figs.tables).sort()).toEqual(['memory.notes', 'public.accounts', 'public.order_items', 'public.orders']);
    expect(figs.tables['memory.notes'].rows).toBe(4);
    expect(figs.tables['public.accounts'].rows).toBe(50);
    expect(figs.tables['public.orders'].rows).toBeGreaterThanOrEqual(ordersBefore);
    expect(figs.tables['public.orders'].rows).toBeLessThanOrEqual(ordersAfter);
    expect(figs.extensions).toEqual(expect.arrayContaining(['citext', 'pg_trgm']));
    expect(figs.sequences['memory.ticket']).toMatchObject({ lastValue: '1007', isCalled: true });
  });

  it('restores into a fresh database, consistent, and validates it there', async () => {
    const r = await restoreItem({ cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger }, { component: 'memdb', ref }, path.join(s.dir, 'restore'), { url: restoredUrl() });
    expect(r.validation.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.validation.ok).toBe(true);
    expect(r.validation.checks.length).toBeGreaterThan(16);
    const dst = q(restoredUrl());
    const figs = manifest.driver as unknown as DatabaseFigures;
    // The invariants every writer transaction keeps hold in the restored copy.
    expect(Number((await dst('SELECT sum(balance) AS s FROM accounts'))[0].s)).toBe(TOTAL_BALANCE);
    expect(await dst('SELECT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id GROUP BY o.id HAVING o.total <> coalesce(sum(i.amount), 0)')).toEqual([]);
    expect(Number((await dst('SELECT count(*) AS n FROM orders'))[0].n)).toBe(figs.tables['public.orders'].rows);
    // Rows nobody writes to are restored value for value (text, arrays, floats, jsonb, enums, bytea, timestamps, generated columns).
    expect(await dst(sourceNotes)).toEqual(await q(srcUrl)(sourceNotes));
    // Indexes, constraints, triggers, the view and the extensions.
    expect(await dst(structure)).toEqual(await q(srcUrl)(structure));
    expect(await dst('SELECT id FROM memory.calm_notes ORDER BY id')).toEqual([{ id: 1 }, { id: 4 }]);
    expect((await dst('SELECT extname FROM pg_extension ORDER BY 1')).map((e) => e.extname)).toEqual(['citext', 'pg_trgm', 'plpgsql']);
    expect((await dst("SELECT count(*)::int AS n FROM accounts WHERE owner = 'OWNER-7'"))[0].n).toBe(1); // citext semantics
    // Sequences continue past the restored rows: new inserts do not collide.
    await dst('INSERT INTO orders (total) VALUES (0)');
    await dst('INSERT INTO order_items (order_id, qty, amount) SELECT max(id), 1, 0 FROM orders');
    expect((await dst("SELECT nextval('memory.ticket')::int AS n"))[0].n).toBe(1014);
    await dst('UPDATE memory.notes SET body = body WHERE id = 1');
    expect((await dst('SELECT touched FROM memory.notes WHERE id = 1'))[0].touched).toBe(1);
    await expect(dst('INSERT INTO accounts (owner, balance) VALUES ($1, -1)', ['neg'])).rejects.toThrow(/check constraint/);
    await expect(dst('INSERT INTO order_items (order_id, qty, amount) VALUES (999999, 1, 1)')).rejects.toThrow(/foreign key/);
  });

  it('validation fails when the restored data differs', async () => {
    const url = server.urlFor(`tampered_${method}`);
    const r = await postgresDriver.restore({ component: 'memdb', settings: s.cfg.components.memdb as never, manifest, vault: s.vault, target: { dir: s.dir, options: { url } }, resolve: (p) => p, log: silentLogger });
    await q(url)("UPDATE memory.notes SET body = 'changed' WHERE id = 2");
    await q(url)('DELETE FROM order_items WHERE id = (SELECT min(id) FROM order_items)');
    const v = await postgresDriver.validate({ component: 'memdb', settings: s.cfg.components.memdb as never, manifest, vault: s.vault, target: { dir: s.dir, options: { url } }, location: r.location, resolve: (p) => p, log: silentLogger });
    expect(v.ok).toBe(false);
    expect(v.checks.filter((c) => !c.ok).map((c) => c.name).sort()).toEqual([
      'table memory.notes: content checksum', 'table public.order_items: content checksum', 'table public.order_items: rows',
    ]);
  });

  it('refuses a target database that already holds tables, unless forced', async () => {
    const ctx = { component: 'memdb', settings: s.cfg.components.memdb as never, manifest, vault: s.vault, resolve: (p: string) => p, log: silentLogger };
    await expect(postgresDriver.restore({ ...ctx, target: { dir: s.dir, options: { url: srcUrl } } })).rejects.toThrow(UsageError);
    const url = await server.createDatabase(`busy_${method}`, 'CREATE TABLE unrelated (x int); INSERT INTO unrelated VALUES (1)');
    await expect(postgresDriver.restore({ ...ctx, target: { dir: s.dir, options: { url } } })).rejects.toThrow(/already holds 1 /);
    const r = await postgresDriver.restore({ ...ctx, target: { dir: s.dir, options: { url, force: true } } });
    const v = await postgresDriver.validate({ ...ctx, target: { dir: s.dir, options: { url } }, location: r.location });
    expect(v.ok).toBe(true);
    expect((await q(url)('SELECT x FROM unrelated'))).toEqual([{ x: 1 }]);
  });

  it('without a target url, writes a dump file that PostgreSQL tools restore', async () => {
    const dir = path.join(s.dir, `files-${method}`);
    const ctx = { component: 'memdb', settings: s.cfg.components.memdb as never, manifest, vault: s.vault, resolve: (p: string) => p, log: silentLogger };
    const r = await postgresDriver.restore({ ...ctx, target: { dir } });
    expect(r.location).toBe(path.join(dir, method === 'pg_dump' ? `src_${method}.pgdump` : `src_${method}.sql`));
    const fileCheck = await postgresDriver.validate({ ...ctx, target: { dir }, location: r.location });
    expect(fileCheck.ok).toBe(true);
    // Load the file with the PostgreSQL tools a DBA would use, then validate the database.
    const url = await server.createDatabase(`fromfile_${method}`);
    const env = { ...process.env, PGPASSWORD: server.password };
    const args = ['-h', '127.0.0.1', '-p', String(server.port), '-U', 'postgres', '-d', `fromfile_${method}`];
    const res = method === 'pg_dump'
      ? spawnSync(path.join(server.binDir, 'pg_restore'), [...args, '--no-owner', '--exit-on-error', r.location], { env, encoding: 'utf8' })
      : spawnSync(path.join(server.binDir, 'psql'), [...args, '--single-transaction', '-v', 'ON_ERROR_STOP=1', '-q', '-f', r.location], { env, encoding: 'utf8' });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    const v = await postgresDriver.validate({ ...ctx, target: { dir, options: { url } }, location: url });
    expect(v.checks.filter((c) => !c.ok)).toEqual([]);
  });
});

describe('postgres driver settings', () => {
  const sm = mockClient(SecretsManagerClient);
  beforeEach(() => sm.reset());
  const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:memdb-AbCdEf';

  it('reads the password from Secrets Manager at run time and backs up with it', async () => {
    await server.createDatabase('secret_src', 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)');
    sm.on(GetSecretValueCommand, { SecretId: ARN }).resolves({ SecretString: JSON.stringify({ username: 'postgres', password: server.password, dbname: 'secret_src' }) });
    const s = await setup({ memdb: { kind: 'postgres', host: '127.0.0.1', port: server.port, secretArn: ARN, method: 'driver' } });
    try {
      const { manifest } = await backup(s, 'memdb');
      expect((manifest.driver as unknown as DatabaseFigures).tables['public.t'].rows).toBe(10);
      expect(sm.commandCalls(GetSecretValueCommand).map((c) => c.args[0].input)).toEqual([{ SecretId: ARN }]);
      expect(JSON.stringify(manifest)).not.toContain(server.password);

      // A restore target named only by its secret (RDS layout with host, port and dbname): created, filled, validated.
      const TARGET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:memvault-restore-targets-AbCdEf';
      sm.on(GetSecretValueCommand, { SecretId: TARGET }).resolves({ SecretString: JSON.stringify({ engine: 'postgres', username: 'postgres', password: server.password, host: '127.0.0.1', port: server.port, dbname: 'secret_restored' }) });
      const ref = parseManifestKey((await backup(s, 'memdb')).out.manifestKey)!;
      const logs: string[] = [];
      const log = { info: (m: string, f?: object) => logs.push(m + JSON.stringify(f)), warn: (m: string, f?: object) => logs.push(m + JSON.stringify(f)), error: (m: string, f?: object) => logs.push(m + JSON.stringify(f)) };
      const r = await restoreItem({ cfg: s.cfg, vault: s.vault, driverFor, log }, { component: 'memdb', ref }, path.join(s.dir, 'restore'), { secretArn: TARGET });
      expect(r.validation.ok).toBe(true);
      expect(r.location).toBe(`postgres://postgres@127.0.0.1:${server.port}/secret_restored`);
      expect(await q(`postgres://postgres:${encodeURIComponent(server.password)}@127.0.0.1:${server.port}/secret_restored`)('SELECT count(*)::int AS n FROM t')).toEqual([{ n: 10 }]);
      expect(JSON.stringify({ logs, r })).not.toContain(server.password);
    } finally {
      await rm(s.dir, { recursive: true, force: true });
    }
  });

  it('maps Secrets Manager failures to retryable and permanent errors', async () => {
    const settings = { host: '127.0.0.1', database: 'x', secretArn: ARN };
    sm.on(GetSecretValueCommand).rejectsOnce(Object.assign(new Error('slow down'), { name: 'ThrottlingException' }))
      .rejectsOnce(Object.assign(new Error('gone'), { name: 'ResourceNotFoundException' }))
      .rejectsOnce(Object.assign(new Error('no'), { name: 'AccessDeniedException' }))
      .resolves({ SecretString: 'bare-password' });
    await expect(resolvePgConnection(settings, 'components.memdb')).rejects.toThrow(RetryableError);
    await expect(resolvePgConnection(settings, 'components.memdb')).rejects.toThrow(NotFoundError);
    await expect(resolvePgConnection(settings, 'components.memdb')).rejects.toThrow(/components\.memdb\.secretArn: cannot read .*AccessDenied/);
    // The RDS layout is JSON; a bare string is refused without quoting it.
    const bare = resolvePgConnection(settings, 'components.memdb');
    await expect(bare).rejects.toThrow(/components\.memdb\.secretArn: secret .*memdb-AbCdEf is not JSON/);
    await expect(bare).rejects.not.toThrow(/bare-password/);
  });

  it('takes the password from passwordEnv, and a wrong one fails as a permanent auth error', async () => {
    process.env.MEMVAULT_TEST_PGPASSWORD = server.password;
    const s = await setup({
      good: { kind: 'postgres', url: `postgres://postgres@127.0.0.1:${server.port}/secret_src`, passwordEnv: 'MEMVAULT_TEST_PGPASSWORD', method: 'pg_dump' },
      bad: { kind: 'postgres', url: `postgres://postgres:wrong@127.0.0.1:${server.port}/secret_src`, method: 'driver' },
      unset: { kind: 'postgres', url: `postgres://postgres@127.0.0.1:${server.port}/secret_src`, passwordEnv: 'MEMVAULT_TEST_UNSET_VAR' },
    });
    try {
      const { manifest } = await backup(s, 'good');
      expect((manifest.driver as unknown as DatabaseFigures).tables['public.t'].rows).toBe(10);
      await expect(backup(s, 'bad')).rejects.toThrow(PermanentError);
      await expect(backup(s, 'bad')).rejects.toThrow(/authentication failed/);
      await expect(backup(s, 'unset')).rejects.toThrow(/components\.unset\.passwordEnv: environment variable MEMVAULT_TEST_UNSET_VAR is not set/);
    } finally {
      delete process.env.MEMVAULT_TEST_PGPASSWORD;
      await rm(s.dir, { recursive: true, force: true });
    }
  });

  it('backs up only the selected tables, with either method', async () => {
    const url = await server.createDatabase('filtered', `
      CREATE SCHEMA app; CREATE TABLE app.keep_a (id int PRIMARY KEY); CREATE TABLE app.keep_b (id int);
      CREATE TABLE app.skip_me (id int); CREATE TABLE public.other (id int);
      INSERT INTO app.keep_a VALUES (1), (2); INSERT INTO app.keep_b VALUES (3); INSERT INTO app.skip_me VALUES (4);`);
    const tables = { include: ['app.*'], exclude: ['skip_*'] };
    const s = await setup({ d: { kind: 'postgres', url, method: 'driver', tables }, p: { kind: 'postgres', url, method: 'pg_dump', tables } });
    try {
      for (const c of ['d', 'p']) {
        const { manifest, ref } = await backup(s, c);
        expect(Object.keys((manifest.driver as unknown as DatabaseFigures).tables).sort()).toEqual(['app.keep_a', 'app.keep_b']);
        const target = server.urlFor(`filtered_${c}`);
        const r = await restoreItem({ cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger }, { component: c, ref }, s.dir, { url: target });
        expect(r.validation.ok).toBe(true);
        expect((await q(target)("SELECT string_agg(table_schema || '.' || table_name, ',' ORDER BY 1) AS t FROM information_schema.tables WHERE table_schema IN ('app', 'public')"))[0].t).toBe('app.keep_a,app.keep_b');
      }
    } finally {
      await rm(s.dir, { recursive: true, force: true });
    }
  });

  it('auto picks pg_dump here; the driver path rebuilds domains and materialized views too', async () => {
    const url = await server.createDatabase('unsupported', `
      CREATE DOMAIN positive AS int CHECK (VALUE > 0);
      CREATE TABLE t (id int PRIMARY KEY, n positive);
      INSERT INTO t VALUES (1, 5);
      CREATE MATERIALIZED VIEW t_sum AS SELECT sum(n) FROM t;`);
    const s = await setup({ auto: { kind: 'postgres', url }, drv: { kind: 'postgres', url, method: 'driver' } });
    try {
      const a = await backup(s, 'auto');
      expect(a.manifest.driver.method).toBe('pg_dump');
      expect(a.manifest.warnings).toEqual([]);
      const d = await backup(s, 'drv');
      expect(d.out.warnings).toEqual([]);
      const target = server.urlFor('unsupported_restored');
      const r = await restoreItem({ cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger }, { component: 'drv', ref: d.ref }, s.dir, { url: target });
      expect(r.validation.checks.filter((c) => !c.ok)).toEqual([]);
      expect(await q(target)('SELECT sum::int AS s FROM t_sum')).toEqual([{ s: 5 }]);
      await expect(q(target)('INSERT INTO t VALUES (2, 0)')).rejects.toThrow(/positive_check/);
    } finally {
      await rm(s.dir, { recursive: true, force: true });
    }
  });

  it('rejects bad settings with the field named', () => {
    expect(() => parseConfig({ vault: { primary: 'file:///tmp/x' }, encryption: { key: 'k' }, components: { db: { kind: 'postgres', url: 'postgres://h/db', method: 'copy' } } }, kindSchemas, '/tmp'))
      .toThrow(/components\.db\.method/);
    expect(() => parseConfig({ vault: { primary: 'file:///tmp/x' }, encryption: { key: 'k' }, components: { db: { kind: 'postgres', url: 'postgres://h/db', secretArn: 'my-secret' } } }, kindSchemas, '/tmp'))
      .toThrow(/components\.db\.secretArn: expected a Secrets Manager secret ARN/);
  });
});
