import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { FileStorage } from '../../functions/adapters/storage/file.ts';
import { LocalKeyProvider } from '../../functions/adapters/keys/local.ts';
import { Vault, chunkKey, listManifestNames } from '../../functions/core/vault.ts';
import { seal, open } from '../../functions/core/crypto.ts';
import { IntegrityError, WrongKeyError } from '../../functions/core/errors.ts';
import { manifestKey, parseManifestKey, type Manifest } from '../../functions/core/manifest.ts';
import { tempDir } from '../helpers/fixture.ts';
import { chunkPlace, editObject, flipChunkBit } from '../helpers/packs.ts';

async function newVault() {
  const dir = await tempDir();
  const key = await LocalKeyProvider.create(path.join(dir, 'k'));
  const storage = new FileStorage(path.join(dir, 'vault'));
  return { dir, key, storage, vault: await Vault.init(storage, [key]) };
}

describe('vault format', () => {
  it('creates the key file with mode 0600 and never overwrites it', async () => {
    const dir = await tempDir();
    const f = path.join(dir, 'memvault.key');
    const k1 = await LocalKeyProvider.create(f);
    expect((await fs.stat(f)).mode & 0o777).toBe(0o600);
    const k2 = await LocalKeyProvider.create(f);
    expect(k2.keyId).toBe(k1.keyId);
  });

  it('round-trips chunks, compressing text and storing random data raw', async () => {
    const { vault, storage } = await newVault();
    const text = Buffer.from('memory recall concept '.repeat(50_000));
    const random = randomBytes(512 * 1024);
    const t = await vault.encodeChunk(text);
    const r = await vault.encodeChunk(random);
    expect(t.compressed).toBe(true);
    expect(t.blob.length).toBeLessThan(text.length / 10);
    expect(r.compressed).toBe(false);
    await vault.putChunk(t);
    await vault.putChunk(r);
    expect((await vault.getChunk(t.id)).equals(text)).toBe(true);
    expect((await vault.getChunk(r.id)).equals(random)).toBe(true);
    // Stored bytes are not the plaintext: the chunk as sealed, inside its pack.
    const place = await chunkPlace(vault, r.id);
    const stored = await storage.get(place.key);
    expect(stored.subarray(place.offset, place.offset + place.length).equals(r.blob)).toBe(true);
    expect(stored.includes(random.subarray(0, 64))).toBe(false);
  });

  it('detects a flipped bit and a chunk moved to another name, naming the chunk', async () => {
    const { vault, storage } = await newVault();
    const a = await vault.encodeChunk(randomBytes(1000));
    const b = await vault.encodeChunk(randomBytes(1000));
    await vault.putChunk(a);
    const place = await flipChunkBit(vault, a.id, 20);
    const err = await vault.getChunk(a.id).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(new RegExp(`chunk ${a.id} in pack ${place.key}: .*authentication failed`));
    expect((err as IntegrityError).objectKey).toBe(place.key);
    await editObject(storage, place.key, (blob) => { b.blob.copy(blob, place.offset); }); // b's bytes in a's place
    await expect(vault.getChunk(a.id)).rejects.toBeInstanceOf(IntegrityError);
    await expect(vault.getChunk(b.id)).rejects.toThrow(/missing/);
  });

  it('binds the encoding in the chunk header: flipping raw/zstd fails authentication', async () => {
    const { vault, storage } = await newVault();
    const t = await vault.encodeChunk(Buffer.from('memory recall concept '.repeat(50_000)));
    expect(t.compressed).toBe(true);
    expect(t.parts.length).toBe(2); // header + ciphertext, written without joining them
    await vault.putChunk(t);
    const place = await chunkPlace(vault, t.id);
    const blob = await storage.get(place.key);
    expect(blob.subarray(place.offset, place.offset + place.length).equals(t.blob)).toBe(true);
    await editObject(storage, place.key, (x) => { x[place.offset] ^= 1; }); // 3 (zstd) -> 2 (raw)
    await expect(vault.getChunk(t.id)).rejects.toThrow(/authentication failed/);
  });

  it('file storage writes a list of parts as their concatenation', async () => {
    const { storage } = await newVault();
    const parts = [randomBytes(13), Buffer.alloc(0), randomBytes(3 * 1024 * 1024 + 7)];
    await storage.put('x/parts', parts);
    expect((await storage.get('x/parts')).equals(Buffer.concat(parts))).toBe(true);
  });

  it('refuses a wrong key with a clear error and leaves the vault untouched', async () => {
    const { dir, storage } = await newVault();
    const before = await storage.get('vault.json');
    const other = await LocalKeyProvider.create(path.join(dir, 'other'));
    await expect(Vault.open(storage, other)).rejects.toBeInstanceOf(WrongKeyError);
    await expect(Vault.open(storage, other)).rejects.toThrow(/not a key of this vault/);
    expect((await storage.get('vault.json')).equals(before)).toBe(true);
  });

  it('rejects a forged key file that claims the right fingerprint', async () => {
    const { dir, storage, key } = await newVault();
    const forged = path.join(dir, 'forged');
    await fs.writeFile(forged, `memvault-key-v1:${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    const p = await LocalKeyProvider.load(forged);
    const doc = JSON.parse((await storage.get('vault.json')).toString());
    doc.keys[0].keyId = p.keyId; // pretend the wrapping is for the forged key
    await storage.put('vault.json', Buffer.from(JSON.stringify(doc)));
    await expect(Vault.open(storage, p)).rejects.toBeInstanceOf(WrongKeyError);
    void key;
  });

  it('seals with the object name as associated data', () => {
    const k = randomBytes(32);
    const s = seal(k, Buffer.from('hello'), 'manifests/a');
    expect(open(k, s, 'manifests/a').toString()).toBe('hello');
    expect(() => open(k, s, 'manifests/b')).toThrow(IntegrityError);
  });

  it('catalog comes from manifest keys alone, newest first', async () => {
    const { vault, storage } = await newVault();
    const t1 = new Date('2026-01-01T00:00:00.000Z');
    const t2 = new Date('2026-01-02T00:00:00.000Z');
    const m: Manifest = { format: 'memvault-manifest/1', id: 'x', component: 'db', kind: 'files', type: 'full', startedAt: '', finishedAt: '', host: '', entries: [], driver: {}, stats: {} as never, warnings: [] };
    await vault.writeManifest(manifestKey('db', t1, 'full', '20260101-aaaa'), { ...m, id: '20260101-aaaa' });
    await vault.writeManifest(manifestKey('db', t2, 'incremental', '20260102-bbbb'), { ...m, id: '20260102-bbbb' });
    const refs = await listManifestNames(storage);
    expect(refs.map((r) => r.id)).toEqual(['20260102-bbbb', '20260101-aaaa']);
    expect(refs[0].type).toBe('incremental');
    expect(parseManifestKey(refs[1].key)?.time.toISOString()).toBe(t1.toISOString());
  });
});
