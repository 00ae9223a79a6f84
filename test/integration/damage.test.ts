// Damage and interruption: corrupt and missing chunks, a killed backup, a
// prune racing a backup, retention keeping the newest backup.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeFixture, writeTree, chunkFiles } from '../helpers/fixture.ts';
import { chunkPlace, dropFromIndex, editObject, indexedChunks } from '../helpers/packs.ts';
import { cli, cliSpawn, killTree } from '../helpers/cli.ts';
import { runBackups } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { verifyVault } from '../../functions/core/verify.ts';
import { listManifestNames } from '../../functions/core/vault.ts';
import { applyRetention } from '../../functions/core/retention.ts';
import { backupComponent } from '../../functions/core/backup.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import type { Driver } from '../../functions/components/types.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import { LockedError } from '../../functions/core/errors.ts';

async function twoBackups() {
  const f = await makeFixture({ a: { kind: 'files', path: 'a' }, b: { kind: 'files', path: 'b' } }, { secondary: false });
  const shared = randomBytes(1536 * 1024);
  await writeTree(path.join(f.dir, 'a'), { 'x.bin': shared, 'only-a.bin': randomBytes(800 * 1024) });
  await writeTree(path.join(f.dir, 'b'), { 'y.bin': shared });
  const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
  expect(r.ok).toBe(true);
  return { f, r };
}

describe('damaged vaults', () => {
  it('verify --read-data names each corrupt and missing chunk and the backups that need it', async () => {
    const { f, r } = await twoBackups();
    const vault = await openVault(f.cfg);
    const ma = await vault.readManifest(r.outcomes[0].manifestKey);
    const sharedChunk = ma.entries.find((e) => e.path === 'x.bin')!.chunks![0].id;
    const onlyA = ma.entries.find((e) => e.path === 'only-a.bin')!.chunks![0].id;
    const vdir = path.join(f.dir, 'vault-primary');
    const place = await chunkPlace(vault, sharedChunk);
    await editObject(vault.storage, place.key, (blob) => { blob[place.offset + place.length - 40] ^= 0xff; });
    await dropFromIndex(vault, onlyA); // in no index object: missing
    expect(vdir).toBeTruthy();

    // Metadata-only verification already sees the missing chunk.
    const meta = await verifyVault(vault);
    expect(meta.problems.map((x) => x.chunk)).toEqual([onlyA]);

    const out = await cli(['verify', '--config', f.cfgFile, '--read-data']);
    expect(out.code).toBe(1);
    expect(out.stdout).toContain(`CORRUPT chunk ${sharedChunk}`);
    expect(out.stdout).toContain(`MISSING chunk ${onlyA}`);
    const full = await verifyVault(vault, { readData: 'all' });
    const corrupt = full.problems.find((x) => x.chunk === sharedChunk)!;
    expect(corrupt.problem).toBe('corrupt');
    expect(corrupt.backups.sort()).toEqual([`a/${r.outcomes[0].backupId}`, `b/${r.outcomes[1].backupId}`].sort());
    expect(full.problems.find((x) => x.chunk === onlyA)!.backups).toEqual([`a/${r.outcomes[0].backupId}`]);
  });

  it('restore of a damaged backup fails loudly and leaves no wrong file behind', async () => {
    const { f, r } = await twoBackups();
    const vault = await openVault(f.cfg);
    const mb = await vault.readManifest(r.outcomes[1].manifestKey);
    const id = mb.entries[0].chunks!.at(-1)!.id; // y.bin may be one chunk or several
    const place = await chunkPlace(vault, id);
    await editObject(vault.storage, place.key, (blob) => { blob[place.offset + 30] ^= 1; });
    const target = path.join(f.dir, 'restore');
    const res = await cli(['restore', '--config', f.cfgFile, '--latest', '--component', 'b', '--target', target]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(id);
    expect(res.stderr).toMatch(/y\.bin/);
    const left = await fs.readdir(path.join(target, 'b')).catch(() => []);
    expect(left.filter((n) => n === 'y.bin' || n.includes('partial'))).toEqual([]);
    // The alert names the component.
    const alerts = (await fs.readFile(f.alertsFile, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(alerts.some((a) => a.subject === 'restore failed: b')).toBe(true);
  });

  it('a damaged manifest is reported and blocks prune from deleting anything', async () => {
    const { f, r } = await twoBackups();
    const key = path.join(f.dir, 'vault-primary', r.outcomes[1].manifestKey);
    const blob = await fs.readFile(key);
    blob[blob.length - 1] ^= 1;
    await fs.writeFile(key, blob);
    const vault = await openVault(f.cfg);
    const v = await verifyVault(vault);
    expect(v.damagedManifests.map((d) => d.key)).toEqual([r.outcomes[1].manifestKey]);
    const chunksBefore = await chunkFiles(path.join(f.dir, 'vault-primary'));
    const ret = await applyRetention(vault, { a: {}, b: {} });
    expect(ret.pruneSkipped).toMatch(new RegExp(`no chunk deleted.*${r.outcomes[1].manifestKey}`));
    expect(ret.chunksPruned).toBe(0);
    expect(await chunkFiles(path.join(f.dir, 'vault-primary'))).toEqual(chunksBefore);
  });
});

describe('interrupted backups and concurrent prune', () => {
  it('a backup killed halfway leaves no backup; the next one completes and reuses the uploaded chunks', async () => {
    const f = await makeFixture({ big: { kind: 'files', path: 'big' } }, { secondary: false });
    const data = randomBytes(200 * 1024 * 1024);
    await writeTree(path.join(f.dir, 'big'), { 'weights.bin': data });
    const vdir = path.join(f.dir, 'vault-primary');
    const child = cliSpawn(['backup', '--config', f.cfgFile, '--type', 'full']);
    // Wait for some packs and an index object naming some of them to land, then kill -9.
    for (let i = 0; i < 6000; i++) {
      const indexes = await fs.readdir(path.join(vdir, 'index')).catch(() => []);
      if (indexes.filter((n) => !n.includes('.tmp-')).length >= 1 && (await chunkFiles(vdir)).length >= 5) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    killTree(child);
    await new Promise((r) => child.on('close', r));
    const vault = await openVault(f.cfg);
    // The chunks the killed run uploaded and indexed (packs not yet indexed are unreferenced: prune removes them).
    const uploaded = await indexedChunks(vault);
    expect(uploaded).toBeGreaterThanOrEqual(5);
    expect(await listManifestNames(vault.storage)).toEqual([]); // no manifest, no backup
    const v = await verifyVault(vault, { readData: 'all' });
    expect(v.ok).toBe(true);
    expect(v.unreferencedChunks).toBe(uploaded);
    const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    expect(r.ok).toBe(true);
    const s = r.outcomes[0].stats;
    expect(s.chunksTotal - s.chunksNew).toBe(uploaded); // every chunk the killed run uploaded is reused
    // The killed process's lock does not block prune (its process is gone), and nothing is left to prune.
    const pruned = await applyRetention(vault, { big: {} });
    expect(pruned.chunksPruned).toBe(0);
    const target = path.join(f.dir, 'restore');
    const plan = await planRestore(vault, { mode: 'latest' }, undefined, ['big']);
    const res = await restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
    expect(res.ok).toBe(true);
    expect((await fs.readFile(path.join(target, 'big', 'weights.bin'))).equals(data)).toBe(true);
  });

  it('prune never runs while a backup is in progress, so it cannot delete chunks that backup needs', async () => {
    const f = await makeFixture({ slow: { kind: 'files', path: 'slow' } }, { secondary: false });
    const vault = await openVault(f.cfg);
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    let uploaded!: () => void;
    const halfway = new Promise<void>((r) => { uploaded = r; });
    const payload = randomBytes(400 * 1024); // under the minimum chunk size: exactly one chunk
    // A driver that uploads its data, then stalls before the manifest is written.
    const slowDriver: Driver = {
      kind: 'files', mode: 'stream', schema: driverFor('files').schema,
      async backup(ctx) {
        const w = await ctx.writer.writeBuffer(payload);
        await ctx.writer.drain();
        uploaded();
        await gate;
        return { entries: [{ path: 'p.bin', type: 'file', size: w.size, sha256: w.sha256, chunks: w.chunks }], meta: {}, warnings: [] };
      },
      restore: driverFor('files').restore,
      validate: driverFor('files').validate,
    };
    const running = backupComponent({ cfg: f.cfg, vault, driverFor: () => slowDriver, log: silentLogger }, 'slow', 'full');
    await halfway;
    // The chunk is unreferenced right now (no manifest yet): a prune would delete it.
    await expect(applyRetention(vault, { slow: { keepLast: 1 } })).rejects.toBeInstanceOf(LockedError);
    release();
    const out = await running;
    const v = await verifyVault(vault, { readData: 'all' });
    expect(v.ok).toBe(true);
    expect(v.chunksReferenced).toBe(1);
    // With the backup finished, prune runs and keeps what the manifest needs.
    const r = await applyRetention(vault, { slow: { keepLast: 1 } });
    expect(r.chunksPruned).toBe(0);
    expect(out.backupId).toBeTruthy();
  });

  it('retention never removes the newest backup of a component, and prunes what nothing references', async () => {
    const f = await makeFixture({ logs: { kind: 'files', path: 'logs', retention: { days: 1 } } }, { secondary: false });
    const alerts = new FileAlertSink(f.alertsFile);
    await writeTree(path.join(f.dir, 'logs'), { 'a.log': randomBytes(700 * 1024) });
    await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
    await fs.writeFile(path.join(f.dir, 'logs', 'a.log'), randomBytes(700 * 1024));
    const second = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
    const vault = await openVault(f.cfg);
    // A year later, every backup is past `days: 1`.
    const later = new Date(Date.now() + 365 * 86_400_000);
    const r = await applyRetention(vault, { logs: { days: 1 } }, { now: later });
    expect(r.forgotten.length).toBe(1);
    const left = await listManifestNames(vault.storage);
    expect(left.map((x) => x.id)).toEqual([second.outcomes[0].backupId]);
    expect(r.chunksPruned).toBeGreaterThanOrEqual(1);
    const v = await verifyVault(vault, { readData: 'all' });
    expect(v.ok).toBe(true);
    expect(v.unreferencedChunks).toBe(0);
  });
});
