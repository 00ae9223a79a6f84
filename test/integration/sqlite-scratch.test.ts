// The sqlite driver leaves nothing behind (issue 9, item 12): no scratch copy
// after a backup that succeeded or failed, the scratch copy of a killed backup
// removed by the next backup of the component (and nothing that may belong to
// a live run), no -wal/-shm left next to the live database by the backup's
// read-only connection, while a writer's own -wal is never touched; a scratch
// directory that cannot be used is named. And it reads the database it checked: one swapped
// before SQLite opens it (made deterministic by the driver's test seam) is not backed up.
import { afterEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { randomBytes } from 'node:crypto';
import { makeFixture, type Fixture } from '../helpers/fixture.ts';
import { cli, cliSpawn, killTree } from '../helpers/cli.ts';
import { runBackups } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import { sqliteBackupSeams } from '../../functions/components/sqlite.ts';

afterEach(() => { delete process.env.MEMVAULT_WORKERS; });

/** A WAL-mode database of about `mb` MiB, closed (so SQLite removed its -wal and -shm). */
function makeDb(file: string, mb = 1): void {
  const db = new DatabaseSync(file);
  db.exec('PRAGMA journal_mode=WAL; CREATE TABLE memories (id INTEGER PRIMARY KEY, fact TEXT, embedding BLOB)');
  db.exec('BEGIN');
  const ins = db.prepare('INSERT INTO memories (fact, embedding) VALUES (?, ?)');
  for (let i = 0; i < mb * 256; i++) ins.run(`fact ${i}`, randomBytes(4096));
  db.exec('COMMIT');
  db.close();
}

async function ls(dir: string): Promise<string[]> {
  return (await fs.readdir(dir).catch(() => [] as string[])).sort();
}

async function restoredRows(f: Fixture, backupId: string): Promise<number> {
  const vault = await openVault(f.cfg);
  const plan = await planRestore(vault, { mode: 'backup', backupId }, undefined, ['db']);
  const target = path.join(f.dir, `restore-${backupId}`);
  const res = await restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
  expect(res.ok).toBe(true);
  const db = new DatabaseSync(path.join(target, 'db', 'memory.db'), { readOnly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM memories').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

// Holds the database open with committed rows still only in its -wal (no checkpoint), until
// told to go on; then writes once more and closes.
const HOLDER = `
const { DatabaseSync } = require('node:sqlite');
const db = new DatabaseSync(process.argv[1], { timeout: 10000 });
db.exec('PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0');
const ins = db.prepare('INSERT INTO memories (fact) VALUES (?)');
for (let i = 0; i < 50; i++) ins.run('held in the wal ' + i);
process.stdout.write('ready\\n');
process.stdin.once('data', () => {
  ins.run('after the backup');
  const n = db.prepare('SELECT count(*) AS n FROM memories').get().n;
  db.close();
  process.stdout.write(n + '\\n');
});
`;

describe('sqlite backups leave nothing behind', () => {
  for (const workers of ['2', '0']) {
    it(`no scratch copy and no -wal/-shm remain after a backup of a WAL database (workers: ${workers})`, async () => {
      const f = await makeFixture({ db: { kind: 'sqlite', path: 'live/memory.db', scratchDir: 'scratch' } }, { secondary: false });
      await fs.mkdir(path.join(f.dir, 'live'));
      makeDb(path.join(f.dir, 'live', 'memory.db'));
      expect(await ls(path.join(f.dir, 'live'))).toEqual(['memory.db']);
      process.env.MEMVAULT_WORKERS = workers;
      for (const type of ['full', 'incremental'] as const) {
        const r = await runBackups(f.cfg, { type, alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
        expect(r.ok, JSON.stringify(r.failures)).toBe(true);
        expect(await ls(path.join(f.dir, 'live'))).toEqual(['memory.db']);
        expect(await ls(path.join(f.dir, 'scratch'))).toEqual([]);
        expect(await restoredRows(f, r.outcomes[0].backupId)).toBe(256);
      }
    });
  }

  it("never removes a live writer's -wal: its uncheckpointed rows are backed up and stay in the database", async () => {
    const f = await makeFixture({ db: { kind: 'sqlite', path: 'live/memory.db', scratchDir: 'scratch' } }, { secondary: false });
    const file = path.join(f.dir, 'live', 'memory.db');
    await fs.mkdir(path.dirname(file));
    makeDb(file);
    const holder = spawn(process.execPath, ['-e', HOLDER, file], { stdio: ['pipe', 'pipe', 'inherit'] });
    const closed = new Promise((r) => holder.on('close', r));
    const lines = createInterface({ input: holder.stdout })[Symbol.asyncIterator]();
    try {
      expect((await lines.next()).value).toBe('ready');
      const wal = await fs.stat(`${file}-wal`);
      expect(wal.size).toBeGreaterThan(0);
      const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
      expect(r.ok, JSON.stringify(r.failures)).toBe(true);
      // The writer's files are where they were; the backup has the rows held in the -wal.
      expect(await ls(path.dirname(file))).toEqual(['memory.db', 'memory.db-shm', 'memory.db-wal']);
      expect((await fs.stat(`${file}-wal`)).size).toBeGreaterThanOrEqual(wal.size);
      expect(await restoredRows(f, r.outcomes[0].backupId)).toBe(256 + 50);
      holder.stdin.write('go\n');
      expect(Number((await lines.next()).value)).toBe(256 + 50 + 1);
    } finally {
      holder.stdin.end();
      await closed;
    }
    const db = new DatabaseSync(file, { readOnly: true });
    expect((db.prepare('SELECT count(*) AS n FROM memories').get() as { n: number }).n).toBe(256 + 50 + 1);
    db.close();
    expect(await ls(path.join(f.dir, 'scratch'))).toEqual([]);
  });

  it('removes the scratch copy when the backup fails', async () => {
    const f = await makeFixture({ db: { kind: 'sqlite', path: 'live/memory.db', scratchDir: 'scratch' } }, { secondary: false });
    await fs.mkdir(path.join(f.dir, 'live'));
    makeDb(path.join(f.dir, 'live', 'memory.db'));
    const chunks = path.join(f.dir, 'vault-primary', 'packs');
    await fs.mkdir(chunks, { recursive: true });
    for (let i = 0; i < 256; i++) await fs.writeFile(path.join(chunks, i.toString(16).padStart(2, '0')), '');
    for (const workers of ['2', '0']) {
      process.env.MEMVAULT_WORKERS = workers;
      const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
      expect(r.ok).toBe(false);
      // Named by the worker (chunk and vault) or by the vault's storage (vault and chunk key).
      expect(r.failures[0].error).toMatch(/storing chunk [0-9a-f]{64} in \S*vault-primary|vault-primary: cannot write packs\/[0-9a-f]{2}\/[0-9a-f]{32}/);
      expect(await ls(path.join(f.dir, 'scratch'))).toEqual([]);
      expect(await ls(path.join(f.dir, 'live'))).toEqual(['memory.db']);
    }
  });

  it("the next backup removes a killed backup's scratch copy, and nothing a live run may own", async () => {
    const f = await makeFixture({ db: { kind: 'sqlite', path: 'live/memory.db', scratchDir: 'scratch' } }, { secondary: false });
    await fs.mkdir(path.join(f.dir, 'live'));
    makeDb(path.join(f.dir, 'live', 'memory.db'), 48);
    const scratch = path.join(f.dir, 'scratch');

    // A backup killed while its scratch copy exists.
    const child = cliSpawn(['backup', '--config', f.cfgFile, '--type', 'full']);
    const exited = new Promise((r) => child.on('close', r));
    let left: string | undefined;
    for (let i = 0; i < 3000 && !left; i++) {
      for (const d of await ls(scratch)) {
        const inside = await ls(path.join(scratch, d));
        if (inside.includes('memory.db')) left = d;
      }
      if (!left) await new Promise((r) => setTimeout(r, 10));
    }
    expect(left, 'the backup never made its scratch copy').toBeDefined();
    killTree(child);
    await exited;
    expect(left).toMatch(new RegExp(`^memvault-sqlite-db-${child.pid}-`));
    expect(await ls(scratch)).toContain(left);

    const hours = (h: number) => new Date(Date.now() - h * 3600_000);
    const plant = async (name: string, age: Date, file = false) => {
      const p = path.join(scratch, name);
      if (file) await fs.writeFile(p, 'x');
      else {
        await fs.mkdir(p);
        await fs.writeFile(path.join(p, 'memory.db'), 'x');
      }
      await fs.utimes(p, age, age);
    };
    await fs.utimes(path.join(scratch, left!), hours(2), hours(2));
    await plant(`memvault-sqlite-db-${process.pid}-aaaaaa`, hours(2)); // a live process's
    await plant(`memvault-sqlite-db-${child.pid}-bbbbbb`, hours(0.1)); // too recent to judge
    await plant(`memvault-sqlite-other-${child.pid}-cccccc`, hours(2)); // another component's
    await plant('memvault-db-0123456789ab.sqlite', hours(24 * 8), true); // an earlier version's copy
    await plant('memvault-db-0123456789ab.sqlite-wal', hours(24 * 8), true);
    await plant('memvault-db-abcdefabcdef.sqlite', hours(2), true); // ... not old enough
    await plant('notes.txt', hours(24 * 30), true); // not ours

    const r = await cli(['backup', '--config', f.cfgFile, '--type', 'full']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(await ls(scratch)).toEqual([
      'memvault-db-abcdefabcdef.sqlite',
      `memvault-sqlite-db-${child.pid}-bbbbbb`,
      `memvault-sqlite-db-${process.pid}-aaaaaa`,
      `memvault-sqlite-other-${child.pid}-cccccc`,
      'notes.txt',
    ].sort());
  });

  it('names a scratch directory that cannot be used', async () => {
    const f = await makeFixture({ db: { kind: 'sqlite', path: 'memory.db', scratchDir: 'scratch' } }, { secondary: false });
    makeDb(path.join(f.dir, 'memory.db'));
    await fs.writeFile(path.join(f.dir, 'scratch'), 'a file, not a directory');
    const r = await cli(['backup', '--config', f.cfgFile, '--type', 'full']);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(new RegExp(`components\\.db\\.scratchDir: cannot create a scratch directory in ${path.join(f.dir, 'scratch').replaceAll('/', '\\/')}: EEXIST`));
    expect(await ls(f.dir)).not.toContain('memory.db-wal');
  });
});

describe('filesystem errors during a sqlite backup name the file and where', () => {
  // A file size limit (ulimit -f; Node ignores SIGXFSZ, so writes fail with EFBIG) stands in
  // for a full disk: unprivileged, and as root. The copy exceeds it; chunk files do not.
  it('a scratch directory that fills up: exit 1 naming the database, the scratch copy and the scratch directory; nothing left', async () => {
    const f = await makeFixture({ db: { kind: 'sqlite', path: 'live/memory.db', scratchDir: 'scratch' } }, { secondary: false });
    await fs.mkdir(path.join(f.dir, 'live'));
    makeDb(path.join(f.dir, 'live', 'memory.db'), 12);
    const launcher = path.resolve(import.meta.dirname, '../../cli/memvault.mjs');
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('bash', ['-c', 'ulimit -f 8192 && exec "$0" "$@"', process.execPath, launcher, 'backup', '--config', f.cfgFile, '--type', 'full'], {
        env: { ...process.env, MEMVAULT_LOG: 'silent' }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { out += d; });
      child.on('close', (code) => resolve({ code, out }));
    });
    expect(r.code, r.out).toBe(1);
    const scratch = path.join(f.dir, 'scratch').replaceAll('/', '\\/');
    expect(r.out).toMatch(new RegExp(`FAILED db: db: copying \\S*live\\/memory\\.db to ${scratch}\\/memvault-sqlite-db-\\d+-\\w+\\/memory\\.db \\(scratch directory ${scratch}\\) failed: `));
    expect(await ls(path.join(f.dir, 'scratch'))).toEqual([]);
    expect(await ls(path.join(f.dir, 'live'))).toEqual(['memory.db']);
  });
});

describe('a sqlite backup reads the database it checked', () => {
  afterEach(() => { delete sqliteBackupSeams.beforeOpen; });

  for (const swap of ['a symlink to a root-only database', 'another database renamed over it'] as const) {
    it(`the database replaced by ${swap} before SQLite opens it: the backup fails naming it, nothing of the other is stored`, async () => {
      const f = await makeFixture({ db: { kind: 'sqlite', path: 'live/memory.db', scratchDir: 'scratch' } }, { secondary: false });
      const live = path.join(f.dir, 'live', 'memory.db');
      await fs.mkdir(path.dirname(live));
      makeDb(live);
      const other = path.join(f.dir, 'outside', 'shadow.db');
      await fs.mkdir(path.dirname(other));
      const marker = `ROOT-ONLY-${randomBytes(8).toString('hex')}`;
      const s = new DatabaseSync(other);
      s.exec(`CREATE TABLE memories (id INTEGER PRIMARY KEY, fact TEXT, embedding BLOB); INSERT INTO memories (fact) VALUES ('${marker}')`);
      s.close();
      await fs.chmod(other, 0o600);
      sqliteBackupSeams.beforeOpen = async (file) => {
        await fs.rm(file);
        if (swap === 'a symlink to a root-only database') await fs.symlink(other, file);
        else await fs.rename(other, file);
      };
      const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
      expect(r.ok).toBe(false);
      expect(r.failures[0].errorName).toBe('RetryableError');
      expect(r.failures[0].error).toMatch(/live\/memory\.db was replaced while it was being opened \(not the file that was checked\); not backed up/);
      expect(r.outcomes).toEqual([]);
      const vault = await openVault(f.cfg);
      expect((await vault.listChunks()).size).toBe(0);
      expect(await ls(path.join(f.dir, 'scratch'))).toEqual([]);
    });
  }
});
