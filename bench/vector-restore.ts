// The vector component's restore beside PostgreSQL's own binary COPY, on the
// same table: N embeddings of D float32 (real[]) with a text id, in a
// throwaway PostgreSQL on loopback (test/helpers/postgres.ts).
//   memvault: backup once, then restore into a fresh database (timed without
//             and with the validation that follows a restore);
//   native:   COPY (SELECT ...) TO a file in binary format, COPY FROM it into
//             a fresh table (the time of the COPY FROM, what a restore costs).
//
//   npx tsx bench/vector-restore.ts [--rows 100000] [--dims 384]
import { parseArgs } from 'node:util';
import { mkdtemp, rm, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startPostgres } from '../test/helpers/postgres.ts';
import { parseConfig } from '../functions/core/config.ts';
import { driverFor, kindSchemas } from '../functions/components/registry.ts';
import { initVaults } from '../functions/ops.ts';
import { openVault } from '../functions/services.ts';
import { backupComponent } from '../functions/core/backup.ts';
import { parseManifestKey, type Manifest } from '../functions/core/manifest.ts';
import { silentLogger } from '../functions/logger.ts';
import { vectorDriver } from '../functions/components/vector.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '100000' }, dims: { type: 'string', default: '384' } } });
const ROWS = Number(values.rows);
const DIMS = Number(values.dims);

const server = await startPostgres();
const dir = await mkdtemp(path.join(os.tmpdir(), 'memvault-vecbench-'));
await chmod(dir, 0o777);
const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
try {
  const src = await server.createDatabase('vec_src', 'CREATE TABLE emb (id text PRIMARY KEY, embedding real[], label text)');
  const c = new pg.Client({ connectionString: src });
  await c.connect();
  let t = Date.now();
  await c.query(`INSERT INTO emb SELECT 'doc-' || g, (SELECT array_agg(((random() - 0.5) * 4)::real) FROM generate_series(1, $1) WHERE g > 0), 'label ' || g
                 FROM generate_series(1, $2) g`, [DIMS, ROWS]);
  console.log(`generated ${ROWS} x ${DIMS} in ${sec(Date.now() - t)}`);

  // native: binary COPY out and in
  const file = path.join(dir, 'emb.bin');
  t = Date.now();
  await c.query(`COPY emb TO '${file}' WITH (FORMAT binary)`);
  const nativeOut = Date.now() - t;
  await c.query('CREATE TABLE emb_native (id text PRIMARY KEY, embedding real[], label text)');
  t = Date.now();
  await c.query(`COPY emb_native FROM '${file}' WITH (FORMAT binary)`);
  const nativeIn = Date.now() - t;
  await c.end();

  const cfg = parseConfig({ vault: { primary: `file://${dir}/vault` }, encryption: { key: `${dir}/memvault.key` },
    components: { vec: { kind: 'vector', url: src, table: 'emb', metadataColumns: ['label'], dimensions: DIMS } } }, kindSchemas, dir);
  await initVaults(cfg);
  const vault = await openVault(cfg);
  t = Date.now();
  const out = await backupComponent({ cfg, vault, driverFor, log: silentLogger }, 'vec', 'full');
  const backupMs = Date.now() - t;
  const manifest = await vault.readManifest(parseManifestKey(out.manifestKey)!) as Manifest;
  const ctx = { component: 'vec', settings: cfg.components.vec as never, manifest, vault, resolve: (p: string) => p, log: silentLogger };
  const target = { dir, options: { url: server.urlFor('vec_restored') } };
  t = Date.now();
  const r = await vectorDriver.restore({ ...ctx, target });
  const restoreMs = Date.now() - t;
  t = Date.now();
  const v = await vectorDriver.validate({ ...ctx, target, location: r.location });
  const validateMs = Date.now() - t;
  if (!v.ok) throw new Error(`validation failed: ${JSON.stringify(v.checks.filter((x) => !x.ok))}`);
  console.log(JSON.stringify({ rows: ROWS, dims: DIMS, nativeCopyOutMs: nativeOut, nativeCopyInMs: nativeIn, memvaultBackupMs: backupMs, memvaultRestoreMs: restoreMs, memvaultValidateMs: validateMs }));
  console.log(`native binary COPY FROM ${sec(nativeIn)} | memvault restore ${sec(restoreMs)} (+ validation ${sec(validateMs)}) = ${(restoreMs / nativeIn).toFixed(1)}x | memvault backup ${sec(backupMs)} vs COPY TO ${sec(nativeOut)}`);
} finally {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}
