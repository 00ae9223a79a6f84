// Point-in-time restore of PostgreSQL, end to end with a real PostgreSQL 15 and
// the real CLI: archive_command is `memvault wal-push`, a physical base backup
// is taken through `memvault backup`, rows are committed in three batches with
// time between them (pg_switch_wal() after each, so each batch's segment is
// archived), and restores to a second between batch 2 and 3 / to the latest
// hold exactly the batches committed by then. A WAL object needed for the time
// deleted from the vault: the restore fails naming it. The drill reports the
// measured RPO; rpo-watch the archive's lag; retention prunes the WAL before
// the oldest kept base. The CLI runs as the server's user (PostgreSQL refuses root).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import pg from 'pg';
import { makeFixture, type Fixture } from '../helpers/fixture.ts';
import { cli } from '../helpers/cli.ts';
import { freePort, startPostgres, type PostgresHandle } from '../helpers/postgres.ts';
import { parsePgObjectKey } from '../../functions/core/continuous.ts';
import { parseConfig } from '../../functions/core/config.ts';
import { openVault } from '../../functions/services.ts';
import { readCatalog } from '../../functions/core/catalog.ts';
import { kindSchemas } from '../../functions/components/registry.ts';

const LAUNCHER = path.resolve(import.meta.dirname, '../../cli/memvault.mjs');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const root = process.getuid?.() === 0;
const ids = (): { uid?: number; gid?: number } => (root
  ? { uid: Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim()), gid: Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim()) }
  : {});
/** The CLI as the user the server runs as (it owns the fixture when the tests run as root). */
const run = (args: string[]) => cli(args, ids());

/** Starts a restored data directory (as the server's user, unix socket only) and returns the batches in `memories`. */
async function batchesIn(dataDir: string): Promise<number[]> {
  const sock = await fs.mkdtemp(path.join(os.tmpdir(), 'memvault-pgt-'));
  if (root) spawnSync('chown', ['postgres:postgres', sock]);
  const hba = path.join(sock, 'hba.conf');
  await fs.writeFile(hba, 'local all all trust\n');
  if (root) spawnSync('chown', ['postgres:postgres', hba]);
  const port = await freePort();
  const bin = path.join(server.binDir, 'postgres');
  const p = spawn(bin, ['-D', dataDir, '-p', String(port), '-k', sock, '-c', 'listen_addresses=', '-c', `hba_file=${hba}`, '-c', 'archive_mode=off'], { ...ids(), stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  p.stderr!.on('data', (b) => { log += b; });
  const exited = new Promise((r) => p.once('exit', r));
  try {
    for (let i = 0; ; i++) {
      const c = new pg.Client({ host: sock, port, user: 'postgres', database: 'memory' });
      try {
        await c.connect();
        const r = await c.query<{ batch: number }>('SELECT DISTINCT batch FROM memories ORDER BY 1');
        const rec = (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r;
        expect(rec).toBe(false);
        return r.rows.map((x) => x.batch);
      } catch (err) {
        if (i > 150 || p.exitCode !== null) throw new Error(`${(err as Error).message}\n${log.slice(-2000)}`);
        await sleep(200);
      } finally {
        await c.end().catch(() => undefined);
      }
    }
  } finally {
    p.kill('SIGINT');
    await exited;
    await fs.rm(sock, { recursive: true, force: true });
  }
}

let server: PostgresHandle;

describe('postgres point-in-time restore (physical base backup + archived WAL)', { timeout: 600_000 }, () => {
  let fx: Fixture;
  let client: pg.Client;
  /** The segment each batch was written to (archived by the switch after it). */
  const batchSegment: string[] = [];
  let between: Date; // after batch 2's commit, before batch 3's
  let beforeBase: Date;
  let baseId: string;
  let vault: Awaited<ReturnType<typeof openVault>>;

  const archivedKeys = async () => (await fs.readdir(path.join(fx.dir, 'vault-primary', 'wal', 'memory-db', 'pg')))
    .map((n) => parsePgObjectKey(`wal/memory-db/pg/${n}`)).filter((x) => x !== null);

  async function commitBatch(batch: number): Promise<void> {
    await client.query(`INSERT INTO memories(batch, note) SELECT ${batch}, 'batch ${batch} row ' || g FROM generate_series(1, 200) g`);
    // The insert location (the server runs with synchronous_commit = off: the write location may lag).
    const seg = (await client.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_insert_lsn()) AS f')).rows[0].f;
    await client.query('SELECT pg_switch_wal()');
    batchSegment[batch] = seg;
    for (let i = 0; i < 300; i++) {
      if ((await archivedKeys()).some((p) => p.file === seg)) return;
      await sleep(100);
    }
    throw new Error(`segment ${seg} of batch ${batch} was not archived\n${server.log().slice(-3000)}`);
  }

  beforeAll(async () => {
    fx = await makeFixture({ 'memory-db': { kind: 'postgres', url: 'postgres://unused@127.0.0.1/x', critical: true, rpo: '1h', continuous: {}, retention: { keepLast: 1 } },
      // A role without the REPLICATION right: its base backup fails with pg_basebackup's reason.
      'no-replication': { kind: 'postgres', url: 'postgres://norep-placeholder@127.0.0.1/x', continuous: {} } }, { secondary: false, extra: { sandbox: 'sandbox' } });
    // Opened (key read) before the fixture goes to the server's user; the test reads manifests with it.
    vault = await openVault(fx.cfg, 'primary');
    if (root) spawnSync('chown', ['-R', 'postgres:postgres', fx.dir]);
    const archive = `'${process.execPath}' '${LAUNCHER}' wal-push --config '${fx.cfgFile}' --component memory-db %p %f`;
    server = await startPostgres({ settings: { wal_level: 'replica', archive_mode: 'on', archive_command: archive }, env: { MEMVAULT_LOG: 'silent' } });
    // The component's URL, now that the server's port and password are known.
    const yaml = await fs.readFile(fx.cfgFile, 'utf8');
    await fs.writeFile(fx.cfgFile, yaml.replace('postgres://unused@127.0.0.1/x', server.urlFor('memory'))
      .replace('postgres://norep-placeholder@127.0.0.1/x', `postgres://norep:norep-pw@127.0.0.1:${server.port}/postgres`));
    await server.createDatabase('memory', 'CREATE TABLE memories(id serial primary key, batch int not null, note text not null, at timestamptz default now())');
    client = new pg.Client({ connectionString: server.urlFor('memory') });
    await client.connect();
    await client.query("CREATE ROLE norep LOGIN PASSWORD 'norep-pw'");
    await client.query('SELECT pg_switch_wal()'); // the database's creation is archived too
  });

  afterAll(async () => {
    await client?.end().catch(() => undefined);
    await server?.stop();
  });

  it('a base backup through memvault backup records its WAL range; the segment it ends in is archived', async () => {
    beforeBase = new Date();
    const b = await run(['backup', '--config', fx.cfgFile, '--type', 'full', '--component', 'memory-db', '--json']);
    expect(b.code, `${b.stdout}\n${b.stderr}\n${server.log().slice(-2000)}`).toBe(0);
    const list = JSON.parse((await run(['list', '--config', fx.cfgFile, '--json'])).stdout).backups as { id: string }[];
    expect(list).toHaveLength(1);
    baseId = list[0].id;
    // The manifest records the WAL range; the segment it ends in is in the vault already.
    const ref = (await readCatalog(vault, { component: 'memory-db' })).entries[0];
    const meta = (await vault.readManifestHeader(ref.key)).driver as Record<string, unknown>;
    expect(meta).toMatchObject({ method: 'physical', timeline: 1, walSegmentSize: 16 * 1024 * 1024, superuser: 'postgres' });
    expect(meta.databases).toEqual(['memory', 'postgres', 'template1']);
    expect(meta.backupLabel).toMatch(/^START WAL LOCATION: /);
    expect(String(meta.startSegment) <= String(meta.endSegment)).toBe(true);
    expect((await archivedKeys()).map((p) => p.file)).toContain(meta.endSegment);
    expect(Date.parse(String(meta.endedAt))).toBeGreaterThan(Date.parse(String(meta.startedAt)));
    for (const batch of [1, 2]) {
      await sleep(1100);
      await commitBatch(batch);
    }
    await sleep(1100);
    between = new Date();
    await sleep(1100);
    await commitBatch(3);
    expect(new Set(batchSegment.slice(1)).size).toBe(3);
  });

  it('restore --at a second between batch 2 and batch 3 holds exactly batches 1 and 2; --latest all three', async () => {
    const at = path.join(fx.dir, 'restore-at');
    const r = await run(['restore', '--config', fx.cfgFile, '--at', between.toISOString(), '--component', 'memory-db', '--target', at, '--json']);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const out = JSON.parse(r.stdout) as { ok: boolean; components: { backupId: string; location: string; recoveryPoint: string; validation: { ok: boolean; checks: { name: string; ok: boolean }[] } }[] };
    expect(out.ok).toBe(true);
    const c = out.components[0];
    expect(c.backupId).toBe(baseId);
    expect(c.location).toBe(path.join(at, 'memory-db'));
    expect(c.recoveryPoint).toBe(between.toISOString());
    expect(c.validation.checks.map((k) => k.name)).toContain('every database of the base backup present');
    // A stopped, promoted data directory: no recovery settings left in it.
    expect(await fs.readFile(path.join(c.location, 'postgresql.auto.conf'), 'utf8')).not.toMatch(/recovery_target_time|restore_command/);
    expect(await batchesIn(c.location)).toEqual([1, 2]);

    const latest = path.join(fx.dir, 'restore-latest');
    const l = await run(['restore', '--config', fx.cfgFile, '--latest', '--component', 'memory-db', '--target', latest, '--json']);
    expect(l.code, `${l.stdout}\n${l.stderr}`).toBe(0);
    expect(await batchesIn(path.join(latest, 'memory-db'))).toEqual([1, 2, 3]);
  });

  it('restore --backup ID recovers that base backup to its end: the table, no batch yet', async () => {
    const target = path.join(fx.dir, 'restore-backup');
    const r = await run(['restore', '--config', fx.cfgFile, '--backup', baseId, '--target', target, '--json']);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(JSON.parse(r.stdout).components[0].validation.ok).toBe(true);
    expect(await batchesIn(path.join(target, 'memory-db'))).toEqual([]);
  });

  it('a time after the last commit, with WAL archived after it (no commit past the time): everything up to the time', async () => {
    const after = new Date();
    await sleep(1100);
    // WAL without a commit (a checkpoint), switched and archived after the time.
    await client.query('CHECKPOINT');
    const seg = (await client.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_insert_lsn()) AS f')).rows[0].f;
    await client.query('SELECT pg_switch_wal()');
    for (let i = 0; i < 300 && !(await archivedKeys()).some((p) => p.file === seg); i++) await sleep(100);
    expect((await archivedKeys()).map((p) => p.file)).toContain(seg);
    const target = path.join(fx.dir, 'restore-after-last');
    const r = await run(['restore', '--config', fx.cfgFile, '--at', after.toISOString(), '--component', 'memory-db', '--target', target, '--json']);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(JSON.parse(r.stdout).components[0].recoveryPoint).toBe(after.toISOString());
    expect(await batchesIn(path.join(target, 'memory-db'))).toEqual([1, 2, 3]);
  });

  it('the restore state machine (a console restore by point in time) recovers to the time too', async () => {
    const dir = path.join(fx.dir, 'restore-machine');
    const input = { mode: 'point-in-time', at: between.toISOString(), components: ['memory-db'], target: { dir, outsideSandbox: true } };
    const r = await run(['run', 'restore', '--config', fx.cfgFile, '--input', JSON.stringify(input)]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await batchesIn(path.join(dir, 'memory-db'))).toEqual([1, 2]);
  });

  it('a deleted or damaged WAL object that the time needs: the restore fails naming it, and leaves no data directory', async () => {
    const victim = (await archivedKeys()).find((p) => p.file === batchSegment[2])!;
    const file = path.join(fx.dir, 'vault-primary', victim.key);
    const saved = `${file}.saved`;
    await fs.rename(file, saved);
    try {
      const target = path.join(fx.dir, 'restore-gap');
      const r = await run(['restore', '--config', fx.cfgFile, '--at', between.toISOString(), '--component', 'memory-db', '--target', target]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`segment ${batchSegment[2]}`);
      expect(r.stderr).toContain(`wal/memory-db/pg/${batchSegment[2]}`);
      expect(r.stderr).toMatch(/missing/);
      expect(await fs.readdir(path.join(target, 'memory-db')).catch(() => [])).toEqual([]);
    } finally {
      await fs.rename(saved, file);
    }
    // Damaged instead of gone (the name is there, the content does not open): recovery stops, naming it.
    const orig = await fs.readFile(file);
    const bad = Buffer.from(orig);
    bad[bad.length - 10] ^= 0xff;
    await fs.writeFile(file, bad);
    try {
      const target = path.join(fx.dir, 'restore-damaged');
      const r = await run(['restore', '--config', fx.cfgFile, '--at', between.toISOString(), '--component', 'memory-db', '--target', target]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(victim.key);
      expect(r.stderr).toMatch(/damaged/);
      expect(await fs.readdir(path.join(target, 'memory-db')).catch(() => [])).toEqual([]);
    } finally {
      await fs.writeFile(file, orig);
    }
  });

  it('a base backup by a role without the REPLICATION right fails with pg_basebackup\'s reason, storing nothing', async () => {
    const b = await run(['backup', '--config', fx.cfgFile, '--type', 'full', '--component', 'no-replication']);
    expect(b.code).not.toBe(0);
    expect(b.stdout + b.stderr).toMatch(/no-replication: .*pg_basebackup failed .*(replication|superuser)/);
    const list = JSON.parse((await run(['list', '--config', fx.cfgFile, '--component', 'no-replication', '--json'])).stdout).backups;
    expect(list).toEqual([]);
  });

  it('a time before the first base backup ended: a clear error', async () => {
    const r = await run(['restore', '--config', fx.cfgFile, '--at', new Date(beforeBase.getTime() - 5000).toISOString(), '--component', 'memory-db', '--target', path.join(fx.dir, 'restore-early')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no backup at or before .*; its first backup is|is before the first physical base backup/);
  });

  it('the drill restores base backup + WAL in the sandbox and reports the measured RPO; rpo-watch measures the archive lag', async () => {
    const newestArchived = Math.max(...(await archivedKeys()).map((p) => p.time.getTime()));
    const d = await run(['run', 'verify-drill', '--config', fx.cfgFile, '--json', '--input', '{"readData":"none"}']);
    const out = JSON.parse(d.stdout);
    expect(out.status, d.stdout + d.stderr).toBe('SUCCEEDED');
    const m = out.output.rpo as { component: string; target: string; newestRestorableCommit: string; measuredRpoMs: number; ok: boolean }[];
    expect(m).toHaveLength(1);
    expect(m[0].component).toBe('memory-db');
    expect(m[0].target).toBe('1h');
    // Everything archived was replayed: the recovery point is where the archive ends.
    expect(Date.parse(m[0].newestRestorableCommit)).toBeGreaterThanOrEqual(newestArchived);
    expect(m[0].measuredRpoMs).toBeGreaterThanOrEqual(0);
    expect(m[0].measuredRpoMs).toBeLessThan(Date.now() - newestArchived + 1000);
    expect(m[0].ok).toBe(true);
    const w = await run(['run', 'rpo-watch', '--config', fx.cfgFile, '--json']);
    const rw = JSON.parse(w.stdout);
    expect(rw.status, w.stdout).toBe('SUCCEEDED');
    const st = JSON.stringify(rw.output);
    expect(st).toContain('"newestShipped"');
    expect(st).toContain(new Date(newestArchived).toISOString());
  });

  it('retention prunes archived WAL from before the oldest kept base backup; the kept base still restores to the latest', async () => {
    const b = await run(['backup', '--config', fx.cfgFile, '--type', 'full', '--component', 'memory-db']);
    expect(b.code, b.stderr).toBe(0);
    const before = await archivedKeys();
    const r = await run(['retention', '--config', fx.cfgFile, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const wal = (JSON.parse(r.stdout).wal as { component: string; deleted: string[] }[]).find((x) => x.component === 'memory-db')!;
    const after = await archivedKeys();
    // The batches' segments are older than the new base: gone; the new base's own segments stay.
    for (const seg of batchSegment.slice(1)) {
      expect(wal.deleted.some((k) => k.includes(`/${seg}-`))).toBe(true);
      expect(after.some((p) => p.file === seg)).toBe(false);
    }
    expect(after.length).toBe(before.length - wal.deleted.length);
    expect(after.length).toBeGreaterThan(0);
    const latest = path.join(fx.dir, 'restore-after-retention');
    const l = await run(['restore', '--config', fx.cfgFile, '--latest', '--component', 'memory-db', '--target', latest]);
    expect(l.code, `${l.stdout}\n${l.stderr}`).toBe(0);
    expect(await batchesIn(path.join(latest, 'memory-db'))).toEqual([1, 2, 3]);
  });

  it('scheduled retention (the retention state machine) prunes the archived WAL too', async () => {
    const b = await run(['backup', '--config', fx.cfgFile, '--type', 'full', '--component', 'memory-db']);
    expect(b.code, b.stderr).toBe(0);
    const refs = (await readCatalog(vault, { component: 'memory-db' })).entries;
    const start = async (i: number) => String((await vault.readManifestHeader(refs[i].key)).driver.startSegment);
    const [newest, older] = [await start(0), await start(1)];
    expect(older < newest).toBe(true);
    expect((await archivedKeys()).map((p) => p.file)).toContain(older);
    const r = await run(['run', 'retention', '--config', fx.cfgFile, '--json']);
    expect(JSON.parse(r.stdout).status, r.stdout + r.stderr).toBe('SUCCEEDED');
    const files = (await archivedKeys()).map((p) => p.file);
    expect(files).not.toContain(older);
    expect(files).toContain(newest);
  });
});

describe('postgres continuous / physical configuration', () => {
  const parse = (c: Record<string, unknown>) => parseConfig({ vault: { primary: 'file:///tmp/v' }, encryption: { key: 'k' }, components: { db: { kind: 'postgres', url: 'postgres://u@h/d', ...c } } }, kindSchemas, '/tmp');
  it('continuous means physical base backups; contradictions are refused naming the field', () => {
    expect(parse({ continuous: {} }).components.db.continuous).toBeDefined();
    expect(() => parse({ method: 'physical' })).toThrow(/components\.db\.continuous: method physical needs continuous/);
    expect(() => parse({ method: 'pg_dump', continuous: {} })).toThrow(/components\.db\.method: continuous protection .* set method: physical/);
    expect(() => parse({ continuous: {}, tables: { include: ['public.t'] } })).toThrow(/components\.db\.tables: a physical base backup holds the whole cluster/);
    expect(() => parse({ continuous: {}, drill: { url: 'postgres://u@h/postgres' } })).toThrow(/components\.db\.drill: .* sandbox/);
  });
});
