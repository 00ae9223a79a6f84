// The file:// backend against a hostile vault directory, on real files: an
// oversized object under a chunk's (manifest's, vault.json's, lock's) name is
// refused without being read (peak memory does not move), symlinks inside the
// vault are never read, written, listed or deleted through (their targets are
// byte-for-byte untouched after backup, list, restore and prune), temporaries
// of killed runs follow one naming rule and are swept once old, and a full or
// read-only disk fails naming the vault and the key, once, leaving nothing.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { FileStorage } from '../../functions/adapters/storage/file.ts';
import { RetryingStorage } from '../../functions/adapters/storage/retrying.ts';
import { LocalKeyProvider } from '../../functions/adapters/keys/local.ts';
import { MAX_LOCK_BYTES, MAX_MANIFEST_BYTES, MAX_VAULT_DOC_BYTES, Vault, chunkKey, listManifestNames } from '../../functions/core/vault.ts';
import { maxSealedChunkBytes, sealChunkParts, writeChunkFileSync } from '../../functions/core/chunk-codec.ts';
import { isTemporaryName, temporaryName } from '../../functions/core/local-objects.ts';
import { IntegrityError, LockedError, NotFoundError, PermanentError, TransientStorageError } from '../../functions/core/errors.ts';
import type { StoredObject } from '../../functions/core/ports.ts';
import { runBackups, retentionRun } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { planRestore, restorePlan } from '../../functions/core/restore.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { silentLogger } from '../../functions/logger.ts';
import { FileAlertSink } from '../../functions/adapters/alerts/local.ts';
import { makeFixture, tempDir, writeTree } from '../helpers/fixture.ts';
import { chunkPlace } from '../helpers/packs.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

afterEach(() => { delete process.env.MEMVAULT_WORKERS; });

async function newVault() {
  const dir = await tempDir();
  const key = await LocalKeyProvider.create(path.join(dir, 'k'));
  const storage = new FileStorage(path.join(dir, 'vault'));
  return { dir, storage, vault: await Vault.init(storage, [key]) };
}

/** Replaces a file by a sparse one of `size` bytes (no disk used; reading it would allocate it all). */
async function makeSparse(file: string, size: number): Promise<void> {
  await fs.rm(file, { force: true });
  await fs.mkdir(path.dirname(file), { recursive: true });
  const fh = await fs.open(file, 'w');
  await fh.truncate(size);
  await fh.close();
}

/** Peak resident memory of this process (threads included) so far, in bytes. */
const peakRss = () => process.resourceUsage().maxRSS * 1024;

/** Every entry below dir (without following links): kind, size, mtime and content hash. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await fs.readdir(dir, { recursive: true })).map(String).sort()) {
    const p = path.join(dir, name);
    const st = await fs.lstat(p);
    const kind = st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'file';
    const hash = kind === 'file' ? createHash('sha256').update(await fs.readFile(p)).digest('hex') : '';
    out[name] = `${kind} ${st.size} ${st.mtimeMs} ${st.mode} ${hash}`;
  }
  return out;
}

async function listAll(s: FileStorage, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of s.list(prefix)) keys.push(o.key);
  return keys.sort();
}

/** Names containing ".tmp-" below dir, found without following links (readdir's recursive mode follows them). */
async function temporariesUnder(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  const entries = await fs.readdir(path.join(dir, rel), { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const name = rel ? `${rel}/${e.name}` : e.name;
    if (e.name.includes('.tmp-')) out.push(name);
    if (e.isDirectory()) out.push(...(await temporariesUnder(dir, name)));
  }
  return out;
}

function recordingSleep() {
  const waits: number[] = [];
  return { waits, sleep: async (ms: number) => void waits.push(ms) };
}

describe('bounded reads (maxBytes)', () => {
  it('refuses a pack grown to 1 GiB (sparse, its header gone) without reading it: an IntegrityError naming the pack', async () => {
    const { storage, vault } = await newVault();
    const data = randomBytes(100 * 1024);
    const enc = await vault.encodeChunk(data);
    await vault.putChunk(enc);
    expect((await vault.getChunk(enc.id, { size: data.length })).equals(data)).toBe(true);
    const place = await chunkPlace(vault, enc.id);

    await makeSparse(path.join(storage.root, place.key), GiB);
    const peak = peakRss();
    const before = process.memoryUsage().arrayBuffers;
    for (const o of [{ size: data.length }, {}]) {
      const fresh = await Vault.open(storage, await LocalKeyProvider.load(path.join(path.dirname(storage.root), 'k')));
      const err = await fresh.getChunk(enc.id, o).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as IntegrityError).objectKey).toBe(place.key);
      expect((err as Error).message).toContain(`pack ${place.key}: its header length 0 does not fit the pack (${GiB} bytes)`);
    }
    // Reading it whole would have taken 1 GiB of memory.
    expect(peakRss() - peak).toBeLessThan(256 * MiB); // reading it would cost 1 GiB
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * MiB);
  });

  it('restores refuse a pack grown to 1 GiB unread, naming it, on the chunk-pool workers and on the main thread', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false });
    await writeTree(path.join(f.dir, 'src'), { 'w.bin': randomBytes(2 * MiB) });
    process.env.MEMVAULT_WORKERS = '0';
    const b = await runBackups(f.cfg, { type: 'full', alerts: new FileAlertSink(f.alertsFile), log: silentLogger });
    expect(b.ok).toBe(true);
    const vault = await openVault(f.cfg);
    const chunk = (await vault.readManifest(b.outcomes[0].manifestKey)).entries[0].chunks![0];
    const place = await chunkPlace(vault, chunk.id);
    await makeSparse(path.join(f.dir, 'vault-primary', place.key), GiB);
    for (const workers of ['2', '0']) {
      process.env.MEMVAULT_WORKERS = workers;
      const peak = peakRss();
      const fresh = await openVault(f.cfg);
      const plan = await planRestore(fresh, { mode: 'backup', backupId: b.outcomes[0].backupId }, undefined, ['data']);
      const err = await restorePlan({ cfg: f.cfg, vault: fresh, driverFor, log: silentLogger }, plan, path.join(f.dir, `restore-${workers}`), false)
        .then(() => null, (e: unknown) => e);
      expect((err as Error)?.message).toContain(`pack ${place.key}: its header length 0 does not fit the pack (${GiB} bytes)`);
      expect(peakRss() - peak).toBeLessThan(256 * MiB); // reading it would cost 1 GiB
    }
  });

  it('takes an object of exactly maxBytes, refuses one byte more, and is not retried', async () => {
    const { storage } = await newVault();
    await storage.put('manifests/c/one', randomBytes(1000));
    expect((await storage.get('manifests/c/one', { maxBytes: 1000 })).length).toBe(1000);
    const { waits, sleep } = recordingSleep();
    const retrying = new RetryingStorage(storage, { attempts: 5, baseMs: 1, maxMs: 1, sleep });
    const err = await retrying.get('manifests/c/one', { maxBytes: 999 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toBe(`${storage.url}: object manifests/c/one is 1000 bytes, more than the 999 expected; refusing to read it (damaged or planted object)`);
    expect(waits).toEqual([]);
  });

  it('refuses an oversized vault.json and manifest, and ignores an oversized lock', async () => {
    const { dir, storage, vault } = await newVault();
    const key = await LocalKeyProvider.load(path.join(dir, 'k'));
    // A manifest name holding 600 MiB: refused before reading.
    const mkey = 'manifests/graph/20250101T000000000Z.full.aaaaaaaa';
    await makeSparse(path.join(storage.root, mkey), MAX_MANIFEST_BYTES + MiB);
    const peak = peakRss();
    const merr = await vault.readManifest(mkey).catch((e: unknown) => e);
    expect(merr).toBeInstanceOf(IntegrityError);
    expect((merr as Error).message).toContain(`${mkey} is ${MAX_MANIFEST_BYTES + MiB} bytes, more than the ${MAX_MANIFEST_BYTES} expected`);
    expect(peakRss() - peak).toBeLessThan(256 * MiB); // reading it would cost 1 GiB

    // A prune lock padded past the lock bound: not read, so not taken for an active lock.
    const lockDoc = { kind: 'prune', id: 'planted', host: 'elsewhere', pid: 1, time: new Date().toISOString() };
    await storage.put('locks/prune-planted', Buffer.from(JSON.stringify(lockDoc) + ' '.repeat(MAX_LOCK_BYTES)));
    const lock = await vault.lock('backup');
    await lock.release();
    // The same lock within the bound blocks a backup (so the bound is what let it through).
    await storage.put('locks/prune-planted', Buffer.from(JSON.stringify(lockDoc)));
    await expect(vault.lock('backup')).rejects.toBeInstanceOf(LockedError);
    await storage.delete('locks/prune-planted');

    // vault.json grown past 1 MiB: the vault does not open, naming the object.
    const doc = await storage.get('vault.json');
    await storage.put('vault.json', Buffer.concat([doc, Buffer.alloc(MAX_VAULT_DOC_BYTES, 0x20)]));
    const derr = await Vault.open(storage, key).catch((e: unknown) => e);
    expect(derr).toBeInstanceOf(IntegrityError);
    expect((derr as IntegrityError).objectKey).toBe('vault.json');
  });

  it('a FIFO under a chunk\'s name is refused, not waited on', async () => {
    const { storage } = await newVault();
    await fs.mkdir(path.join(storage.root, 'chunks/ab'), { recursive: true });
    execFileSync('mkfifo', [path.join(storage.root, 'chunks/ab/fifo')]);
    const err = await storage.get('chunks/ab/fifo', { maxBytes: 10 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toContain('chunks/ab/fifo is not a regular file');
  });
});

describe('symlinks inside a file:// vault', () => {
  async function setup() {
    const { dir, storage } = await newVault();
    const outside = path.join(dir, 'outside');
    await writeTree(outside, { 'abcd': 'victim data', 'secret': 'do not read', 'sub/x': 'deep' });
    await fs.chmod(path.join(outside, 'secret'), 0o600);
    return { dir, storage, outside };
  }

  it('a symlinked chunk directory is not read, written, listed or deleted through', async () => {
    const { storage, outside } = await setup();
    await storage.put('chunks/00/real', Buffer.from('real'));
    await fs.mkdir(path.join(storage.root, 'chunks'), { recursive: true });
    await fs.symlink(outside, path.join(storage.root, 'chunks/ab'));
    const before = await snapshot(outside);

    const expectLink = async (p: Promise<unknown>) => {
      const err = await p.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as IntegrityError).objectKey).toBe('chunks/ab');
      expect((err as Error).message).toContain('chunks/ab is a symbolic link');
    };
    await expectLink(storage.get('chunks/ab/abcd'));
    await expectLink(storage.has('chunks/ab/abcd'));
    await expectLink(storage.put('chunks/ab/new', Buffer.from('planted')));
    await expectLink(storage.delete('chunks/ab/abcd'));
    await expectLink(listAll(storage, 'chunks/ab/'));
    expect(await listAll(storage, 'chunks/')).toEqual(['chunks/00/real']);
    expect(await listAll(storage, '')).toEqual(['chunks/00/real', 'vault.json']);
    expect(await snapshot(outside)).toEqual(before);
  });

  it('a symlinked manifests directory is damage: the catalog is not read from it', async () => {
    const { dir, storage } = await setup();
    const elsewhere = path.join(dir, 'elsewhere');
    await writeTree(elsewhere, { 'graph/20250101T000000000Z.full.abcdef01': 'x' });
    await fs.symlink(elsewhere, path.join(storage.root, 'manifests'));
    const err = await listManifestNames(storage).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/manifests is a symbolic link/);
    await expect(listManifestNames(storage, 'graph')).rejects.toBeInstanceOf(IntegrityError);
  });

  it('a symlinked object is not read, listed or deleted; put replaces the link, never its target', async () => {
    const { storage, outside } = await setup();
    await storage.put('chunks/cd/keep', Buffer.from('keep'));
    await fs.symlink(path.join(outside, 'secret'), path.join(storage.root, 'chunks/cd/obj'));
    const before = await snapshot(outside);
    const err = await storage.get('chunks/cd/obj').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toBe(`${storage.url}: cannot read chunks/cd/obj: chunks/cd/obj is a symbolic link; memvault never follows links inside a vault (remove it, or restore the real object)`);
    await expect(storage.has('chunks/cd/obj')).rejects.toBeInstanceOf(IntegrityError);
    await expect(storage.delete('chunks/cd/obj')).rejects.toBeInstanceOf(IntegrityError);
    expect(await listAll(storage, 'chunks/cd/')).toEqual(['chunks/cd/keep']);
    expect(await snapshot(outside)).toEqual(before);

    await storage.put('chunks/cd/obj', Buffer.from('the real object'));
    expect((await fs.lstat(path.join(storage.root, 'chunks/cd/obj'))).isFile()).toBe(true);
    expect((await storage.get('chunks/cd/obj')).toString()).toBe('the real object');
    expect(await snapshot(outside)).toEqual(before);
  });

  it('the vault root itself may be a symlink (the user\'s choice)', async () => {
    const dir = await tempDir();
    await fs.mkdir(path.join(dir, 'real'));
    await fs.symlink(path.join(dir, 'real'), path.join(dir, 'link'));
    const s = new FileStorage(path.join(dir, 'link'));
    await s.put('chunks/ab/x', Buffer.from('x'));
    expect((await s.get('chunks/ab/x')).toString()).toBe('x');
    expect(await listAll(s, '')).toEqual(['chunks/ab/x']);
    expect(await fs.readFile(path.join(dir, 'real/chunks/ab/x'), 'utf8')).toBe('x');
    await s.delete('chunks/ab/x');
    expect(await s.has('chunks/ab/x')).toBe(false);
  });

  it('backup, restore and prune leave the target of a symlinked pack directory untouched (workers and main thread)', async () => {
    const f = await makeFixture({ data: { kind: 'files', path: 'src', retention: { keepLast: 1 } } }, { secondary: false });
    const src = path.join(f.dir, 'src');
    const vaultDir = path.join(f.dir, 'vault-primary');
    const alerts = new FileAlertSink(f.alertsFile);
    const dataA = randomBytes(4 * MiB);
    await writeTree(src, { 'a.bin': dataA });
    process.env.MEMVAULT_WORKERS = '0';
    const packsOf = async () => (await fs.readdir(path.join(vaultDir, 'packs'), { recursive: true })).map(String).filter((k) => k.includes('/'));
    const first = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
    expect(first.ok).toBe(true);
    const packsA = await packsOf();
    await fs.rm(path.join(src, 'a.bin'));
    await writeTree(src, { 'b.bin': randomBytes(4 * MiB) });
    const second = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
    expect(second.ok).toBe(true);
    const packsB = (await packsOf()).filter((k) => !packsA.includes(k));

    // The attacker moves a pack directory that only the first backup uses out of the vault and links it back.
    const vault = await openVault(f.cfg);
    const ids = async (k: string) => (await vault.readManifest(k)).entries.flatMap((e) => (e.chunks ?? []).map((c) => c.id));
    const idsA = await ids(first.outcomes[0].manifestKey);
    const prefix = packsA.map((k) => k.split('/')[0]).find((p) => !packsB.some((k) => k.startsWith(`${p}/`)))!;
    expect(prefix).toBeDefined();
    const outside = path.join(f.dir, 'outside');
    await fs.rename(path.join(vaultDir, 'packs', prefix), outside);
    await fs.symlink(outside, path.join(vaultDir, 'packs', prefix));
    const before = await snapshot(outside);
    expect(Object.keys(before).length).toBeGreaterThan(0);

    // list: the linked packs are not in the vault, nor are their chunks.
    const listed = await vault.listChunks();
    expect(idsA.some((id) => listed.has(id))).toBe(false);
    expect([...listed.missingPacks].some((p) => p.startsWith(prefix))).toBe(true);

    for (const workers of ['2', '0']) {
      process.env.MEMVAULT_WORKERS = workers;
      // Restoring the first backup stops, naming the pack behind the link as missing.
      const fresh = await openVault(f.cfg);
      const plan = await planRestore(fresh, { mode: 'backup', backupId: first.outcomes[0].backupId }, undefined, ['data']);
      const err = await restorePlan({ cfg: f.cfg, vault: fresh, driverFor, log: silentLogger }, plan, path.join(f.dir, `restore-${workers}`), false)
        .then((r) => (r.ok ? null : r), (e: unknown) => e);
      // The second time the chunks are in the vault again (the backup below stored them anew).
      if (workers === '2') expect(String((err as Error)?.message ?? JSON.stringify(err))).toContain(`packs/${prefix}`);
      else expect(err).toBeNull();
      // Backing the first data up again stores its chunks again, never through the link.
      await fs.rm(path.join(src, 'b.bin'), { force: true });
      await writeTree(src, { 'a.bin': dataA });
      const again = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
      if (!again.ok) expect(again.failures[0].error).toContain(`packs/${prefix} is a symbolic link`);
      expect(await snapshot(outside)).toEqual(before);
    }

    // Retention forgets the first backup; prune deletes what is unreferenced, nothing through the link.
    const r = await retentionRun(f.cfg);
    expect(r.vaults[0].forgotten.map((x) => x.id)).toContain(first.outcomes[0].backupId);
    expect(await snapshot(outside)).toEqual(before);
    expect(await temporariesUnder(outside)).toEqual([]);
  });
});

describe('temporary objects', () => {
  it('one naming rule for FileStorage and the chunk-pool writer; listings skip them; keys of that form are refused', async () => {
    const { storage, vault } = await newVault();
    const enc = await vault.encodeChunk(randomBytes(1000));
    // A chunk-pool worker killed after writing, before its commit.
    const pending = writeChunkFileSync(storage.root, enc.id, sealChunkParts(vault.keys.dataKey, randomBytes(1000), enc.id), new Set());
    closeSync(pending.fd);
    expect(isTemporaryName(pending.tmp)).toBe(true);
    expect(isTemporaryName(temporaryName(path.join(storage.root, 'manifests/c/m')))).toBe(true);
    expect(await listAll(storage, 'chunks/')).toEqual([]);
    expect(await storage.has(chunkKey(enc.id))).toBe(false);
    const err = await storage.put(`${chunkKey(enc.id)}.tmp-0123456789ab`, Buffer.from('x')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/invalid object key/);
    expect(isTemporaryName('chunks/ab/abc.tmp-thing')).toBe(false);
  });

  it('sweepTemporary removes temporaries older than the age, never a finished object, a fresh temporary, or anything through a link', async () => {
    const { dir, storage, vault } = await newVault();
    const old = new Date(Date.now() - 2 * 3600_000);
    const enc = await vault.encodeChunk(randomBytes(5000));
    await vault.putChunk(enc);
    await storage.put('manifests/c/20250101T000000000Z.full.abcdef01', Buffer.from('manifest'));
    // Old temporaries: one of FileStorage.put's, one of a killed worker's.
    const t1 = temporaryName(path.join(storage.root, 'manifests/c/20250102T000000000Z.full.abcdef02'));
    await fs.writeFile(t1, randomBytes(300));
    const pending = writeChunkFileSync(storage.root, enc.id, enc.parts, new Set());
    closeSync(pending.fd);
    for (const t of [t1, pending.tmp]) await fs.utimes(t, old, old);
    // A fresh one (a run still writing), and finished objects dated long ago.
    const fresh = temporaryName(path.join(storage.root, chunkKey('ff'.repeat(32))));
    await fs.mkdir(path.dirname(fresh), { recursive: true });
    await fs.writeFile(fresh, 'in progress');
    await fs.utimes(path.join(storage.root, (await chunkPlace(vault, enc.id)).key), old, old);
    // Temporary-looking names behind links: a linked file and a linked directory.
    const outside = path.join(dir, 'outside');
    await writeTree(outside, { 'victim.tmp-0123456789ab': 'victim', 'v': 'victim' });
    await fs.utimes(path.join(outside, 'victim.tmp-0123456789ab'), old, old);
    await fs.symlink(path.join(outside, 'v'), path.join(storage.root, 'chunks', 'zz.tmp-0123456789ab'));
    await fs.symlink(outside, path.join(storage.root, 'chunks', 'ee'));
    const outsideBefore = await snapshot(outside);

    const report = await new RetryingStorage(storage).sweepTemporary(3600_000);
    expect(report).toEqual({ removed: 2, bytes: 300 + pending.size });
    const left = (await temporariesUnder(storage.root)).sort();
    expect(left).toEqual([path.relative(storage.root, fresh), 'chunks/zz.tmp-0123456789ab'].sort());
    expect((await vault.getChunk(enc.id)).length).toBe(5000);
    expect((await storage.get('manifests/c/20250101T000000000Z.full.abcdef01')).toString()).toBe('manifest');
    expect(await snapshot(outside)).toEqual(outsideBefore);
    expect(await storage.sweepTemporary(0)).toEqual({ removed: 1, bytes: Buffer.byteLength('in progress') });
  });
});

describe('full, read-only and unwritable disks', () => {
  const mnt = path.join('/tmp', `memvault-tmpfs-${process.pid}`);
  let mounted = false;
  beforeAll(async () => {
    await fs.mkdir(mnt, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mnt], { stdio: 'ignore' });
      mounted = true;
    } catch {
      // not root or no mount privilege: these tests are skipped
    }
  });
  afterAll(async () => {
    if (mounted) execFileSync('umount', ['-l', mnt]);
    await fs.rm(mnt, { recursive: true, force: true });
  });

  it('ENOSPC names the vault and the key, is permanent (tried once), and leaves no temporary', async (ctx) => {
    if (!mounted) ctx.skip();
    const storage = new FileStorage(path.join(mnt, 'vault-a'));
    await storage.put('vault.json', Buffer.from('{}'));
    const key = `chunks/ab/${'ab'.repeat(32)}`;
    const { waits, sleep } = recordingSleep();
    const err = await new RetryingStorage(storage, { attempts: 5, baseMs: 1, maxMs: 1, sleep }).put(key, [randomBytes(MiB), randomBytes(10)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect(err).not.toBeInstanceOf(TransientStorageError);
    expect((err as Error).message).toBe(`file://${mnt}/vault-a: cannot write ${key}: no space left on device (ENOSPC)`);
    expect(waits).toEqual([]);
    expect(await temporariesUnder(storage.root)).toEqual([]);
    expect(await storage.has(key)).toBe(false);

    // The chunk-pool writer: the same naming, nothing left.
    const perr = (() => {
      try {
        writeChunkFileSync(storage.root, 'cd'.repeat(32), [randomBytes(MiB)], new Set());
      } catch (e) {
        return e as NodeJS.ErrnoException;
      }
    })();
    expect(perr?.message).toBe(`cannot write chunks/cd/${'cd'.repeat(32)}: no space left on device (ENOSPC)`);
    expect(perr?.code).toBe('ENOSPC');
    expect(await temporariesUnder(storage.root)).toEqual([]);
    await fs.rm(storage.root, { recursive: true });
  });

  it('a backup into a full vault fails naming the key and ENOSPC, on workers and on the main thread, leaving no temporary', async (ctx) => {
    if (!mounted) ctx.skip();
    const f = await makeFixture({ data: { kind: 'files', path: 'src' } }, { secondary: false, init: false });
    await fs.mkdir(path.join(mnt, 'vault-b'));
    await fs.symlink(path.join(mnt, 'vault-b'), path.join(f.dir, 'vault-primary')); // the root may be a link
    const { initVaults } = await import('../../functions/ops.ts');
    await initVaults(f.cfg);
    await writeTree(path.join(f.dir, 'src'), { 'w.bin': randomBytes(3 * MiB) });
    const alerts = new FileAlertSink(f.alertsFile);
    for (const workers of ['2', '0']) {
      process.env.MEMVAULT_WORKERS = workers;
      const r = await runBackups(f.cfg, { type: 'full', alerts, log: silentLogger });
      expect(r.ok).toBe(false);
      expect(r.failures[0].error).toMatch(/cannot write packs\/[0-9a-f]{2}\/[0-9a-f]{32}: no space left on device \(ENOSPC\)/);
      expect(await temporariesUnder(path.join(mnt, 'vault-b'))).toEqual([]);
    }
    await fs.rm(path.join(mnt, 'vault-b'), { recursive: true });
  });

  it('EROFS names the vault and the key and is permanent; reads still work', async (ctx) => {
    if (!mounted) ctx.skip();
    const storage = new FileStorage(path.join(mnt, 'vault-c'));
    await storage.put('chunks/ab/one', Buffer.from('one'));
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    try {
      const err = await storage.put('chunks/ab/two', Buffer.from('two')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PermanentError);
      expect(err).not.toBeInstanceOf(TransientStorageError);
      expect((err as Error).message).toBe(`file://${mnt}/vault-c: cannot write chunks/ab/two: read-only file system (EROFS)`);
      const derr = await storage.delete('chunks/ab/one').catch((e: unknown) => e);
      expect((derr as Error).message).toBe(`file://${mnt}/vault-c: cannot delete chunks/ab/one: read-only file system (EROFS)`);
      expect((await storage.get('chunks/ab/one')).toString()).toBe('one');
    } finally {
      execFileSync('mount', ['-o', 'remount,rw', mnt]);
    }
  });
});

describe('FileStorage basics', () => {
  it('getRange reads a byte range with one positioned read; a range past the end is damage naming the object', async () => {
    const { storage } = await newVault();
    const data = randomBytes(10_000);
    await storage.put('packs/ab/range', data);
    expect((await storage.getRange('packs/ab/range', 1234, 4000)).equals(data.subarray(1234, 5234))).toBe(true);
    expect((await new RetryingStorage(storage).getRange('packs/ab/range', 9990, 10)).equals(data.subarray(9990))).toBe(true);
    const err = await storage.getRange('packs/ab/range', 9990, 20).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).objectKey).toBe('packs/ab/range');
    expect((err as Error).message).toContain('packs/ab/range ends before bytes 9990-10009');
    await expect(storage.getRange('packs/ab/none', 0, 1)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('a missing object is NotFoundError naming it; list of a missing prefix is empty', async () => {
    const { storage } = await newVault();
    const err = await storage.get('chunks/zz/none').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toBe(`${storage.url}: object chunks/zz/none not found`);
    expect(await storage.has('chunks/zz/none')).toBe(false);
    await storage.delete('chunks/zz/none');
    const objs: StoredObject[] = [];
    for await (const o of storage.list('manifests/none/')) objs.push(o);
    expect(objs).toEqual([]);
  });
});
