// Restores never write outside their target: symlinks planted in a target
// (a directory that points outside, a temporary-looking name and a file's own
// name that point at a victim file) are replaced, never followed, by a forced
// restore through the CLI and through the restore state machine, on the
// chunk-pool workers and on the main thread (MEMVAULT_WORKERS=0); without force
// the same target is refused. The shared target check (sandbox, live data,
// symlinked paths) through the CLI, the state machine and restore-component.
// The source root's mode comes back, created directories are 0700, a restored
// WAL database leaves no -wal/-shm (an in-place one moves the live -wal aside),
// and a full or read-only target file system names the file and the target
// and leaves no temporary file.
import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { makeFixture, writeTree, type Fixture } from '../helpers/fixture.ts';
import { cli } from '../helpers/cli.ts';
import { runBackups } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { filesDriver } from '../../functions/components/files.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import { makeHarness } from '../helpers/driver-harness.ts';
import { listManifestNames } from '../../functions/core/vault.ts';
import { defaultDeps } from '../../functions/handlers/deps.ts';
import { makeHandler as makeRestoreComponent } from '../../functions/handlers/restore-component.ts';
import { platformFixture, rows, run } from '../statemachines/helpers.ts';

afterEach(() => { delete process.env.MEMVAULT_WORKERS; });

/** Every file, link and directory under `root` with its content hash (or link target) and mode. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, r);
      const st = await fs.lstat(abs);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[r] = `link ${await fs.readlink(abs)}`;
      else if (st.isDirectory()) { out[r] = `dir ${mode}`; await walk(r); }
      else out[r] = `file ${mode} ${createHash('sha256').update(await fs.readFile(abs)).digest('hex')}`;
    }
  };
  await walk('');
  return out;
}

/** A files component `graph` with a 3 MB file in a subdirectory, backed up; `outside` holds a 0600 victim file. */
async function graphBackup(extra: Record<string, unknown> = {}, setup?: (dir: string) => Promise<void>) {
  const f = await makeFixture({ graph: { kind: 'files', path: 'data/graph', schedule: '0 2 * * *', rpo: '26h' }, ...extra }, { secondary: false });
  const src = path.join(f.dir, 'data', 'graph');
  await writeTree(src, { 'a.txt': 'alpha\n', 'sub/big.bin': randomBytes(3 * 1024 * 1024), 'sub/x.txt': 'x\n' });
  await fs.chmod(path.join(src, 'a.txt'), 0o644);
  await fs.chmod(src, 0o750);
  const outside = path.join(f.dir, 'outside');
  await writeTree(outside, { victim: 'secret\n', 'keep.txt': 'keep\n' });
  await fs.chmod(path.join(outside, 'victim'), 0o600);
  await setup?.(f.dir);
  const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
  expect(r.ok).toBe(true);
  return { f, src, outside };
}

/** The planted target of the report: <dir>/sub -> outside/, <dir>/a.txt.memvault-partial and <dir>/a.txt -> outside/victim. */
async function plant(dir: string, outside: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.symlink(outside, path.join(dir, 'sub'));
  await fs.symlink(path.join(outside, 'victim'), path.join(dir, 'a.txt.memvault-partial'));
  await fs.symlink(path.join(outside, 'victim'), path.join(dir, 'a.txt'));
}

/** The restored tree holds the source's bytes and modes, as real files and directories. */
async function expectRestored(src: string, out: string): Promise<void> {
  const want = await snapshot(src);
  const got = await snapshot(out);
  for (const [k, v] of Object.entries(want)) expect(got[k], k).toBe(v);
  expect((await fs.lstat(path.join(out, 'sub'))).isDirectory()).toBe(true);
  expect((await fs.lstat(path.join(out, 'a.txt'))).isFile()).toBe(true);
  // Nothing but the planted decoy (left alone: not the backup's) besides the backup's entries.
  expect(Object.keys(got).filter((k) => !(k in want))).toEqual(['a.txt.memvault-partial']);
}

describe('restore into a target with planted symlinks', () => {
  for (const workers of ['2', '0']) {
    it(`restore --force replaces the links and writes nothing outside the target (CLI, MEMVAULT_WORKERS=${workers})`, async () => {
      const { f, src, outside } = await graphBackup();
      const target = path.join(f.dir, 'restore');
      await plant(path.join(target, 'graph'), outside);
      const before = await snapshot(outside);
      const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target, '--force'], { env: { MEMVAULT_WORKERS: workers } });
      expect(await snapshot(outside)).toEqual(before);
      expect(r.code, r.stderr).toBe(0);
      await expectRestored(src, path.join(target, 'graph'));
      // The source root's mode came back with it.
      expect((await fs.stat(path.join(target, 'graph'))).mode & 0o7777).toBe(0o750);
    });

    it(`the restore state machine with force does the same (MEMVAULT_WORKERS=${workers})`, async () => {
      const { f, src, outside } = await graphBackup();
      const target = path.join(f.dir, 'sandbox', 'planted');
      await plant(path.join(target, 'graph'), outside);
      const before = await snapshot(outside);
      process.env.MEMVAULT_WORKERS = workers;
      const r = await run(f, 'restore', { mode: 'latest', target: { dir: target, force: true } });
      expect(await snapshot(outside)).toEqual(before);
      expect(r.status, r.cause).toBe('SUCCEEDED');
      await expectRestored(src, path.join(target, 'graph'));
    });
  }

  it('replaces a component directory that is itself a link to the outside (force), and refuses it without force', async () => {
    const { f, src, outside } = await graphBackup();
    const before = await snapshot(outside);
    // Through the driver, without force: the planted link is named, nothing is written.
    const h = await makeHarness(filesDriver, 'graph', { path: src });
    const b = await h.backup('full');
    await fs.mkdir(path.join(h.dir, 'restore-1'));
    await fs.symlink(outside, path.join(h.dir, 'restore-1', 'graph'));
    await expect(h.restore(b.backupId)).rejects.toThrow(/graph: the restore target .*restore-1\/graph is a symlink \(to .*outside\) where the backup has a directory; .*force/);
    await fs.mkdir(path.join(h.dir, 'restore-2', 'graph'), { recursive: true });
    await fs.symlink(outside, path.join(h.dir, 'restore-2', 'graph', 'sub'));
    await expect(h.restore(b.backupId)).rejects.toThrow(/sub in restore target .*restore-2\/graph is a symlink/);
    expect(await snapshot(outside)).toEqual(before);
    await h.close();
    // Through the CLI with --force: <target>/graph -> outside is replaced by a real directory.
    const target = path.join(f.dir, 'restore');
    await fs.mkdir(target);
    await fs.symlink(outside, path.join(target, 'graph'));
    const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target, '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect(await snapshot(outside)).toEqual(before);
    expect((await fs.lstat(path.join(target, 'graph'))).isDirectory()).toBe(true);
    expect(await snapshot(path.join(target, 'graph'))).toEqual(await snapshot(src));
  });

  it('validation compares a symlink where a file was restored as a link, and never reads through it', async () => {
    const { f, outside } = await graphBackup();
    const vault = await openVault(f.cfg);
    const plan = await planRestore(vault, { mode: 'latest' }, undefined, ['graph']);
    const target = path.join(f.dir, 'restore');
    const res = await restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
    expect(res.ok).toBe(true);
    // Swap a restored file and directory for links to files with the same content outside.
    const out = path.join(target, 'graph');
    await fs.copyFile(path.join(out, 'a.txt'), path.join(outside, 'a.txt'));
    await fs.rm(path.join(out, 'a.txt'));
    await fs.symlink(path.join(outside, 'a.txt'), path.join(out, 'a.txt'));
    await fs.cp(path.join(out, 'sub'), path.join(outside, 'sub'), { recursive: true, preserveTimestamps: true });
    await fs.rm(path.join(out, 'sub'), { recursive: true });
    await fs.symlink(path.join(outside, 'sub'), path.join(out, 'sub'));
    const manifest = await vault.readManifest(plan.items[0].ref);
    const v = await filesDriver.validate({ component: 'graph', settings: f.cfg.components.graph as never, manifest, vault, target: { dir: out }, location: out, resolve: (p) => p, log: silentLogger });
    expect(v.ok).toBe(false);
    const problems = (v.checks.find((c) => c.name.startsWith('entries match'))!.actual as string[]).join('\n');
    expect(problems).toMatch(/a\.txt: not a regular file/);
    expect(problems).toMatch(/sub: not a directory/);
    expect(problems).toMatch(/sub\/big\.bin: not restored \(sub: a symlink on the path of restored entries\)/);
  });
});

describe('restore target check (CLI and state machine alike)', () => {
  it('the state machine refuses ../.. and absolute paths outside the sandbox unless outsideSandbox is set', async () => {
    const { f } = await graphBackup();
    const elsewhere = path.join(f.dir, 'elsewhere');
    for (const dir of ['../..', elsewhere, 'sandbox/../elsewhere']) {
      const r = await run(f, 'restore', { mode: 'latest', target: { dir } });
      expect(r.status).toBe('FAILED');
      expect(r.error).toBe('UsageError');
      expect(r.cause).toMatch(/restore input: target\.dir: .* is outside the sandbox .*sandbox; .*"outsideSandbox": true/);
      expect(r.invocations.PlanRestore ?? 0).toBe(0);
    }
    await expect(fs.stat(elsewhere)).rejects.toThrow(/ENOENT/);
    // A link inside the sandbox that leads out of it is resolved, and refused the same way.
    await fs.mkdir(path.join(f.dir, 'sandbox'), { recursive: true });
    await fs.mkdir(elsewhere);
    await fs.symlink(elsewhere, path.join(f.dir, 'sandbox', 'out'));
    const linked = await run(f, 'restore', { mode: 'latest', target: { dir: 'sandbox/out' } });
    expect(linked.error).toBe('UsageError');
    expect(linked.cause).toMatch(new RegExp(`sandbox/out \\(${elsewhere}\\) is outside the sandbox`));
    expect(await fs.readdir(elsewhere)).toEqual([]);
    // The operator's explicit flag: restored there.
    const ok = await run(f, 'restore', { mode: 'latest', target: { dir: elsewhere, outsideSandbox: true } });
    expect(ok.status, ok.cause).toBe('SUCCEEDED');
    expect(await fs.readFile(path.join(elsewhere, 'graph', 'a.txt'), 'utf8')).toBe('alpha\n');
    // outsideSandbox alone is a mistake, named.
    const bare = await run(f, 'restore', { mode: 'latest', target: { outsideSandbox: true } });
    expect(bare.cause).toMatch(/target\.outsideSandbox: only used with target\.dir/);
  });

  it('refuses live data as <dir>/<component>, a target inside or containing live data, and links to it, through both', async () => {
    const { f, src } = await graphBackup({ 'memory-db': { kind: 'sqlite', path: 'db/memory.db' } }, async (dir) => {
      await fs.mkdir(path.join(dir, 'db'));
      const d = new DatabaseSync(path.join(dir, 'db', 'memory.db'));
      d.exec('CREATE TABLE t (x)');
      d.close();
    });
    const before = await snapshot(src);
    const data = path.join(f.dir, 'data');
    await fs.mkdir(path.join(f.dir, 'sandbox'));
    await fs.symlink(data, path.join(f.dir, 'sandbox', 'link-to-data'));
    await fs.mkdir(path.join(f.dir, 'work', 'deep'), { recursive: true });
    const cases: [string, RegExp][] = [
      // <dir>/graph is the live data of graph
      [data, /the restore target of graph, .*data\/graph, is the live data of graph \(components\.graph\.path: .*data\/graph\)/],
      [path.join(src, 'sub'), /the restore target of graph, .*data\/graph\/sub\/graph, is inside the live data of graph/],
      [f.dir, /the restore target .* contains the live data of (graph|memory-db)/],
      [path.join(f.dir, 'db'), /contains the live data of memory-db \(components\.memory-db\.path: .*db\/memory\.db\)/],
      // a link in the target path to the live data's parent
      [path.join(f.dir, 'sandbox', 'link-to-data'), /the restore target of graph, .*sandbox\/link-to-data\/graph \(.*\/data\/graph\), is the live data of graph/],
    ];
    for (const [dir, message] of cases) {
      const sm = await run(f, 'restore', { mode: 'latest', components: ['graph'], target: { dir, force: true, outsideSandbox: true } });
      expect(sm.status, dir).toBe('FAILED');
      expect(sm.error).toBe('UsageError');
      expect(sm.cause).toMatch(/restore input: target\.dir: /);
      expect(sm.cause).toMatch(message);
      expect(sm.cause).toMatch(/"inPlace": true/);
      const c = await cli(['restore', '--config', f.cfgFile, '--latest', '--component', 'graph', '--target', dir, '--force']);
      expect(c.code, dir).toBe(2);
      expect(c.stderr).toMatch(/--target: /);
      expect(c.stderr).toMatch(message);
    }
    // ../.. from a working directory two levels down is the fixture directory, which holds the live data.
    const up = await cli(['restore', '--config', f.cfgFile, '--latest', '--component', 'graph', '--target', '../..', '--force'], { cwd: path.join(f.dir, 'work', 'deep') });
    expect(up.code).toBe(2);
    expect(up.stderr).toMatch(/--target: the restore target .* contains the live data of/);
    expect(await snapshot(src)).toEqual(before);
    // An absolute path outside anything live is the CLI operator's choice.
    const ok = await cli(['restore', '--config', f.cfgFile, '--latest', '--component', 'graph', '--target', path.join(f.dir, 'work', 'restored')]);
    expect(ok.code, ok.stderr).toBe(0);
  });
});

describe('restore-component checks its target again', () => {
  it('refuses a Map item whose targetDir is live data, writing nothing', async () => {
    const { f, src } = await graphBackup();
    await fs.writeFile(path.join(src, 'a.txt'), 'changed since the backup\n');
    const before = await snapshot(src);
    const vault = await openVault(f.cfg);
    const ref = (await listManifestNames(vault.storage, 'graph'))[0];
    const handler = makeRestoreComponent(defaultDeps(f.cfg));
    const item = { component: 'graph', backupId: ref.id, manifestKey: ref.key, backupTime: ref.time.toISOString(), from: 'primary', targetDir: src, inPlace: false, live: null, options: { force: true } };
    await expect(handler({ item })).rejects.toThrow(/restore item graph: targetDir: the restore target of graph, .*data\/graph, is the live data of graph/);
    expect(await snapshot(src)).toEqual(before);
  });
});

describe('restored directories and databases', () => {
  it('creates the target and sandbox directories 0700 and restores the source root mode', async () => {
    const { f } = await graphBackup();
    const r = await run(f, 'restore', { mode: 'latest' }, { name: 'modes-1' });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const mode = async (p: string) => (await fs.stat(p)).mode & 0o7777;
    expect(await mode(path.join(f.dir, 'sandbox'))).toBe(0o700);
    expect(await mode(path.join(f.dir, 'sandbox', 'restore-modes-1'))).toBe(0o700);
    expect(await mode(path.join(f.dir, 'sandbox', 'restore-modes-1', 'graph'))).toBe(0o750);
    const target = path.join(f.dir, 'cli-restore', 'nested');
    expect((await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target])).code).toBe(0);
    expect(await mode(path.join(f.dir, 'cli-restore'))).toBe(0o700);
    expect(await mode(target)).toBe(0o700);
    expect(await mode(path.join(target, 'graph'))).toBe(0o750);
  });

  it('a WAL database restores and validates leaving no -wal or -shm, and planted ones are unlinked, not followed', async () => {
    const f = await makeFixture({ 'memory-db': { kind: 'sqlite', path: 'memory.db' } }, { secondary: false });
    const db = new DatabaseSync(path.join(f.dir, 'memory.db'));
    db.exec('PRAGMA journal_mode=WAL; CREATE TABLE m (id INTEGER PRIMARY KEY, fact TEXT)');
    for (let i = 0; i < 200; i++) db.prepare('INSERT INTO m (fact) VALUES (?)').run(`fact ${i}`);
    db.close();
    expect((await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger })).ok).toBe(true);
    const outside = path.join(f.dir, 'outside');
    await writeTree(outside, { victim: 'secret\n' });
    const before = await snapshot(outside);
    const target = path.join(f.dir, 'restore');
    await fs.mkdir(path.join(target, 'memory-db'), { recursive: true });
    await fs.symlink(path.join(outside, 'victim'), path.join(target, 'memory-db', 'memory.db-wal'));
    const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target, '--force', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).components[0].validation.ok).toBe(true);
    expect(await fs.readdir(path.join(target, 'memory-db'))).toEqual(['memory.db']);
    expect(await snapshot(outside)).toEqual(before);
    const restored = new DatabaseSync(path.join(target, 'memory-db', 'memory.db'), { readOnly: true });
    expect((restored.prepare('SELECT count(*) AS n FROM m').get() as { n: number }).n).toBe(200);
    restored.close();
  });
});

describe('older backups and in-place restores', () => {
  it('a backup that did not record the root mode restores and validates, its root left 0700', async () => {
    const { src } = await graphBackup();
    const h = await makeHarness(filesDriver, 'graph', { path: src });
    const b = await h.backup('full');
    const manifest = await h.manifest(b.backupId);
    expect(manifest.driver.rootMode).toBe(0o750);
    delete manifest.driver.rootMode;
    const ctx = { component: 'graph', settings: h.cfg.components.graph as never, manifest, resolve: (p: string) => p, log: silentLogger };
    const dir = path.join(h.dir, 'old', 'graph');
    const r = await filesDriver.restore({ ...ctx, vault: h.vault, target: { dir } });
    expect((await filesDriver.validate({ ...ctx, vault: h.vault, target: { dir }, location: r.location })).ok).toBe(true);
    expect((await fs.stat(dir)).mode & 0o7777).toBe(0o700);
    expect(await fs.readFile(path.join(dir, 'sub', 'x.txt'), 'utf8')).toBe('x\n');
    await h.close();
  });

  it('an in-place restore of a database moves the live -wal aside with it, so no stale WAL is replayed', async () => {
    const f = await platformFixture();
    expect((await run(f, 'backup-run', { type: 'full', components: ['memory-db'] })).status).toBe('SUCCEEDED');
    const original = rows(f.db);
    // Changes after the backup, left in a WAL next to the live file (as a crashed writer leaves it).
    const live = new DatabaseSync(f.db);
    live.exec('PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0');
    for (let i = 0; i < 5; i++) live.prepare('INSERT INTO memories (fact) VALUES (?)').run(`after the backup ${i}`);
    const wal = await fs.readFile(`${f.db}-wal`);
    live.close();
    await fs.writeFile(`${f.db}-wal`, wal);
    const r = await run(f, 'restore', { mode: 'latest', components: ['memory-db'], target: { inPlace: true } });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    const names = await fs.readdir(path.dirname(f.db));
    expect(names.filter((n) => /^memory\.db(-wal|-shm|-journal)?$/.test(n))).toEqual(['memory.db']);
    const aside = names.find((n) => /^memory\.db\.memvault-replaced-[^-]+$/.test(n));
    expect(names).toContain(`${aside}-wal`);
    expect(rows(f.db)).toEqual(original);
  });
});

// A small file system of its own for the target: mounting needs root (as CI runs).
const asRoot = process.getuid?.() === 0;

describe.skipIf(!asRoot)('a target file system that fails', () => {
  const mounts: string[] = [];
  afterEach(() => {
    for (const m of mounts.splice(0)) execFileSync('umount', [m]);
  });
  async function mount(f: Fixture, name: string, options: string): Promise<string> {
    const dir = path.join(f.dir, name);
    await fs.mkdir(dir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir]);
    mounts.push(dir);
    return dir;
  }

  for (const workers of ['2', '0']) {
    it(`a full disk names the file and the target, and leaves no temporary file (MEMVAULT_WORKERS=${workers})`, async () => {
      const { f } = await graphBackup();
      const target = await mount(f, 'small', 'size=1m');
      // The disk fills up during the restore: the free-space check that would refuse it up front
      // is off (MEMVAULT_SPACE_CHECK=off, as for a volume whose figures mean nothing); the writes find it.
      const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target, '--force'], { env: { MEMVAULT_WORKERS: workers, MEMVAULT_SPACE_CHECK: 'off' } });
      expect(r.code).toBe(1);
      // Files are restored several at once: whichever write finds the disk full is named (big.bin fills it).
      expect(r.stderr).toMatch(new RegExp(`graph: cannot write [^ ]+ in restore target ${target}/graph: ENOSPC: no space left on device`));
      const left = await fs.readdir(target, { recursive: true });
      expect(left.filter((n) => String(n).includes('.memvault-partial'))).toEqual([]);
      expect(left).not.toContain('graph/sub/big.bin');
    });
  }

  it('a read-only target names the directory and the target', async () => {
    const { f } = await graphBackup();
    const target = await mount(f, 'ro', 'ro,size=1m');
    const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target, '--force'], { env: { MEMVAULT_SPACE_CHECK: 'off' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`graph: cannot write the restore target ${target}/graph: EROFS: read-only file system`));
  });
});
