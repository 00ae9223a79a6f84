// Large backups keep their entries in parts (issue 11: memory flat in the
// number of files): past a few thousand entries the manifest (format /2) lists
// entry parts, streams stored in the vault's packs like data, instead of the
// entries. What a user relies on: the backup restores byte-identical; an
// incremental against a parted parent reads only what changed; retention,
// replication and verify treat the parts as data the backup needs (a prune that
// forgot them would make every kept backup unreadable); a damaged part is named.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { makeFixture, type Fixture } from '../helpers/fixture.ts';
import { editObject, chunkPlace } from '../helpers/packs.ts';
import { runBackups } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { applyRetention } from '../../functions/core/retention.ts';
import { replicate } from '../../functions/core/replicate.ts';
import { verifyVault } from '../../functions/core/verify.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { readCatalog } from '../../functions/core/catalog.ts';
import { INLINE_MAX_ENTRIES, readEntries } from '../../functions/core/entry-log.ts';
import { walkOrder } from '../../functions/components/files.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import type { Vault } from '../../functions/core/vault.ts';
import type { Entry } from '../../functions/core/manifest.ts';

const FILES = 6000;

/** FILES small files over nested directories (names sort differently by code unit and by path), a link, an empty dir. */
async function tree(root: string): Promise<void> {
  for (let i = 0; i < FILES; i++) {
    const dir = path.join(root, `s${i % 7}`, i % 3 ? `t${i % 11}` : '', i % 5 === 0 ? 'deep/er' : '');
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, `m-${i}.json`), `{"memory":${i},"text":"${'x'.repeat(i % 200)}"}\n`);
  }
  await fs.mkdir(path.join(root, 'empty'), { recursive: true });
  await fs.symlink('s1/m-1.json', path.join(root, 'link'));
  await fs.writeFile(path.join(root, 'A-upper.txt'), 'sorts before lower case');
}

async function readTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const rel of (await fs.readdir(root, { recursive: true })) as string[]) {
    const p = path.join(root, rel);
    const st = await fs.lstat(p);
    if (st.isFile()) out.set(rel, await fs.readFile(p, 'utf8'));
    else if (st.isSymbolicLink()) out.set(rel, `-> ${await fs.readlink(p)}`);
    else out.set(rel, 'dir');
  }
  return out;
}

const alerts = (f: Fixture) => new FileAlertSink(f.alertsFile);

async function backup(f: Fixture, type: 'full' | 'incremental') {
  const r = await runBackups(f.cfg, { type, alerts: alerts(f), log: silentLogger });
  expect(r.ok, JSON.stringify(r)).toBe(true);
  return r;
}

/** A fixture with the test tree under src/, backed up once (full). */
async function treeBackedUp(o: { secondary?: boolean } = {}) {
  const f = await makeFixture({ notes: { kind: 'files', path: 'src' } }, { secondary: o.secondary ?? false });
  const src = path.join(f.dir, 'src');
  await tree(src);
  await backup(f, 'full');
  return { f, src };
}

async function latest(vault: Vault) {
  const cat = await readCatalog(vault);
  const e = cat.entries.find((x) => x.component === 'notes')!;
  return { entry: e, header: await vault.readManifestHeader(e.key) };
}

async function restoreLatest(f: Fixture, vault: Vault, target: string, backupId?: string) {
  const plan = await planRestore(vault, backupId ? { mode: 'backup', backupId } : { mode: 'latest' }, undefined, ['notes']);
  return restorePlan({ cfg: f.cfg, vault, driverFor, log: silentLogger }, plan, target, false);
}

async function entriesOf(vault: Vault): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const e of readEntries(vault, (await latest(vault)).header)) out.push(e);
  return out;
}

describe('entry parts', () => {
  it('a backup of thousands of files keeps its entries in parts, in walk order, and restores byte-identical', async () => {
    const { f, src } = await treeBackedUp();
    const vault = await openVault(f.cfg);
    const { entry, header } = await latest(vault);
    expect(header.format).toBe('memvault-manifest/2');
    expect(header.entries).toBeUndefined();
    expect(header.entryParts!.length).toBeGreaterThan(1);
    // The manifest object stays small: the entries are in the parts.
    expect((await vault.storage.get(entry.key)).length).toBeLessThan(16 * 1024);
    const entries = await entriesOf(vault);
    expect(entries.length).toBe(header.entryParts!.reduce((a, p) => a + p.count, 0));
    expect(entries.filter((e) => e.type === 'file').length).toBe(FILES + 1);
    // The order the walk produced is the order walkOrder defines (the incremental merge relies on it).
    const paths = entries.map((e) => e.path);
    expect([...paths].sort(walkOrder)).toEqual(paths);
    const r = await restoreLatest(f, vault, path.join(f.dir, 'out'));
    expect(r.components[0].validation.ok, JSON.stringify(r.components[0].validation)).toBe(true);
    expect(await readTree(path.join(f.dir, 'out', 'notes'))).toEqual(await readTree(src));
  }, 240_000);

  it('an incremental against a parted parent reads only new and changed files, and restores the new tree', async () => {
    const { f, src } = await treeBackedUp();
    // Changed files in several directories, new files in the middle of the walk, a removed subtree.
    const changed = ['s1/t1/m-1.json', 's3/t10/deep/er/m-10.json', 's6/m-6.json'];
    for (const c of changed) await fs.access(path.join(src, c));
    for (const c of changed) await fs.writeFile(path.join(src, c), `{"changed":"${c}"}\n`);
    await fs.mkdir(path.join(src, 's2', 'new'), { recursive: true });
    for (let i = 0; i < 40; i++) await fs.writeFile(path.join(src, 's2', 'new', `n-${i}.json`), `{"new":${i}}\n`);
    await fs.writeFile(path.join(src, 's4', 'aaa-first.json'), '{"new":"first in its directory"}\n');
    await fs.rm(path.join(src, 's5'), { recursive: true });
    const vault0 = await openVault(f.cfg);
    const before = await entriesOf(vault0);
    const removed = before.filter((e) => e.type === 'file' && e.path.startsWith('s5/')).length;
    expect(removed).toBeGreaterThan(0);
    await backup(f, 'incremental');
    const vault = await openVault(f.cfg);
    const { header } = await latest(vault);
    const newBytes = changed.reduce((a, c) => a + `{"changed":"${c}"}\n`.length, 0)
      + Array.from({ length: 40 }, (_, i) => `{"new":${i}}\n`.length).reduce((a, b) => a + b, 0)
      + '{"new":"first in its directory"}\n'.length;
    // Only what changed is read: every unchanged file's entry came from the parent's parts.
    expect(header.stats.bytesRead).toBe(newBytes);
    expect(header.driver.unchanged).toBe(FILES + 1 - removed - changed.length);
    const r = await restoreLatest(f, vault, path.join(f.dir, 'out'));
    expect(r.components[0].validation.ok).toBe(true);
    expect(await readTree(path.join(f.dir, 'out', 'notes'))).toEqual(await readTree(src));
  }, 240_000);

  it('retention and repack keep the kept backup\'s parts; replicate copies them; both vaults verify and restore', async () => {
    const { f, src } = await treeBackedUp({ secondary: true });
    // Every entry changes (mtimes), so the older backup's parts are all unreferenced once it is forgotten.
    for (let i = 0; i < FILES; i += 97) await fs.appendFile(path.join(src, `s${i % 7}`, i % 3 ? `t${i % 11}` : '', i % 5 === 0 ? 'deep/er' : '', `m-${i}.json`), ' ');
    await fs.writeFile(path.join(src, 'A-upper.txt'), 'changed');
    await backup(f, 'full');
    const vault = await openVault(f.cfg);
    // Repack every pack with a dead chunk in it: a part left out of the live set would be dropped.
    const ret = await applyRetention(vault, { notes: { keepLast: 1 } }, { prune: { repackBelow: 1.01, packBytes: 256 * 1024 } });
    expect(ret.forgotten.length).toBe(1);
    expect(ret.pruneSkipped).toBeNull();
    expect(ret.packsRepacked + ret.packsDeleted).toBeGreaterThan(0);
    const v = await verifyVault(await openVault(f.cfg), { readData: 'all' });
    expect(v.ok, JSON.stringify(v.problems.slice(0, 3))).toBe(true);
    const r = await restoreLatest(f, await openVault(f.cfg), path.join(f.dir, 'out'));
    expect(r.components[0].validation.ok).toBe(true);
    expect(await readTree(path.join(f.dir, 'out', 'notes'))).toEqual(await readTree(src));

    const dr = await openVault(f.cfg, 'secondary');
    await replicate(await openVault(f.cfg), dr, { lockWaitMs: 0 });
    const dv = await verifyVault(await openVault(f.cfg, 'secondary'), { readData: 'all' });
    expect(dv.ok, JSON.stringify(dv.problems.slice(0, 3))).toBe(true);
    const rd = await restoreLatest(f, await openVault(f.cfg, 'secondary'), path.join(f.dir, 'out-dr'));
    expect(rd.components[0].validation.ok).toBe(true);
    expect(await readTree(path.join(f.dir, 'out-dr', 'notes'))).toEqual(await readTree(src));
  }, 300_000);

  it('a damaged entry part is named by verify and refused by restore; retention then deletes nothing', async () => {
    const { f, src } = await treeBackedUp();
    const vault = await openVault(f.cfg);
    const { entry, header } = await latest(vault);
    const partChunk = header.entryParts![1].chunks[0].id;
    const place = await chunkPlace(vault, partChunk);
    await editObject(vault.storage, place.key, (b) => { b[place.offset + 30] ^= 1; });
    const v = await verifyVault(await openVault(f.cfg), { readData: 'all' });
    expect(v.ok).toBe(false);
    expect(v.problems.find((p) => p.chunk === partChunk)).toMatchObject({ problem: 'corrupt', backups: [`notes/${entry.id}`] });
    const err = await restoreLatest(f, await openVault(f.cfg), path.join(f.dir, 'out')).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(`chunk ${partChunk} in pack ${place.key}`);
    const objects = async () => { let n = 0; for await (const _ of vault.storage.list('')) n++; return n; };
    const n = await objects();
    await expect(applyRetention(await openVault(f.cfg), { notes: { keepLast: 1 } })).rejects.toThrow(/prune stopped, nothing deleted: manifest .*entry part 2 of/);
    expect(await objects()).toBe(n);
  }, 240_000);

  it('small backups keep their entries inline (format /1)', async () => {
    const f = await makeFixture({ notes: { kind: 'files', path: 'src' } }, { secondary: false });
    const src = path.join(f.dir, 'src');
    await fs.mkdir(src, { recursive: true });
    for (let i = 0; i < INLINE_MAX_ENTRIES - 10; i++) await fs.writeFile(path.join(src, `f${i}`), String(i));
    await backup(f, 'full');
    const { header } = await latest(await openVault(f.cfg));
    expect(header.format).toBe('memvault-manifest/1');
    expect(header.entries!.length).toBe(INLINE_MAX_ENTRIES - 10);
    expect(header.entryParts).toBeUndefined();
  }, 120_000);
});

describe('walkOrder', () => {
  it('orders a directory\'s entries before its subdirectories\' and subdirectories depth first', () => {
    const walk = ['B', 'a', 'a b', 'z', 'a/x', 'a/y', 'a/x/1', 'a b/q', 'z/k', 'z/k/deep'];
    expect([...walk].reverse().sort(walkOrder)).toEqual(walk);
  });
});
