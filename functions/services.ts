// Builds the outside world from a validated config: vault storage (file://,
// s3:// or azblob://, with retries), the key provider (local key file or KMS), alert sinks.
// Handlers and the CLI both start here.
import path from 'node:path';
import type { MemvaultConfig, VaultLocation } from './core/config.ts';
import { resolvePath } from './core/config.ts';
import type { AlertSink, KeyProvider, Storage } from './core/ports.ts';
import { FileStorage } from './adapters/storage/file.ts';
import { LazyS3Storage } from './adapters/storage/s3-location.ts';
import { LazyAzureBlobStorage } from './adapters/storage/azure-location.ts';
import { RetryingStorage } from './adapters/storage/retrying.ts';
import { LocalKeyProvider } from './adapters/keys/local.ts';
import { KmsKeyProvider } from './adapters/keys/kms.ts';
import { FanoutAlertSink, FileAlertSink, StreamAlertSink } from './adapters/alerts/local.ts';
import { SnsAlertSink } from './adapters/alerts/sns.ts';
import { Vault } from './core/vault.ts';
import { localSeenMemory } from './adapters/seen.ts';
import { ConfigError } from './core/errors.ts';

export type Side = 'primary' | 'secondary';

export function openStorage(cfg: MemvaultConfig, loc: VaultLocation): Storage {
  if (loc.url.startsWith('file://')) {
    const p = loc.url.slice('file://'.length);
    return new RetryingStorage(new FileStorage(path.isAbsolute(p) ? p : resolvePath(cfg, p)));
  }
  if (loc.url.startsWith('s3://')) return new RetryingStorage(new LazyS3Storage(loc));
  if (loc.url.startsWith('azblob://')) return new RetryingStorage(new LazyAzureBlobStorage(loc));
  throw new ConfigError(`vault url ${loc.url}: expected file://DIR, s3://bucket/prefix or azblob://account/container/prefix`);
}

export function location(cfg: MemvaultConfig, side: Side): VaultLocation {
  const loc = side === 'primary' ? cfg.vault.primary : cfg.vault.secondary;
  if (!loc) throw new ConfigError('vault.secondary is not configured; add it to use the DR copy');
  return loc;
}

export async function keyProvider(cfg: MemvaultConfig, side: Side): Promise<KeyProvider> {
  const e = cfg.encryption;
  if (e.kms) {
    const keyId = side === 'primary' ? e.kms.primary : e.kms.secondary ?? e.kms.primary;
    const region = side === 'primary' ? e.kms.region : e.kms.secondaryRegion ?? e.kms.region;
    return new KmsKeyProvider({ keyId, region });
  }
  return LocalKeyProvider.load(resolvePath(cfg, e.key!));
}

export async function openVault(cfg: MemvaultConfig, side: Side = 'primary'): Promise<Vault> {
  const vault = await Vault.open(openStorage(cfg, location(cfg, side)), await keyProvider(cfg, side));
  vault.seen = localSeenMemory();
  return vault;
}

export function alertSink(cfg: MemvaultConfig, opts: { json?: boolean } = {}): AlertSink {
  return new FanoutAlertSink(cfg.alerts.map((a) => {
    if (a.type === 'stdout') return new StreamAlertSink(opts.json ? process.stderr : process.stdout);
    if (a.type === 'file') return new FileAlertSink(resolvePath(cfg, a.path));
    return new SnsAlertSink({ topicArn: a.topicArn, region: a.region });
  }));
}
