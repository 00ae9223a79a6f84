// `memvault key ...` on a configured platform: the same change to the primary
// vault and, when there is one, the secondary (each opened with its own
// region's key), each recorded in that vault's audit log.
import { promises as fs } from 'node:fs';
import type { MemvaultConfig } from './core/config.ts';
import { resolvePath } from './core/config.ts';
import type { KeyProvider } from './core/ports.ts';
import { addKey, listKeys, removeKey, rotateKey, type KeyListing } from './core/keys.ts';
import { recordAudit, type AuditOp } from './core/audit.ts';
import { Vault } from './core/vault.ts';
import { errorMessage, UsageError } from './core/errors.ts';
import { keyProvider, location, openStorage, type Side } from './services.ts';
import { LocalKeyProvider } from './adapters/keys/local.ts';
import { KmsKeyProvider } from './adapters/keys/kms.ts';

export type NewKey = { keyFile: string } | { kmsKey: string; region?: string };

function sides(cfg: MemvaultConfig): Side[] {
  return cfg.vault.secondary ? ['primary', 'secondary'] : ['primary'];
}

async function newProvider(cfg: MemvaultConfig, k: NewKey): Promise<KeyProvider> {
  if ('keyFile' in k) return LocalKeyProvider.create(resolvePath(cfg, k.keyFile));
  return new KmsKeyProvider({ keyId: k.kmsKey, region: k.region, field: '--kms-key' });
}

async function audited<T>(cfg: MemvaultConfig, side: Side, op: AuditOp, details: Record<string, unknown>, run: () => Promise<T>, opener?: () => Promise<KeyProvider>): Promise<T> {
  const startedAt = new Date().toISOString();
  let result: T;
  try {
    result = await run();
  } catch (err) {
    await auditTo(cfg, side, opener ?? (() => keyProvider(cfg, side)), { op, result: 'failed', startedAt, endedAt: new Date().toISOString(), components: [], backupIds: [], error: errorMessage(err), details });
    throw err;
  }
  await auditTo(cfg, side, opener ?? (() => keyProvider(cfg, side)), { op, result: 'ok', startedAt, endedAt: new Date().toISOString(), components: [], backupIds: [], details });
  return result;
}

async function auditTo(cfg: MemvaultConfig, side: Side, provider: () => Promise<KeyProvider>, r: Parameters<typeof recordAudit>[1]): Promise<void> {
  try {
    await recordAudit(await Vault.open(openStorage(cfg, location(cfg, side)), await provider()), r);
  } catch { /* the vault does not open with that key (the change failed before it): nothing to record into */ }
}

export async function keyList(cfg: MemvaultConfig): Promise<KeyListing[]> {
  const out: KeyListing[] = [];
  for (const s of sides(cfg)) out.push(await listKeys(openStorage(cfg, location(cfg, s)), await keyProvider(cfg, s)));
  return out;
}

export async function keyAdd(cfg: MemvaultConfig, k: NewKey): Promise<{ vault: string; keyId: string; added: boolean }[]> {
  const extra = await newProvider(cfg, k);
  const out = [];
  for (const s of sides(cfg)) {
    const storage = openStorage(cfg, location(cfg, s));
    const current = await keyProvider(cfg, s);
    const added = await audited(cfg, s, 'key-add', { type: extra.type, keyId: extra.keyId }, () => addKey(storage, current, extra));
    out.push({ vault: storage.url, keyId: extra.keyId, added });
  }
  return out;
}

export async function keyRemove(cfg: MemvaultConfig, keyId: string): Promise<{ vault: string; removed: boolean }[]> {
  const out = [];
  let any = false;
  for (const s of sides(cfg)) {
    const storage = openStorage(cfg, location(cfg, s));
    const current = await keyProvider(cfg, s);
    const listing = await listKeys(storage, current);
    if (!listing.keys.some((x) => x.keyId === keyId)) {
      out.push({ vault: storage.url, removed: false });
      continue;
    }
    await audited(cfg, s, 'key-remove', { keyId }, () => removeKey(storage, current, keyId));
    out.push({ vault: storage.url, removed: true });
    any = true;
  }
  if (!any) throw new UsageError(`key remove: no vault has key ${keyId} (see \`memvault key list\`)`);
  return out;
}

/**
 * Replaces the key the configuration uses. A local key file is replaced in
 * place: the new key is made beside it (<file>.next), added to every vault,
 * proven, the old wrapping removed, and then the new file renamed over the old
 * one, so the configuration stays as it is and the old key is gone from disk.
 * Interrupted, it resumes from <file>.next. With a KMS key (--kms-key), the
 * vaults switch to it and the configuration must then name it.
 */
export async function keyRotate(cfg: MemvaultConfig, kms?: { kmsKey: string; region?: string }): Promise<{ vault: string; from: string; to: string }[]> {
  const localFile = cfg.encryption.kms ? undefined : resolvePath(cfg, cfg.encryption.key!);
  if (!kms && !localFile) throw new UsageError('key rotate: this configuration uses KMS keys; name the new one with --kms-key ARN (KMS rotates key material itself when automatic rotation is on, as the stacks set it)');
  const nextFile = localFile ? `${localFile}.next` : undefined;
  const next: KeyProvider = kms ? await newProvider(cfg, kms) : await LocalKeyProvider.create(nextFile!);
  const out = [];
  for (const s of sides(cfg)) {
    const storage = openStorage(cfg, location(cfg, s));
    let current: KeyProvider | undefined;
    try {
      current = await keyProvider(cfg, s);
      await Vault.open(storage, current);
    } catch (err) {
      // A rotation interrupted after this vault was switched: the new key opens it, the old one no longer does.
      const done = await Vault.open(storage, next).then(() => true, () => false);
      if (done) {
        out.push({ vault: storage.url, from: current?.keyId ?? '(old key)', to: next.keyId });
        continue;
      }
      throw err;
    }
    const from = current;
    await audited(cfg, s, 'key-rotate', { from: from.keyId, to: next.keyId }, () => rotateKey(storage, from, next), async () => next);
    out.push({ vault: storage.url, from: from.keyId, to: next.keyId });
  }
  if (localFile && nextFile) await fs.rename(nextFile, localFile);
  return out;
}
