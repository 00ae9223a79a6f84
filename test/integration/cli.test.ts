import { describe, expect, it, beforeAll } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeFixture, writeTree, type Fixture } from '../helpers/fixture.ts';
import { cli } from '../helpers/cli.ts';

describe('memvault CLI', () => {
  let f: Fixture;
  const first: { time?: string; ids: string[] } = { ids: [] };

  beforeAll(async () => {
    f = await makeFixture({
      graph: { kind: 'files', path: 'platform/graph', critical: true },
      weights: { kind: 'files', path: 'platform/weights' },
    }, { init: false });
    await writeTree(path.join(f.dir, 'platform'), {
      'graph/nodes.jsonl': '{"id":1}\n'.repeat(1000),
      'weights/w.bin': randomBytes(1024 * 1024),
    });
  });

  it('init creates the key (0600) and both vaults, and is idempotent', async () => {
    const r = await cli(['init', '--config', f.cfgFile, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.key.created).toBe(true);
    expect(out.primary.created).toBe(true);
    expect(out.secondary.created).toBe(true);
    expect((await fs.stat(path.join(f.dir, 'memvault.key'))).mode & 0o777).toBe(0o600);
    const again = JSON.parse((await cli(['init', '--config', f.cfgFile, '--json'])).stdout);
    expect(again.primary.created).toBe(false);
    expect(again.key.keyId).toBe(out.key.keyId);
  });

  it('config validate: exit 0 when valid; exit 2 with every problem and its path', async () => {
    expect((await cli(['config', 'validate', '--config', f.cfgFile])).code).toBe(0);
    const bad = path.join(f.dir, 'bad.yaml');
    await fs.writeFile(bad, 'vault: {primary: "file://v"}\nencryption: {key: k}\ncomponents:\n  db: {kind: sqlite, retention: {days: -3}}\n  x: {kind: nope}\n');
    const r = await cli(['config', 'validate', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('components.db.retention.days: expected a positive integer, got -3');
    expect(r.stderr).toContain('components.db.path');
    expect(r.stderr).toMatch(/components\.x\.kind: unknown kind "nope"/);
    const j = await cli(['config', 'validate', '--config', bad, '--json']);
    expect(j.code).toBe(2);
    expect(JSON.parse(j.stdout).problems.length).toBeGreaterThanOrEqual(3);
  });

  it('bad usage exits 2', async () => {
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'weekly'])).code).toBe(2);
    expect((await cli(['frobnicate'])).code).toBe(2);
    expect((await cli(['restore', '--config', f.cfgFile, '--latest'])).stderr).toMatch(/--target/);
    expect((await cli(['list', '--config', path.join(f.dir, 'missing.yaml')])).code).toBe(2);
  });

  it('backup --json prints only JSON on stdout; critical backs up only critical components', async () => {
    const r = await cli(['backup', '--config', f.cfgFile, '--type', 'full', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.outcomes.map((o: { component: string }) => o.component).sort()).toEqual(['graph', 'weights']);
    first.ids = out.outcomes.map((o: { backupId: string }) => o.backupId);
    first.time = new Date().toISOString();
    await new Promise((res) => setTimeout(res, 50));
    const c = JSON.parse((await cli(['backup', '--config', f.cfgFile, '--type', 'critical', '--json'])).stdout);
    expect(c.outcomes.map((o: { component: string }) => o.component)).toEqual(['graph']);
    expect(c.outcomes[0].type).toBe('critical');
  });

  it('list shows the catalog newest first, per component', async () => {
    const all = JSON.parse((await cli(['list', '--config', f.cfgFile, '--json'])).stdout).backups;
    expect(all.length).toBe(3);
    expect(all[0].component).toBe('graph');
    expect(all[0].type).toBe('critical');
    const w = JSON.parse((await cli(['list', '--config', f.cfgFile, '--component', 'weights', '--json'])).stdout).backups;
    expect(w.map((x: { component: string }) => x.component)).toEqual(['weights']);
    const bad = await cli(['list', '--config', f.cfgFile, '--component', 'nope']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown component "nope".*graph, weights/);
  });

  it('restore errors list what exists: unknown component, unknown backup id, time before the first backup', async () => {
    const t = path.join(f.dir, 'r-errors');
    const u = await cli(['restore', '--config', f.cfgFile, '--latest', '--component', 'nope', '--target', t]);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/unknown component "nope".*graph.*weights/);
    const b = await cli(['restore', '--config', f.cfgFile, '--backup', 'nope-123', '--target', t]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/no backup with id "nope-123".*newest backups:.*graph/);
    const a = await cli(['restore', '--config', f.cfgFile, '--at', '2001-01-01T00:00:00Z', '--target', t]);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/no backup at or before 2001-01-01.*first backup is/);
    const bad = await cli(['restore', '--config', f.cfgFile, '--at', 'yesterday', '--target', t]);
    expect(bad.code).toBe(2);
    await expect(fs.readdir(t)).rejects.toThrow(); // nothing was written
  });

  it('restores by point in time (per component, with skew), refuses a non-empty target without --force', async () => {
    const target = path.join(f.dir, 'r-pit');
    const r = await cli(['restore', '--config', f.cfgFile, '--at', first.time!, '--target', target, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.components.map((c: { backupId: string }) => c.backupId).sort()).toEqual([...first.ids].sort());
    expect(typeof out.skewMs).toBe('number');
    expect(out.recoveryTimeMs).toBeGreaterThan(0);
    const orig = await fs.readFile(path.join(f.dir, 'platform/weights/w.bin'));
    expect((await fs.readFile(path.join(target, 'weights/w.bin'))).equals(orig)).toBe(true);
    const again = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/not empty.*--force/);
    const forced = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target, '--force']);
    expect(forced.code).toBe(0);
  });

  it('replicates to the secondary and restores from it', async () => {
    const r = await cli(['replicate', '--config', f.cfgFile, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).manifestsCopied).toBe(3);
    const again = JSON.parse((await cli(['replicate', '--config', f.cfgFile, '--json'])).stdout);
    expect(again.chunksCopied + again.manifestsCopied).toBe(0); // idempotent
    const target = path.join(f.dir, 'r-dr');
    const res = await cli(['restore', '--config', f.cfgFile, '--latest', '--from', 'secondary', '--component', 'weights', '--target', target, '--json']);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout).from).toContain('vault-dr');
    expect((await fs.readFile(path.join(target, 'weights/w.bin'))).equals(await fs.readFile(path.join(f.dir, 'platform/weights/w.bin')))).toBe(true);
  });

  it('verify --read-data reads every chunk; retention --dry-run deletes nothing', async () => {
    const v = await cli(['verify', '--config', f.cfgFile, '--read-data', '--json']);
    expect(v.code).toBe(0);
    const out = JSON.parse(v.stdout);
    expect(out.ok).toBe(true);
    expect(out.chunksRead).toBe(out.chunksReferenced);
    const before = JSON.parse((await cli(['list', '--config', f.cfgFile, '--json'])).stdout).backups.length;
    const d = await cli(['retention', '--config', f.cfgFile, '--dry-run', '--json']);
    expect(d.code).toBe(0);
    expect(JSON.parse((await cli(['list', '--config', f.cfgFile, '--json'])).stdout).backups.length).toBe(before);
  });

  it('a wrong key is refused clearly and nothing is written', async () => {
    const other = path.join(f.dir, 'other.yaml');
    const text = (await fs.readFile(f.cfgFile, 'utf8')).replace('memvault.key', 'other.key');
    await fs.writeFile(other, text);
    await fs.writeFile(path.join(f.dir, 'other.key'), `memvault-key-v1:${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    const list = async () => (await fs.readdir(path.join(f.dir, 'vault-primary', 'manifests'), { recursive: true })).length;
    const before = await list();
    const r = await cli(['backup', '--config', other, '--type', 'full']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a key of this vault/);
    expect(await list()).toBe(before);
  });
});

describe('restore into live data', () => {
  it('refuses a target whose component directory is the live source', async () => {
    const f = await makeFixture({ graph: { kind: 'files', path: 'restore/graph' } });
    await writeTree(path.join(f.dir, 'restore', 'graph'), { 'nodes.jsonl': '{"id":1}\n' });
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', path.join(f.dir, 'restore'), '--force']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is the live data of graph/);
    expect(await fs.readFile(path.join(f.dir, 'restore', 'graph', 'nodes.jsonl'), 'utf8')).toBe('{"id":1}\n');
  });
});
