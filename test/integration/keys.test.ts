// memvault key list | add | remove | rotate (issue 13): the wrappings of the vault
// secret, on the primary and the DR vault. What an operator relies on: a removed
// key (a leaked key file) opens nothing from then on, every backup taken before a
// rotation restores with the new key byte for byte, the key in use is never
// removed by mistake, and every change is in the audit log.
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { stringify, parse } from 'yaml';
import { mockClient } from 'aws-sdk-client-mock';
import { DecryptCommand, EncryptCommand, KMSClient, KMSServiceException } from '@aws-sdk/client-kms';
import { cli } from '../helpers/cli.ts';
import { makeFixture, writeTree, type Fixture } from '../helpers/fixture.ts';
import { FileStorage } from '../../functions/adapters/storage/file.ts';
import { LocalKeyProvider } from '../../functions/adapters/keys/local.ts';
import { KmsKeyProvider } from '../../functions/adapters/keys/kms.ts';
import { addKey, listKeys, rotateKey } from '../../functions/core/keys.ts';
import { Vault } from '../../functions/core/vault.ts';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

async function platform(): Promise<{ f: Fixture; weights: Buffer }> {
  const f = await makeFixture({ notes: { kind: 'files', path: 'src' } });
  const weights = randomBytes(3 * 1024 * 1024);
  await writeTree(path.join(f.dir, 'src'), { 'weights.bin': weights, 'notes/a.md': '# memory\n' });
  const b = await cli(['backup', '--config', f.cfgFile, '--type', 'full']);
  expect(b.code, b.stderr).toBe(0);
  expect((await cli(['replicate', '--config', f.cfgFile])).code).toBe(0);
  return { f, weights };
}

/** A copy of the config that opens the vaults with another key file. */
async function configWithKey(f: Fixture, keyFile: string): Promise<string> {
  const doc = parse(await fs.readFile(f.cfgFile, 'utf8'));
  doc.encryption = { key: keyFile };
  const file = path.join(f.dir, `memvault-${path.basename(keyFile)}.yaml`);
  await fs.writeFile(file, stringify(doc));
  return file;
}

async function keysOf(cfgFile: string): Promise<{ vault: string; keys: { keyId: string; current: boolean }[] }[]> {
  const r = await cli(['key', 'list', '--config', cfgFile, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

async function restoresTo(cfgFile: string, out: string, from: 'primary' | 'secondary' = 'primary') {
  return cli(['restore', '--latest', '--config', cfgFile, '--target', out, '--from', from]);
}

describe('memvault key', () => {
  it('add lets a second key open both vaults; remove revokes it there; the key in use and unknown keys are refused', async () => {
    const { f, weights } = await platform();
    const [before] = await keysOf(f.cfgFile);
    expect(before.keys).toHaveLength(1);
    expect(before.keys[0].current).toBe(true);
    const current = before.keys[0].keyId;

    const add = await cli(['key', 'add', '--config', f.cfgFile, '--key-file', 'team.key']);
    expect(add.code, add.stderr).toBe(0);
    const team = (await LocalKeyProvider.load(path.join(f.dir, 'team.key'))).keyId;
    for (const v of await keysOf(f.cfgFile)) expect(v.keys.map((k) => k.keyId).sort(), v.vault).toEqual([current, team].sort());
    const teamCfg = await configWithKey(f, 'team.key');
    for (const from of ['primary', 'secondary'] as const) {
      const out = path.join(f.dir, `team-${from}`);
      const r = await restoresTo(teamCfg, out, from);
      expect(r.code, r.stderr).toBe(0);
      expect(sha(await fs.readFile(path.join(out, 'notes', 'weights.bin')))).toBe(sha(weights));
    }

    // The key in use: refused, vault.json untouched.
    const docBefore = await fs.readFile(path.join(f.dir, 'vault-primary', 'vault.json'));
    const self = await cli(['key', 'remove', '--config', f.cfgFile, '--key-id', current]);
    expect(self.code).toBe(2);
    expect(self.stderr).toMatch(/opens the vault with; removing it would lock you out/);
    expect((await fs.readFile(path.join(f.dir, 'vault-primary', 'vault.json'))).equals(docBefore)).toBe(true);
    const unknown = await cli(['key', 'remove', '--config', f.cfgFile, '--key-id', '0123456789abcdef']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/no vault has key 0123456789abcdef/);

    // Revoked: the team key file (say it leaked) opens neither vault any more.
    const rm = await cli(['key', 'remove', '--config', f.cfgFile, '--key-id', team]);
    expect(rm.code, rm.stderr).toBe(0);
    for (const from of ['primary', 'secondary'] as const) {
      const r = await restoresTo(teamCfg, path.join(f.dir, `revoked-${from}`), from);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`local key ${team} is not a key of this vault`));
    }
    const audit = JSON.parse((await cli(['audit', '--config', f.cfgFile, '--json', '--op', 'key-add'])).stdout);
    expect(audit.records.map((r: { details: { keyId: string } }) => r.details.keyId)).toEqual([team]);
    const removed = JSON.parse((await cli(['audit', '--config', f.cfgFile, '--json', '--op', 'key-remove', '--from', 'secondary'])).stdout);
    expect(removed.records).toHaveLength(1);
  }, 120_000);

  it('rotate replaces the key file in place: old backups restore with the new key, the old key opens nothing', async () => {
    const { f, weights } = await platform();
    const keyFile = path.join(f.dir, 'memvault.key');
    await fs.copyFile(keyFile, path.join(f.dir, 'old.key'));
    const oldId = (await LocalKeyProvider.load(keyFile)).keyId;
    const r = await cli(['key', 'rotate', '--config', f.cfgFile]);
    expect(r.code, r.stderr).toBe(0);
    const newId = (await LocalKeyProvider.load(keyFile)).keyId;
    expect(newId).not.toBe(oldId);
    await expect(fs.access(`${keyFile}.next`)).rejects.toThrow();
    for (const v of await keysOf(f.cfgFile)) expect(v.keys).toEqual([{ type: 'local', keyId: newId, current: true }]);
    for (const from of ['primary', 'secondary'] as const) {
      const out = path.join(f.dir, `rotated-${from}`);
      const ok = await restoresTo(f.cfgFile, out, from);
      expect(ok.code, ok.stderr).toBe(0);
      expect(sha(await fs.readFile(path.join(out, 'notes', 'weights.bin')))).toBe(sha(weights));
      const old = await restoresTo(await configWithKey(f, 'old.key'), path.join(f.dir, `old-${from}`), from);
      expect(old.code).toBe(1);
      expect(old.stderr).toMatch(/is not a key of this vault/);
    }
    // New backups go on under the new key.
    expect((await cli(['backup', '--config', f.cfgFile, '--type', 'full'])).code).toBe(0);
    const audit = JSON.parse((await cli(['audit', '--config', f.cfgFile, '--json', '--op', 'key-rotate'])).stdout);
    expect(audit.records).toHaveLength(1);
    expect(audit.records[0].details).toEqual({ from: oldId, to: newId });
  }, 120_000);

  it('rotate interrupted after the primary switched resumes: the secondary switches and the key file is replaced', async () => {
    const { f } = await platform();
    const keyFile = path.join(f.dir, 'memvault.key');
    const old = await LocalKeyProvider.load(keyFile);
    // What a rotation killed between the two vaults leaves: <key>.next, the primary switched, the secondary not.
    const next = await LocalKeyProvider.create(`${keyFile}.next`);
    await rotateKey(new FileStorage(path.join(f.dir, 'vault-primary')), old, next);
    const r = await cli(['key', 'rotate', '--config', f.cfgFile]);
    expect(r.code, r.stderr).toBe(0);
    expect((await LocalKeyProvider.load(keyFile)).keyId).toBe(next.keyId);
    for (const v of await keysOf(f.cfgFile)) expect(v.keys.map((k) => k.keyId)).toEqual([next.keyId]);
  }, 120_000);

  it('adds a KMS key wrapping that opens the vault; a KMS error leaves vault.json as it was', async () => {
    const { f } = await platform();
    const kms = mockClient(KMSClient);
    const wrapped = new Map<string, { keyId: string; plain: Buffer; ctx: string }>();
    kms.on(EncryptCommand).callsFake((i) => {
      const blob = randomBytes(48);
      wrapped.set(blob.toString('hex'), { keyId: i.KeyId, plain: Buffer.from(i.Plaintext), ctx: JSON.stringify(i.EncryptionContext) });
      return { KeyId: i.KeyId, CiphertextBlob: blob };
    });
    kms.on(DecryptCommand).callsFake((i) => {
      const w = wrapped.get(Buffer.from(i.CiphertextBlob).toString('hex'));
      if (!w || w.keyId !== i.KeyId || w.ctx !== JSON.stringify(i.EncryptionContext)) throw new KMSServiceException({ name: 'InvalidCiphertextException', $fault: 'client', $metadata: {}, message: 'bad' });
      return { KeyId: w.keyId, Plaintext: w.plain };
    });
    try {
      const arn = 'arn:aws:kms:eu-west-1:111111111111:key/0a1b2c3d-0000-1111-2222-333344445555';
      const storage = new FileStorage(path.join(f.dir, 'vault-primary'));
      const local = await LocalKeyProvider.load(path.join(f.dir, 'memvault.key'));
      const provider = new KmsKeyProvider({ keyId: arn, region: 'eu-west-1', client: new KMSClient({ region: 'eu-west-1' }) });
      expect(await addKey(storage, local, provider)).toBe(true);
      expect((await listKeys(storage, provider)).keys.map((k) => `${k.type}:${k.current}`)).toEqual(['local:false', 'kms:true']);
      expect((await Vault.open(storage, provider)).id).toBe((await Vault.open(storage, local)).id);

      const before = await fs.readFile(path.join(f.dir, 'vault-primary', 'vault.json'));
      kms.on(EncryptCommand).rejects(new KMSServiceException({ name: 'AccessDeniedException', $fault: 'client', $metadata: {}, message: 'not authorized to perform kms:Encrypt' }));
      const other = new KmsKeyProvider({ keyId: arn.replace('0a1b', 'ffff'), region: 'eu-west-1', client: new KMSClient({ region: 'eu-west-1' }) });
      await expect(addKey(storage, local, other)).rejects.toThrow(/kms:Encrypt|AccessDenied/);
      expect((await fs.readFile(path.join(f.dir, 'vault-primary', 'vault.json'))).equals(before)).toBe(true);
    } finally {
      kms.restore();
    }
  }, 60_000);
});
