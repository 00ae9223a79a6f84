// Attacks by someone who can write to the vault's storage but has no key, as
// regression tests: planted manifest names, a deleted newest backup (with and
// without its head), a tampered vault.json, a lock dated 2099.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { putStaged, stagingPrefix } from '../../functions/core/staging.ts';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeFixture, writeTree, chunkFiles } from '../helpers/fixture.ts';
import { cli } from '../helpers/cli.ts';
import { runBackups, replicateVaults } from '../../functions/ops.ts';
import { openVault, openStorage, location } from '../../functions/services.ts';
import { verifyVault } from '../../functions/core/verify.ts';
import { readCatalog } from '../../functions/core/catalog.ts';
import { applyRetention } from '../../functions/core/retention.ts';
import { planRestore } from '../../functions/core/restore.ts';
import { Vault, listManifestNames } from '../../functions/core/vault.ts';
import { LocalKeyProvider } from '../../functions/adapters/keys/local.ts';
import { resolvePath } from '../../functions/core/config.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import { makeHandler as makeCheckRpo } from '../../functions/handlers/check-rpo.ts';
import type { Alert } from '../../functions/core/ports.ts';
import { defaultDeps } from '../../functions/handlers/deps.ts';

async function graphWithBackups(n: number, o: { retention?: Record<string, unknown>; secondary?: boolean } = {}) {
  const f = await makeFixture({ graph: { kind: 'files', path: 'graph', rpo: '26h', retention: o.retention ?? { keepLast: 2 } } }, { secondary: o.secondary ?? true });
  const versions: Buffer[] = [];
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const content = randomBytes(300 * 1024 + i);
    versions.push(content);
    await writeTree(path.join(f.dir, 'graph'), { 'shard.bin': content, [`note-${i}.txt`]: `note ${i}` });
    const r = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    expect(r.ok).toBe(true);
    ids.push(r.outcomes[0].backupId);
    await new Promise((res) => setTimeout(res, 5));
  }
  return { f, versions, ids };
}

const primaryDir = (f: { dir: string }) => path.join(f.dir, 'vault-primary');
const drDir = (f: { dir: string }) => path.join(f.dir, 'vault-dr');

describe('a vault nothing can trick into losing data', () => {
  it('empty files named like manifests are damage, never backups: list, rpo-watch, restore, replicate and retention ignore them', async () => {
    const { f, versions, ids } = await graphWithBackups(2);
    for (const name of ['20991231T000000000Z.full.evil1', '20991231T000000001Z.full.evil2', '20261130T000000000Z.full.evil3']) {
      await fs.writeFile(path.join(primaryDir(f), 'manifests', 'graph', name), '');
    }
    // list: the two real backups, and the planted names as damage (exit 1).
    const l = await cli(['list', '--config', f.cfgFile, '--json']);
    expect(l.code).toBe(1);
    const listed = JSON.parse(l.stdout);
    expect(listed.backups.map((b: { id: string }) => b.id)).toEqual([...ids].reverse());
    expect(listed.damaged.map((d: { key: string }) => d.key).sort()).toEqual([
      'manifests/graph/20261130T000000000Z.full.evil3', 'manifests/graph/20991231T000000000Z.full.evil1', 'manifests/graph/20991231T000000001Z.full.evil2',
    ]);
    // rpo-watch: healthy because of the real newest backup, not the planted ones.
    const alerts: Alert[] = [];
    const rpo = await makeCheckRpo(defaultDeps(f.cfg, { alerts: { send: async (a) => { alerts.push(a); } } }))({});
    expect(rpo.breaches).toEqual([]);
    expect(rpo.components[0].newestBackup).toBe(ids[1]);
    // restore --latest restores the real newest backup.
    const target = path.join(f.dir, 'restored');
    const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await fs.readFile(path.join(target, 'graph', 'shard.bin'))).equals(versions[1])).toBe(true);
    // replicate copies only what opens, and says what it did not copy.
    const rep = await replicateVaults(f.cfg);
    expect(rep.notCopied.map((x) => x.key).sort()).toHaveLength(3);
    expect((await listManifestNames(openStorage(f.cfg, location(f.cfg, 'secondary')))).map((x) => x.id).sort()).toEqual([...ids].sort());
    // retention with keepLast 2 keeps both real backups in both vaults; prune deletes no chunk and says why.
    const chunksBefore = await chunkFiles(primaryDir(f));
    const ret = await cli(['retention', '--config', f.cfgFile, '--json']);
    expect(ret.code).toBe(1);
    const rr = JSON.parse(ret.stdout);
    expect(rr.vaults[0].forgotten).toEqual([]);
    expect(rr.vaults[0].pruneSkipped).toMatch(/evil1/);
    expect(await chunkFiles(primaryDir(f))).toEqual(chunksBefore);
    for (const side of ['primary', 'secondary'] as const) {
      const cat = await readCatalog(await openVault(f.cfg, side));
      expect(cat.entries.map((e) => e.id).sort()).toEqual([...ids].sort());
    }
    const alertLines = (await fs.readFile(f.alertsFile, 'utf8')).trim().split('\n').map((x) => JSON.parse(x));
    expect(alertLines.some((a) => /retention found damage/.test(a.subject) && /evil/.test(a.message))).toBe(true);
  });

  it('a deleted newest backup is reported by verify and list, and --latest refuses to pass an older one off as the latest', async () => {
    const { f, versions, ids } = await graphWithBackups(3, { retention: { keepLast: 5 } });
    const newest = (await listManifestNames(openStorage(f.cfg, location(f.cfg, 'primary')), 'graph'))[0];
    expect(newest.id).toBe(ids[2]);
    await fs.rm(path.join(primaryDir(f), newest.key));

    const v = await cli(['verify', '--config', f.cfgFile]);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(new RegExp(`BROKEN CHAIN graph: the newest backup of graph, ${ids[2]}.*missing`));
    const l = await cli(['list', '--config', f.cfgFile]);
    expect(l.code).toBe(1);
    expect(l.stdout).toContain(ids[2]);

    const target = path.join(f.dir, 'restored');
    const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', target]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(ids[2]);
    expect(r.stderr).toContain(`--backup ${ids[1]}`);
    // Asked for by id, the older backup restores, with the gap named.
    const ok = await cli(['restore', '--config', f.cfgFile, '--backup', ids[1], '--target', target, '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).warnings.join('\n')).toContain(ids[2]);
    expect((await fs.readFile(path.join(target, 'graph', 'shard.bin'))).equals(versions[1])).toBe(true);
  });

  it('a middle backup deleted is a missing link; one forgotten by retention is not', async () => {
    const { f, ids } = await graphWithBackups(4, { retention: { keepLast: 5 }, secondary: false });
    const vault = await openVault(f.cfg);
    // Retention forgets the oldest (keepLast 3): a deliberate gap, recorded.
    const r = await applyRetention(vault, { graph: { keepLast: 3 } });
    expect(r.forgotten.map((x) => x.id)).toEqual([ids[0]]);
    expect((await verifyVault(await openVault(f.cfg))).ok).toBe(true);
    // An attacker deletes the second one.
    const key = (await listManifestNames(vault.storage, 'graph')).find((x) => x.id === ids[1])!.key;
    await fs.rm(path.join(primaryDir(f), key));
    const after = await verifyVault(await openVault(f.cfg));
    expect(after.ok).toBe(false);
    expect(after.chainProblems).toEqual([expect.objectContaining({ component: 'graph', problem: 'missing-link', backup: ids[1] })]);
  });

  it("the newest backup deleted together with its head is caught by this machine's memory", async () => {
    const { f, ids } = await graphWithBackups(2, { retention: { keepLast: 5 }, secondary: false });
    const names = await listManifestNames(openStorage(f.cfg, location(f.cfg, 'primary')), 'graph');
    await fs.rm(path.join(primaryDir(f), names[0].key));
    await fs.rm(path.join(primaryDir(f), 'heads'), { recursive: true });
    const v = await cli(['verify', '--config', f.cfgFile]);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(new RegExp(`this machine saw backup ${ids[1]}.*newer backups were deleted or the vault was rolled back`));
    const r = await cli(['restore', '--config', f.cfgFile, '--latest', '--target', path.join(f.dir, 'restored')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(ids[1]);
  });

  it('vault.json is authenticated: changed chunker settings are refused before anything is written', async () => {
    const { f } = await graphWithBackups(1, { secondary: false });
    const file = path.join(primaryDir(f), 'vault.json');
    const original = await fs.readFile(file, 'utf8');
    const before = await chunkFiles(primaryDir(f));
    // Out of bounds: refused by the bounds check, naming the field.
    await fs.writeFile(file, JSON.stringify({ ...JSON.parse(original), chunker: { min: 64, avg: 64, max: 64 } }));
    let b = await cli(['backup', '--config', f.cfgFile, '--type', 'full']);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/chunker .* out of bounds/);
    // Within bounds but not what the vault was made with: the authentication code fails.
    await fs.writeFile(file, JSON.stringify({ ...JSON.parse(original), chunker: { min: 65536, avg: 65536, max: 131072 } }));
    b = await cli(['backup', '--config', f.cfgFile, '--type', 'full']);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/vault\.json fails its authentication/);
    // A stripped authentication code is refused too.
    const { mac: _m, ...stripped } = JSON.parse(original);
    await fs.writeFile(file, JSON.stringify(stripped));
    b = await cli(['backup', '--config', f.cfgFile, '--type', 'full']);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/no authentication code/);
    expect(await chunkFiles(primaryDir(f))).toEqual(before);
    // Restored, the vault works as before.
    await fs.writeFile(file, original);
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
  });

  it('a vault made before vault.json was authenticated is refused until its operator vouches for it once', async () => {
    const { f, versions } = await graphWithBackups(1);
    for (const dir of [primaryDir(f), drDir(f)]) {
      const { mac: _m, ...legacy } = JSON.parse(await fs.readFile(path.join(dir, 'vault.json'), 'utf8'));
      await fs.writeFile(path.join(dir, 'vault.json'), JSON.stringify(legacy, null, 2));
    }
    const refused = await cli(['backup', '--config', f.cfgFile]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/no authentication code .*memvault init --authenticate-vault-config/);
    const a = await cli(['init', '--config', f.cfgFile, '--authenticate-vault-config', '--json']);
    expect(a.code).toBe(0);
    expect(JSON.parse(a.stdout).map((x: { authenticated: boolean }) => x.authenticated)).toEqual([true, true]);
    expect(JSON.parse((await cli(['init', '--config', f.cfgFile, '--authenticate-vault-config', '--json'])).stdout).map((x: { authenticated: boolean }) => x.authenticated)).toEqual([false, false]);
    expect((await cli(['backup', '--config', f.cfgFile])).code).toBe(0);
    expect((await cli(['replicate', '--config', f.cfgFile])).code).toBe(0);
    const target = path.join(f.dir, 'restored');
    expect((await cli(['restore', '--config', f.cfgFile, '--latest', '--from', 'secondary', '--target', target])).code).toBe(0);
    expect((await fs.readFile(path.join(target, 'graph', 'shard.bin'))).equals(versions[0])).toBe(true);
  });

  it('a replica made from the same secret opens; a key added later keeps vault.json authentic', async () => {
    const f = await makeFixture({ graph: { kind: 'files', path: 'graph' } });
    const key = await LocalKeyProvider.load(resolvePath(f.cfg, f.cfg.encryption.key!));
    const extraFile = path.join(f.dir, 'second.key');
    await LocalKeyProvider.create(extraFile);
    const extra = await LocalKeyProvider.load(extraFile);
    const storage = openStorage(f.cfg, location(f.cfg, 'primary'));
    await Vault.addKey(storage, key, extra);
    expect((await Vault.open(storage, extra)).id).toBe((await Vault.open(storage, key)).id);
    expect((await Vault.open(openStorage(f.cfg, location(f.cfg, 'secondary')), key)).id).toBe((await Vault.open(storage, key)).id);
  });

  it('a lock dated 2099 or of a dead process does not block backups, and is removed', async () => {
    const { f } = await graphWithBackups(1, { secondary: false });
    await fs.writeFile(path.join(primaryDir(f), 'locks', 'prune-aaaaaaaaaaaa'), JSON.stringify({ kind: 'prune', id: 'aaaaaaaaaaaa', host: 'elsewhere', pid: 1, time: '2099-01-01T00:00:00.000Z' }));
    await fs.writeFile(path.join(primaryDir(f), 'locks', 'prune-bbbbbbbbbbbb'), 'garbage');
    const b = await cli(['backup', '--config', f.cfgFile, '--type', 'full']);
    expect(b.stderr).toBe('');
    expect(b.code).toBe(0);
    expect(await fs.readdir(path.join(primaryDir(f), 'locks'))).toEqual([]);
  });

  it('`memvault retention` waits for a fanned-out backup run whose staging plan is alive, and removes a dead run\'s staging', async () => {
    const { f } = await graphWithBackups(1, { secondary: false });
    const vault = await openVault(f.cfg);
    const live = stagingPrefix('run-live', 'graph');
    await putStaged(vault, `${live}plan`, { createdAt: new Date().toISOString(), runId: 'run-live', component: 'graph', partitions: 2 });
    const r = await cli(['retention', '--config', f.cfgFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/a backup run is still writing staging\/run-live\/graph\//);
    await vault.storage.delete(`${live}plan`);
    const dead = stagingPrefix('run-dead', 'graph');
    await putStaged(vault, `${dead}plan`, { createdAt: '2020-01-01T00:00:00.000Z', runId: 'run-dead', component: 'graph', partitions: 1 });
    await putStaged(vault, `${dead}0`, { entries: [], warnings: [] });
    const ok = await cli(['retention', '--config', f.cfgFile, '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).vaults[0].stagingRemoved).toEqual([dead]);
    expect(await fs.readdir(path.join(primaryDir(f), 'staging', 'run-dead', 'graph')).catch(() => [])).toEqual([]);
  });

  it('a lock left by a process that is gone does not block prune; prune removes it and old temporaries of killed writers', async () => {
    const { f } = await graphWithBackups(1, { secondary: false });
    const chunkDir = path.join(primaryDir(f), 'packs', (await fs.readdir(path.join(primaryDir(f), 'packs')))[0]);
    const old = path.join(chunkDir, `${'a'.repeat(64)}.tmp-0123456789ab`);
    const fresh = path.join(chunkDir, `${'b'.repeat(64)}.tmp-0123456789ab`);
    await fs.writeFile(old, randomBytes(1000));
    await fs.writeFile(fresh, randomBytes(1000));
    const sevenHoursAgo = new Date(Date.now() - 7 * 3_600_000);
    await fs.utimes(old, sevenHoursAgo, sevenHoursAgo);
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
    await fs.writeFile(path.join(primaryDir(f), 'locks', 'backup-cccccccccccc'), JSON.stringify({ kind: 'backup', id: 'cccccccccccc', host: os.hostname(), pid: gone, time: new Date().toISOString() }));
    const r = await cli(['retention', '--config', f.cfgFile, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(await fs.readdir(path.join(primaryDir(f), 'locks'))).toEqual([]);
    expect(JSON.parse(r.stdout).vaults[0].temporariesRemoved).toBe(1);
    await expect(fs.stat(old)).rejects.toThrow(/ENOENT/);
    expect((await fs.stat(fresh)).size).toBe(1000); // a writer may still be busy with it
  });

  it('restore by point in time and by id ignore names that do not open', async () => {
    const { f, ids } = await graphWithBackups(2, { secondary: false });
    await fs.writeFile(path.join(primaryDir(f), 'manifests', 'graph', '20200101T000000000Z.full.20200101-deadbeef'), randomBytes(64));
    const vault = await openVault(f.cfg);
    await expect(planRestore(vault, { mode: 'backup', backupId: '20200101-deadbeef' }, undefined, ['graph'])).rejects.toThrow(/does not open under the vault key/);
    await expect(planRestore(vault, { mode: 'point-in-time', at: new Date('2021-01-01T00:00:00Z') }, undefined, ['graph'])).rejects.toThrow(/no backup at or before/);
    const plan = await planRestore(vault, { mode: 'point-in-time', at: new Date() }, undefined, ['graph']);
    expect(plan.items[0].ref.id).toBe(ids[1]);
  });
});
