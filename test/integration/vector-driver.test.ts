// The vector driver against a real PostgreSQL 15 (harness). pgvector is not
// packaged for this machine, so embeddings live in the same layout with a
// float array column (real[] and double precision[]); the pgvector text form
// ('[1,2,3]', column type named `vector`) is exercised with a stand-in domain
// named `vector` over text, which has pgvector's type name and text form.
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startPostgres, type PostgresHandle } from '../helpers/postgres.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { restoreItem } from '../../functions/core/restore.ts';
import { parseManifestKey, type Manifest } from '../../functions/core/manifest.ts';
import { silentLogger } from '../../functions/logger.ts';
import { fastFloatText, floatText, parseVectorText, vectorDriver, type VectorMeta } from '../../functions/components/vector.ts';
import { PermanentError, UsageError } from '../../functions/core/errors.ts';
import { fullBackup, pgQuery, vaultSetup, type Setup } from '../helpers/pg-vault.ts';

const DIMS = 8;

const q = (url: string) => pgQuery(url);

const setup = (components: Record<string, unknown>): Promise<Setup> => vaultSetup(components, 'memvault-vectest-');

const backup = fullBackup;

/** Deterministic pseudo-random embeddings (float32-exact values and awkward ones). */
function embedding(i: number): number[] {
  return Array.from({ length: DIMS }, (_v, j) => (j === 0 ? 0.1 * i : j === 1 ? -1e-20 * i : Math.sin(i * 7 + j) * 10 ** (j % 5)));
}

const SELECT_ALL = 'SELECT id, embedding::text AS embedding, label, attrs, seen::text AS seen FROM mem.embeddings ORDER BY id';

let server: PostgresHandle;
beforeAll(async () => { server = await startPostgres(); });
afterAll(async () => { await server?.stop(); });

describe('vector driver on a real[] column', () => {
  let s: Setup;
  let src: string;
  let manifest: Manifest;
  let ref: NonNullable<ReturnType<typeof parseManifestKey>>;

  beforeAll(async () => {
    src = await server.createDatabase('vec_src', `
      CREATE SCHEMA mem;
      CREATE TABLE mem.embeddings (id text PRIMARY KEY, embedding real[], label text, attrs jsonb, seen timestamptz, ignored int);`);
    const c = new pg.Client({ connectionString: src });
    await c.connect();
    for (let i = 0; i < 300; i++) {
      await c.query('INSERT INTO mem.embeddings VALUES ($1, $2::real[], $3, $4, $5, 1)', [
        `doc-${String(i).padStart(4, '0')}`, `{${embedding(i).join(',')}}`, i % 3 === 0 ? null : `label\t${i} ✓`, JSON.stringify({ i, tags: ['a', i] }), new Date(Date.UTC(2025, 0, 1) + i * 3_600_000).toISOString(),
      ]);
    }
    await c.query("INSERT INTO mem.embeddings VALUES ('pending', NULL, 'not embedded yet', NULL, NULL, 0)");
    await c.query("INSERT INTO mem.embeddings VALUES ('special', '{NaN,Infinity,-Infinity,0,-0,3.4028235e38,1.4e-45,1}', NULL, NULL, NULL, 0)");
    await c.end();
    s = await setup({
      embeddings: { kind: 'vector', url: src, table: 'mem.embeddings', idColumn: 'id', vectorColumn: 'embedding', metadataColumns: ['label', 'attrs', 'seen'], dimensions: DIMS },
    });
    ({ manifest, ref } = await backup(s, 'embeddings'));
  });
  afterAll(async () => { await rm(s.dir, { recursive: true, force: true }); });

  it('records count, NULL vectors, dimensions and a checksum', () => {
    const m = manifest.driver as unknown as VectorMeta;
    expect(m).toMatchObject({ rows: 302, nullVectors: 1, dimensions: DIMS, vectorType: 'float4[]', table: 'mem.embeddings' });
    expect(m.checksum).toMatch(/^[0-9a-f]{32}$/);
    expect(manifest.entries).toHaveLength(1);
  });

  it('restores into a fresh table equal to the source and validates it', async () => {
    const url = server.urlFor('vec_restored');
    const r = await restoreItem({ cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger }, { component: 'embeddings', ref }, s.dir, { url });
    expect(r.validation.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.validation.ok).toBe(true);
    expect(await q(url)(SELECT_ALL)).toEqual(await q(src)(SELECT_ALL));
    // Float bits survive (not just their rounded text).
    const bits = 'SELECT id, (SELECT array_agg(float4send(x)::text) FROM unnest(embedding) x) AS b FROM mem.embeddings ORDER BY id';
    expect(await q(url)(bits)).toEqual(await q(src)(bits));
    expect((await q(url)("SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'mem.embeddings'::regclass AND attname = 'embedding'"))[0].t).toBe('real[]');
  });

  it('restores into another table name and refuses an existing table unless forced', async () => {
    const url = server.urlFor('vec_restored');
    const ctx = { component: 'embeddings', settings: s.cfg.components.embeddings as never, manifest, vault: s.vault, resolve: (p: string) => p, log: silentLogger };
    await expect(vectorDriver.restore({ ...ctx, target: { dir: s.dir, options: { url } } })).rejects.toThrow(UsageError);
    const r = await vectorDriver.restore({ ...ctx, target: { dir: s.dir, options: { url, table: 'copy2' } } });
    const v = await vectorDriver.validate({ ...ctx, target: { dir: s.dir, options: { url, table: 'copy2' } }, location: r.location });
    expect(v.ok).toBe(true);
    expect((await q(url)('SELECT count(*)::int AS n FROM public.copy2'))[0].n).toBe(302);
  });

  it('validation fails on a changed vector or a vector of the wrong dimension', async () => {
    const url = server.urlFor('vec_tampered');
    const ctx = { component: 'embeddings', settings: s.cfg.components.embeddings as never, manifest, vault: s.vault, resolve: (p: string) => p, log: silentLogger };
    const target = { dir: s.dir, options: { url } };
    const r = await vectorDriver.restore({ ...ctx, target });
    await q(url)("UPDATE mem.embeddings SET embedding[3] = embedding[3] + 0.001 WHERE id = 'doc-0042'");
    let v = await vectorDriver.validate({ ...ctx, target, location: r.location });
    expect(v.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(['vectors: checksum of ids, vectors and metadata']);
    await q(url)("UPDATE mem.embeddings SET embedding[3] = embedding[3] - 0.001 WHERE id = 'doc-0042'");
    await q(url)("UPDATE mem.embeddings SET embedding = embedding || 1::real WHERE id = 'doc-0007'");
    v = await vectorDriver.validate({ ...ctx, target, location: r.location });
    expect(v.ok).toBe(false);
    expect(v.checks.find((c) => !c.ok)?.actual).toMatch(/id=doc-0007: vector has 9 dimensions, expected 8/);
  });

  it('export fails naming the row whose vector has another dimension', async () => {
    const url = await server.createDatabase('vec_bad', `
      CREATE TABLE e (id bigint PRIMARY KEY, v real[]);
      INSERT INTO e SELECT g, ARRAY[1, 2, 3, 4, 5, 6, 7, 8]::real[] FROM generate_series(1, 50) g;
      UPDATE e SET v = v[1:7] WHERE id = 37;`);
    const bad = await setup({ e: { kind: 'vector', url, table: 'e', vectorColumn: 'v', dimensions: DIMS } });
    try {
      await expect(backup(bad, 'e')).rejects.toThrow(/row id=37: vector has 7 dimensions, expected 8/);
      await expect(backup(bad, 'e')).rejects.toThrow(PermanentError);
    } finally {
      await rm(bad.dir, { recursive: true, force: true });
    }
  });

  it('restore refuses a backup whose dimension differs from the configured one', async () => {
    const ctx = { component: 'embeddings', settings: { ...s.cfg.components.embeddings, dimensions: 16 } as never, manifest, vault: s.vault, resolve: (p: string) => p, log: silentLogger };
    await expect(vectorDriver.restore({ ...ctx, target: { dir: s.dir, options: { url: server.urlFor('vec_never') } } })).rejects.toThrow(/holds 8-dimensional vectors, the component is configured for 16/);
  });

  it('names a missing column in the settings', async () => {
    const bad = await setup({ e: { kind: 'vector', url: src, table: 'mem.embeddings', vectorColumn: 'vec', dimensions: DIMS } });
    try {
      await expect(backup(bad, 'e')).rejects.toThrow(/components\.e\.vectorColumn: mem\.embeddings has no column "vec"/);
    } finally {
      await rm(bad.dir, { recursive: true, force: true });
    }
  });
});

describe('vector driver, other layouts', () => {
  it('keeps double precision[] vectors bit for bit', async () => {
    const url = await server.createDatabase('vec_f8', `
      CREATE TABLE e (id int PRIMARY KEY, v double precision[]);
      INSERT INTO e SELECT g, ARRAY[pi() * g, 1.0 / 3, -1e-300, g]::float8[] FROM generate_series(1, 40) g;`);
    const s = await setup({ e: { kind: 'vector', url, table: 'e', vectorColumn: 'v', dimensions: 4 } });
    try {
      const { ref, manifest } = await backup(s, 'e');
      expect((manifest.driver as unknown as VectorMeta).vectorType).toBe('float8[]');
      const target = server.urlFor('vec_f8_restored');
      const r = await restoreItem({ cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger }, { component: 'e', ref }, s.dir, { url: target });
      expect(r.validation.ok).toBe(true);
      const sql = 'SELECT id, (SELECT array_agg(float8send(x)::text) FROM unnest(v) x) AS b FROM e ORDER BY id';
      expect(await q(target)(sql)).toEqual(await q(url)(sql));
    } finally {
      await rm(s.dir, { recursive: true, force: true });
    }
  });

  it('reads and writes the pgvector text form for a column of type vector', async () => {
    // Stand-in for pgvector's type: same type name, same '[x,y,z]' text form.
    const domain = "CREATE DOMAIN vector AS text CHECK (VALUE ~ '^\\[[^]]*\\]$');";
    const url = await server.createDatabase('vec_pgv', `${domain}
      CREATE TABLE items (item_id uuid PRIMARY KEY, embedding vector, source text);
      INSERT INTO items SELECT md5(g::text)::uuid, '[' || g || ',0.5,-2.25]', 'src-' || g FROM generate_series(1, 25) g;`);
    const s = await setup({ e: { kind: 'vector', url, table: 'items', idColumn: 'item_id', metadataColumns: ['source'], dimensions: 3 } });
    try {
      const { ref, manifest } = await backup(s, 'e');
      expect((manifest.driver as unknown as VectorMeta).vectorType).toBe('pgvector');
      const target = await server.createDatabase('vec_pgv_restored', domain);
      const r = await restoreItem({ cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger }, { component: 'e', ref }, s.dir, { url: target });
      expect(r.validation.checks.filter((c) => !c.ok)).toEqual([]);
      const sql = 'SELECT item_id::text, embedding::text, source FROM items ORDER BY 1';
      expect(await q(target)(sql)).toEqual(await q(url)(sql));
      // Without the type on the target, the restore says what is missing.
      const bare = server.urlFor('vec_pgv_bare');
      const ctx = { component: 'e', settings: s.cfg.components.e as never, manifest, vault: s.vault, resolve: (p: string) => p, log: silentLogger };
      await expect(vectorDriver.restore({ ...ctx, target: { dir: s.dir, options: { url: bare } } })).rejects.toThrow(/cannot create the vector extension/);
    } finally {
      await rm(s.dir, { recursive: true, force: true });
    }
  });

  it('parses both text forms and prints floats that read back exactly', () => {
    expect(parseVectorText('[1,2.5,-3e-05]', 'x')).toEqual([1, 2.5, -3e-5]);
    expect(parseVectorText('{1,NaN,-Infinity}', 'x')).toEqual([1, NaN, -Infinity]);
    expect(() => parseVectorText('{1,NULL}', 'row-9')).toThrow(/row id=row-9: vector has a NULL element/);
    for (const v of [0.1, 1 / 3, 3.4028234663852886e38, 1.401298464324817e-45, -7.25]) {
      const f = Math.fround(v);
      expect(Math.fround(Number(floatText(f, 4)))).toBe(f);
    }
    expect(floatText(Math.fround(0.1), 4)).toBe('0.1');
    expect(Object.is(Number(floatText(-0, 4)), -0)).toBe(true);
    // The restore's binary-search variant prints exactly what floatText prints.
    const buf = new DataView(new ArrayBuffer(4));
    for (let i = 0; i < 20000; i++) {
      buf.setUint32(0, (Math.imul(i, 2654435761) ^ (i << 7)) >>> 0);
      const f = buf.getFloat32(0);
      expect(fastFloatText(f, 4)).toBe(floatText(f, 4));
    }
  });
});
