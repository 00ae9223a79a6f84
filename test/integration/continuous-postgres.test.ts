// PostgreSQL WAL archiving into the vault: a real PostgreSQL 15 with
// archive_mode=on whose archive_command is the real CLI (wal-push); segments
// land sealed in the vault, wal-fetch gives them back byte for byte, wal-push
// is idempotent (identical: 0; different content under the same name: refused).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { makeFixture, type Fixture } from '../helpers/fixture.ts';
import { cli } from '../helpers/cli.ts';
import { startPostgres, type PostgresHandle } from '../helpers/postgres.ts';
import { parsePgObjectKey } from '../../functions/core/continuous.ts';

const LAUNCHER = path.resolve(import.meta.dirname, '../../cli/memvault.mjs');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The CLI as the user the server runs as (it owns the fixture when the tests run as root). */
const asServer = (): { uid?: number; gid?: number } => (process.getuid?.() === 0
  ? { uid: Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim()), gid: Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim()) }
  : {});

describe('postgres WAL archiving (archive_command = memvault wal-push)', { timeout: 180_000 }, () => {
  let fx: Fixture;
  let server: PostgresHandle;
  let client: pg.Client;

  beforeAll(async () => {
    fx = await makeFixture({ 'memory-db': { kind: 'postgres', url: 'postgres://unused@127.0.0.1/x', critical: true, rpo: '1h', continuous: {} } }, { secondary: false });
    // The server (and its archive_command) runs as the postgres user when the tests run as root.
    if (process.getuid?.() === 0) spawnSync('chown', ['-R', 'postgres:postgres', fx.dir]);
    const archive = `'${process.execPath}' '${LAUNCHER}' wal-push --config '${fx.cfgFile}' --component memory-db %p %f`;
    server = await startPostgres({ settings: { wal_level: 'replica', archive_mode: 'on', archive_command: archive }, env: { MEMVAULT_LOG: 'silent' } });
    client = new pg.Client({ connectionString: server.url });
    await client.connect();
  });

  afterAll(async () => {
    await client?.end().catch(() => undefined);
    await server?.stop();
  });

  it('archives each finished segment into the vault; wal-fetch returns it byte for byte', async () => {
    await client.query('CREATE TABLE memories(id int primary key, note text)');
    await client.query("INSERT INTO memories SELECT g, 'note ' || g FROM generate_series(1, 1000) g");
    const seg = (await client.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')).rows[0].f;
    await client.query('SELECT pg_switch_wal()');
    let stat: { archived_count: string; failed_count: string; last_archived_wal: string | null; last_failed_wal: string | null } | undefined;
    for (let i = 0; i < 300; i++) {
      stat = (await client.query('SELECT archived_count, failed_count, last_archived_wal, last_failed_wal FROM pg_stat_archiver')).rows[0];
      if (stat!.last_archived_wal === seg) break;
      await sleep(200);
    }
    expect(stat?.last_archived_wal, `${JSON.stringify(stat)}\n${server.log().slice(-3000)}`).toBe(seg);
    expect(Number(stat!.failed_count)).toBe(0);
    // Names only (the key file belongs to the postgres user now): the object opens in wal-fetch below.
    const names = await fs.readdir(path.join(fx.dir, 'vault-primary', 'wal', 'memory-db', 'pg'));
    const shipped = names.map((n) => parsePgObjectKey(`wal/memory-db/pg/${n}`)).filter((x) => x !== null);
    expect(shipped.map((p) => p.file)).toContain(seg);
    // The vault holds it sealed: its bytes are not the segment's.
    const obj = await fs.readFile(path.join(fx.dir, 'vault-primary', shipped.find((p) => p.file === seg)!.key));
    const onDisk = await fs.readFile(path.join(server.dataDir, 'pg_wal', seg)).catch(() => null);
    if (onDisk) expect(obj.includes(onDisk.subarray(0, 64))).toBe(false);
    const dest = path.join(fx.dir, 'fetched');
    const f = await cli(['wal-fetch', '--config', fx.cfgFile, '--component', 'memory-db', seg, dest], asServer());
    expect(f.code, f.stderr).toBe(0);
    const fetched = await fs.readFile(dest);
    expect(fetched.length).toBe(16 * 1024 * 1024);
    if (onDisk) expect(createHash('sha256').update(fetched).digest('hex')).toBe(createHash('sha256').update(onDisk).digest('hex'));
    // Idempotent: the identical file again succeeds; different content under its name is refused.
    const again = await cli(['wal-push', '--config', fx.cfgFile, '--component', 'memory-db', dest, seg], asServer());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/already archived, identical/);
    fetched[100] ^= 0xff;
    const other = path.join(fx.dir, 'other');
    await fs.writeFile(other, fetched);
    if (process.getuid?.() === 0) spawnSync('chown', ['postgres:postgres', other]);
    const bad = await cli(['wal-push', '--config', fx.cfgFile, '--component', 'memory-db', other, seg], asServer());
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/already archived as wal\/memory-db\/pg\/.* with different content/);
    // A file never archived: restore_command fails (PostgreSQL asks for files that may not exist).
    const missing = await cli(['wal-fetch', '--config', fx.cfgFile, '--component', 'memory-db', '00000002.history', path.join(fx.dir, 'h')], asServer());
    expect(missing.code).not.toBe(0);
  });
});
