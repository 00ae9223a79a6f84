// The postgres component's driver-path restore beside pg_restore, on the same
// database: a few tables (one wide with text/jsonb/bytea, one narrow with many
// rows, indexes and a foreign key) in a throwaway PostgreSQL on loopback.
//   memvault: backup with method driver, restore into a fresh database (timed
//             without and with the validation that follows a restore);
//   native:   pg_dump -Fc, then pg_restore into a fresh database.
//
//   npx tsx bench/postgres-restore.ts [--rows 1000000]
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startPostgres } from '../test/helpers/postgres.ts';
import { parseConfig } from '../functions/core/config.ts';
import { driverFor, kindSchemas } from '../functions/components/registry.ts';
import { initVaults } from '../functions/ops.ts';
import { openVault } from '../functions/services.ts';
import { backupComponent } from '../functions/core/backup.ts';
import { parseManifestKey, type Manifest } from '../functions/core/manifest.ts';
import { silentLogger } from '../functions/logger.ts';
import { postgresDriver } from '../functions/components/postgres.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' } } });
const ROWS = Number(values.rows);
const server = await startPostgres();
const dir = await mkdtemp(path.join(os.tmpdir(), 'memvault-pgbench-'));
const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
try {
  let t = Date.now();
  const src = await server.createDatabase('src', `
    CREATE TABLE owners (id int PRIMARY KEY, name text NOT NULL);
    INSERT INTO owners SELECT g, 'owner ' || g FROM generate_series(1, 1000) g;
    CREATE TABLE events (id bigint PRIMARY KEY, owner int NOT NULL REFERENCES owners, at timestamptz NOT NULL, n numeric(12,2), body text, data jsonb, blob bytea);
    INSERT INTO events SELECT g, 1 + g % 1000, '2024-01-01'::timestamptz + g * interval '1 second', g / 7.0, repeat(md5(g::text), 3),
      jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 13)), decode(md5(g::text), 'hex') FROM generate_series(1, ${ROWS}) g;
    CREATE INDEX events_owner ON events (owner, at);
    CREATE TABLE hits (owner int NOT NULL, day date NOT NULL, n int NOT NULL);
    INSERT INTO hits SELECT g % 1000, '2024-01-01'::date + g % 365, g FROM generate_series(1, ${ROWS}) g;
    CREATE INDEX hits_day ON hits (day);`);
  console.log(`generated ${ROWS} + ${ROWS} rows in ${sec(Date.now() - t)}`);
  const env = { ...process.env, PGPASSWORD: server.password };
  const conn = ['-h', '127.0.0.1', '-p', String(server.port), '-U', 'postgres'];
  const file = path.join(dir, 'src.dump');
  t = Date.now();
  let r = spawnSync(path.join(server.binDir, 'pg_dump'), [...conn, '-Fc', '-f', file, 'src'], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const nativeDump = Date.now() - t;
  await server.createDatabase('native');
  t = Date.now();
  r = spawnSync(path.join(server.binDir, 'pg_restore'), [...conn, '-d', 'native', '--single-transaction', '--exit-on-error', file], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const nativeRestore = Date.now() - t;

  const cfg = parseConfig({ vault: { primary: `file://${dir}/vault` }, encryption: { key: `${dir}/memvault.key` },
    components: { db: { kind: 'postgres', url: src, method: 'driver' } } }, kindSchemas, dir);
  await initVaults(cfg);
  const vault = await openVault(cfg);
  t = Date.now();
  const out = await backupComponent({ cfg, vault, driverFor, log: silentLogger }, 'db', 'full');
  const backupMs = Date.now() - t;
  const manifest = await vault.readManifest(parseManifestKey(out.manifestKey)!) as Manifest;
  const ctx = { component: 'db', settings: cfg.components.db as never, manifest, vault, resolve: (p: string) => p, log: silentLogger };
  const target = { dir, options: { url: server.urlFor('restored') } };
  t = Date.now();
  const rr = await postgresDriver.restore({ ...ctx, target });
  const restoreMs = Date.now() - t;
  t = Date.now();
  const v = await postgresDriver.validate({ ...ctx, target, location: rr.location });
  const validateMs = Date.now() - t;
  if (!v.ok) throw new Error(`validation failed: ${JSON.stringify(v.checks.filter((x) => !x.ok))}`);
  console.log(JSON.stringify({ rows: ROWS, pgDumpMs: nativeDump, pgRestoreMs: nativeRestore, memvaultBackupMs: backupMs, memvaultRestoreMs: restoreMs, memvaultValidateMs: validateMs }));
  console.log(`pg_restore ${sec(nativeRestore)} | memvault driver restore ${sec(restoreMs)} (+ validation ${sec(validateMs)}) = ${(restoreMs / nativeRestore).toFixed(1)}x | backup ${sec(backupMs)} vs pg_dump ${sec(nativeDump)}`);
} finally {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}
