import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeFixture, writeTree, tempDir } from '../helpers/fixture.ts';
import { runBackups } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink, readAlerts } from '../../functions/adapters/alerts/local.ts';
import { fingerprint, diffFingerprints } from '../../local/platform.ts';
import { cli } from '../helpers/cli.ts';

async function tree(root: string) {
  await writeTree(root, {
    'weights/shard-0.bin': randomBytes(3 * 1024 * 1024),
    'weights/shard-1.bin': randomBytes(1024 * 1024 + 17),
    'graph/nodes.jsonl': '{"id":"c1"}\n'.repeat(20000),
    'config/platform.yaml': 'tiers: [working, episodic]\n',
    'empty.txt': '',
    'unicode/naïve café ✓.txt': 'names are kept exactly',
  });
  await fs.mkdir(path.join(root, 'empty-dir'));
  await fs.chmod(path.join(root, 'config/platform.yaml'), 0o640);
  await fs.chmod(path.join(root, 'weights/shard-1.bin'), 0o755);
  await fs.symlink('config/platform.yaml', path.join(root, 'active.yaml'));
  await fs.symlink('/nonexistent/target', path.join(root, 'dangling'));
  await fs.utimes(path.join(root, 'graph/nodes.jsonl'), 1_600_000_000.123456, 1_600_000_000.123456);
}

async function restoreLatest(f: Awaited<ReturnType<typeof makeFixture>>, target: string) {
  const vault = await openVault(f.cfg);
  const plan = await planRestore(vault, { mode: 'latest' }, undefined, Object.keys(f.cfg.components));
  return restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
}

describe('files driver', () => {
  it('round-trips contents, names, modes, mtimes, empty files and dirs, and symlinks as links', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } });
    const src = path.join(f.dir, 'src');
    await tree(src);
    const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    expect(r.ok).toBe(true);
    const target = path.join(f.dir, 'restore');
    const res = await restoreLatest(f, target);
    expect(res.ok).toBe(true);
    const out = path.join(target, 'data');
    expect(diffFingerprints(await fingerprint(src), await fingerprint(out))).toEqual([]);
    expect((await fs.lstat(path.join(out, 'active.yaml'))).isSymbolicLink()).toBe(true);
    expect(await fs.readlink(path.join(out, 'dangling'))).toBe('/nonexistent/target');
    expect((await fs.stat(path.join(out, 'empty-dir'))).isDirectory()).toBe(true);
    const a = await fs.stat(path.join(src, 'graph/nodes.jsonl'), { bigint: true });
    const b = await fs.stat(path.join(out, 'graph/nodes.jsonl'), { bigint: true });
    expect(Number((a.mtimeNs - b.mtimeNs) / 1000n)).toBeLessThanOrEqual(1); // microseconds
    expect((await fs.stat(path.join(out, 'config/platform.yaml'))).mode & 0o777).toBe(0o640);
  });

  it('incremental reuses unchanged files without reading them and stores only what changed', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } });
    const src = path.join(f.dir, 'src');
    await tree(src);
    const alerts = new FileAlertSink(f.alertsFile);
    const full = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
    await fs.appendFile(path.join(src, 'config/platform.yaml'), 'consolidation: nightly\n');
    const inc = await runBackups(f.cfg, { type: 'incremental', alerts, log: silentLogger });
    const s = inc.outcomes[0].stats;
    expect(s.bytesRead).toBeLessThan(1000);
    expect(s.bytesUnchanged).toBeGreaterThan(4 * 1024 * 1024);
    expect(s.chunksNew).toBe(1);
    expect(inc.outcomes[0].parent).toBe(full.outcomes[0].backupId);
    // `full` re-reads everything, yet dedup stores nothing new.
    const again = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
    expect(again.outcomes[0].stats.bytesRead).toBe(full.outcomes[0].stats.bytesRead + 'consolidation: nightly\n'.length);
    expect(again.outcomes[0].stats.chunksNew).toBe(0);
  });

  it('deduplicates across components of one vault', async () => {
    const f = await makeFixture({ a: { kind: 'files', path: 'a' }, b: { kind: 'files', path: 'b' } });
    const blob = randomBytes(2 * 1024 * 1024);
    await writeTree(path.join(f.dir, 'a'), { 'w.bin': blob });
    await writeTree(path.join(f.dir, 'b'), { 'copy-of-w.bin': blob });
    const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    const [a, b] = r.outcomes;
    expect(a.stats.newBytes).toBe(blob.length);
    expect(b.stats.newBytes).toBe(0);
  });

  it('reports unreadable files by name, alerts, and exits 1', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } });
    const src = path.join(f.dir, 'src');
    await writeTree(src, { 'ok.txt': 'fine', 'secret/locked.bin': 'no access' });
    await fs.chmod(path.join(src, 'secret/locked.bin'), 0o000);
    // Root reads everything: run the backup as an unprivileged user when we are root.
    const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    if (asUser.uid !== undefined) {
      await fs.chmod(f.dir, 0o777);
      for (const p of ['src', 'src/secret', 'vault-primary', 'vault-dr']) await fs.chmod(path.join(f.dir, p), 0o777).catch(() => undefined);
      await fs.chmod(path.join(f.dir, 'src/ok.txt'), 0o644);
      await fs.chown(path.join(f.dir, 'memvault.key'), 65534, 65534);
      await fs.chmod(path.dirname(f.dir), 0o777).catch(() => undefined);
      await chmodTree(path.join(f.dir, 'vault-primary'));
    }
    const r = await cli(['backup', '--config', f.cfgFile, '--json'], asUser);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.outcomes[0].warnings.join('\n')).toMatch(/secret\/locked\.bin: unreadable \(EACCES\)/);
    const alerts = await readAlerts(f.alertsFile);
    expect(alerts.some((a) => a.component === 'data' && a.message.includes('secret/locked.bin'))).toBe(true);
  });
});

async function chmodTree(p: string): Promise<void> {
  await fs.chmod(p, 0o777);
  for (const e of await fs.readdir(p, { withFileTypes: true })) {
    const q = path.join(p, e.name);
    if (e.isDirectory()) await chmodTree(q);
    else await fs.chmod(q, 0o666);
  }
}

void tempDir;
