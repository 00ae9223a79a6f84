// Hooks around backups and restores (issue 13: "stop the service, restore,
// verify, restart"), run as an operator configures them: commands that write to
// a log the test reads. Before-hooks gate, after-hooks always run and say the
// result; an in-place restore whose after-hooks fail once the data is live is
// rolled back to the replaced data.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { cli } from '../helpers/cli.ts';
import { makeFixture, writeTree, type Fixture } from '../helpers/fixture.ts';

/** A hook that appends "<phase> <result>" to hooks.log in the fixture dir, then exits with `code`. */
function logHook(dir: string, name: string, code = 0) {
  return { name, command: { argv: ['sh', '-c', `echo "$MEMVAULT_HOOK $MEMVAULT_RESULT" >> ${path.join(dir, 'hooks.log')}; exit ${code}`] } };
}
const hookLog = async (f: Fixture) => (await fs.readFile(path.join(f.dir, 'hooks.log'), 'utf8').catch(() => '')).trim().split('\n').map((l) => l.trim()).filter(Boolean);

async function withHooks(components: (dir: string) => Record<string, unknown>): Promise<Fixture> {
  const f = await makeFixture({ placeholder: { kind: 'files', path: 'src' } }, { secondary: false, init: false });
  const { parse, stringify } = await import('yaml');
  const doc = parse(await fs.readFile(f.cfgFile, 'utf8'));
  doc.components = components(f.dir);
  await fs.writeFile(f.cfgFile, stringify(doc));
  expect((await cli(['init', '--config', f.cfgFile])).code).toBe(0);
  return f;
}

describe('hooks', () => {
  it('around a backup: before, then after with the result; after runs when the backup fails; a failing before-hook stops it', async () => {
    const f = await withHooks((dir) => ({
      notes: { kind: 'files', path: 'src', hooks: { beforeBackup: [logHook(dir, 'stop')], afterBackup: [logHook(dir, 'start')] } },
      gone: { kind: 'files', path: 'no-such-dir', hooks: { afterBackup: [logHook(dir, 'start')] } },
      gated: { kind: 'files', path: 'src', hooks: { beforeBackup: [logHook(dir, 'drain queue', 3)], afterBackup: [logHook(dir, 'start')] } },
    }));
    await writeTree(path.join(f.dir, 'src'), { 'a.md': 'memory\n' });
    const ok = await cli(['backup', '--config', f.cfgFile, '--type', 'full', '--component', 'notes']);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(await hookLog(f)).toEqual(['beforeBackup', 'afterBackup ok']);
    const bad = await cli(['backup', '--config', f.cfgFile, '--type', 'full', '--component', 'gone']);
    expect(bad.code).toBe(1);
    expect((await hookLog(f)).slice(2)).toEqual(['afterBackup failed']);
    const gated = await cli(['backup', '--config', f.cfgFile, '--type', 'full', '--component', 'gated']);
    expect(gated.code).toBe(1);
    expect(gated.stdout).toMatch(/FAILED gated: gated: beforeBackup hook drain queue failed: expected exit 0, got exit 3: ; the backup did not start/);
    expect((await hookLog(f)).slice(3)).toEqual(['beforeBackup']);
    await expect(fs.readdir(path.join(f.dir, 'vault-primary', 'manifests', 'gated'))).rejects.toThrow();
  }, 60_000);

  it('around a restore: a failing after-hook fails the restore naming it', async () => {
    const f = await withHooks((dir) => ({
      notes: { kind: 'files', path: 'src', hooks: { beforeRestore: [logHook(dir, 'stop')], afterRestore: [logHook(dir, 'start'), logHook(dir, 'warm cache', 1)] } },
    }));
    await writeTree(path.join(f.dir, 'src'), { 'a.md': 'memory\n' });
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    const r = await cli(['restore', '--latest', '--config', f.cfgFile, '--target', path.join(f.dir, 'out')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/INVALID notes: afterRestore hook: expected "success", got "notes: afterRestore hook warm cache failed: expected exit 0, got exit 1: "/);
    expect(await hookLog(f)).toEqual(['beforeRestore', 'afterRestore ok', 'afterRestore ok']);
    expect(await fs.readFile(path.join(f.dir, 'out', 'notes', 'a.md'), 'utf8')).toBe('memory\n');
  }, 60_000);

  it('an in-place restore whose after-hook fails once live is rolled back to the replaced data', async () => {
    const f = await withHooks((dir) => ({
      'memory-db': { kind: 'sqlite', path: 'memory.db', hooks: { afterRestore: [logHook(dir, 'restart', 1)] } },
    }));
    const live = path.join(f.dir, 'memory.db');
    let db = new DatabaseSync(live);
    db.exec("CREATE TABLE memories (t TEXT); INSERT INTO memories VALUES ('a'), ('b');");
    db.close();
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    db = new DatabaseSync(live);
    db.exec("INSERT INTO memories VALUES ('c');");
    db.close();
    const input = JSON.stringify({ mode: 'latest', components: ['memory-db'], target: { inPlace: true } });
    const r = await cli(['run', 'restore', '--config', f.cfgFile, '--input', input]);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/memory-db: in-place restore rolled back to the replaced data at .*memory\.db \(the restored copy is kept at .*memory\.db\.memvault-failed-\S+\): memory-db: afterRestore hook restart failed/);
    const rows = (p: string) => { const d = new DatabaseSync(p, { readOnly: true }); try { return (d.prepare('SELECT count(*) AS n FROM memories').get() as { n: number }).n; } finally { d.close(); } };
    expect(rows(live)).toBe(3);
    const failed = (await fs.readdir(f.dir)).find((n) => n.startsWith('memory.db.memvault-failed-'))!;
    expect(rows(path.join(f.dir, failed))).toBe(2);
    // Run once with the restored data live, once more after the rollback.
    expect(await hookLog(f)).toEqual(['afterRestore ok', 'afterRestore failed']);
  }, 120_000);

  it('a restore that fails in the restore machine still runs the after-hooks, told it failed; the live data stays', async () => {
    const f = await withHooks((dir) => ({
      'memory-db': { kind: 'sqlite', path: 'memory.db', hooks: { beforeRestore: [logHook(dir, 'stop')], afterRestore: [logHook(dir, 'start')] } },
    }));
    const live = path.join(f.dir, 'memory.db');
    const db = new DatabaseSync(live);
    db.exec("CREATE TABLE memories (t TEXT); INSERT INTO memories VALUES ('a'), ('b');");
    db.close();
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    // Every pack damaged: the restore step fails reading the backup.
    const packs = path.join(f.dir, 'vault-primary', 'packs');
    for (const d of await fs.readdir(packs)) {
      for (const p of await fs.readdir(path.join(packs, d))) {
        const file = path.join(packs, d, p);
        const b = await fs.readFile(file);
        b[20] ^= 0xff;
        await fs.writeFile(file, b);
      }
    }
    const before = await fs.readFile(live);
    const input = JSON.stringify({ mode: 'latest', components: ['memory-db'], target: { inPlace: true } });
    const r = await cli(['run', 'restore', '--config', f.cfgFile, '--input', input]);
    expect(r.code).toBe(1);
    expect(await hookLog(f)).toEqual(['beforeRestore', 'afterRestore failed']);
    expect((await fs.readFile(live)).equals(before)).toBe(true);
  }, 120_000);

  it('an in-place restore that fails its checks is not promoted, and the after-hooks still run, told it failed', async () => {
    const f = await withHooks((dir) => ({
      'memory-db': {
        kind: 'sqlite', path: 'memory.db', hooks: { beforeRestore: [logHook(dir, 'stop')], afterRestore: [logHook(dir, 'start')] },
        checks: [{ name: 'enough memories', sql: { query: 'SELECT count(*) FROM memories', expectAtLeast: 1000 } }],
      },
    }));
    const live = path.join(f.dir, 'memory.db');
    const db = new DatabaseSync(live);
    db.exec("CREATE TABLE memories (t TEXT); INSERT INTO memories VALUES ('a'), ('b');");
    db.close();
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    const before = await fs.readFile(live);
    const input = JSON.stringify({ mode: 'latest', components: ['memory-db'], target: { inPlace: true } });
    const r = await cli(['run', 'restore', '--config', f.cfgFile, '--input', input]);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/enough memories/);
    expect(await hookLog(f)).toEqual(['beforeRestore', 'afterRestore failed']);
    expect((await fs.readFile(live)).equals(before)).toBe(true);
  }, 120_000);

  it('a hook with both command and http is a config error', async () => {
    const f = await makeFixture({ notes: { kind: 'files', path: 'src', hooks: {} } }, { secondary: false, init: false });
    const { parse, stringify } = await import('yaml');
    const doc = parse(await fs.readFile(f.cfgFile, 'utf8'));
    doc.components.notes.hooks = { beforeBackup: [{ name: 'x', command: { argv: ['true'] }, http: { url: 'http://127.0.0.1:1/' } }] };
    await fs.writeFile(f.cfgFile, stringify(doc));
    const r = await cli(['config', 'validate', '--config', f.cfgFile]);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/components\.notes\.hooks\.beforeBackup\.0.*exactly one of command, http or lambda/);
  });
});
