// Runs one driver through the real engine (backupComponent, restoreItem) with a
// real file:// vault and local key in a temp dir, without the registry, so a
// driver can be tested with injected clients (s3rver, mocked AWS, a MongoDB
// test double).
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig, type MemvaultConfig } from '../../functions/core/config.ts';
import { backupComponent, type BackupOutcome } from '../../functions/core/backup.ts';
import { restoreItem, type ComponentRestoreResult } from '../../functions/core/restore.ts';
import { Vault, listManifestNames } from '../../functions/core/vault.ts';
import { FileStorage } from '../../functions/adapters/storage/file.ts';
import { LocalKeyProvider } from '../../functions/adapters/keys/local.ts';
import type { BackupType, Manifest } from '../../functions/core/manifest.ts';
import type { Driver, Logger } from '../../functions/components/types.ts';

export interface LogLine { level: string; msg: string; fields?: Record<string, unknown> }

export interface Harness {
  dir: string;
  cfg: MemvaultConfig;
  vault: Vault;
  /** Every log line written by the engine and the driver (tests assert secrets never appear). */
  logs: LogLine[];
  backup(type?: BackupType): Promise<BackupOutcome>;
  manifest(backupId: string): Promise<Manifest>;
  restore(backupId: string, options?: Record<string, unknown>): Promise<ComponentRestoreResult>;
  close(): Promise<void>;
}

export async function makeHarness(driver: Driver<any>, component: string, settings: Record<string, unknown>): Promise<Harness> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `memvault-${driver.kind}-`));
  const cfg = parseConfig(
    { vault: { primary: 'file://vault' }, encryption: { key: 'memvault.key' }, components: { [component]: { kind: driver.kind, ...settings } } },
    { [driver.kind]: driver.schema },
    dir,
  );
  const key = await LocalKeyProvider.create(path.join(dir, 'memvault.key'));
  const vault = await Vault.init(new FileStorage(path.join(dir, 'vault')), [key]);
  const logs: LogLine[] = [];
  const log: Logger = {
    info: (msg, fields) => logs.push({ level: 'info', msg, fields }),
    warn: (msg, fields) => logs.push({ level: 'warn', msg, fields }),
    error: (msg, fields) => logs.push({ level: 'error', msg, fields }),
  };
  const deps = { cfg, vault, driverFor: () => driver, log, lockWaitMs: 0 };
  const refOf = async (id: string) => {
    const ref = (await listManifestNames(vault.storage, component)).find((r) => r.id === id);
    if (!ref) throw new Error(`no backup ${id}`);
    return ref;
  };
  let n = 0;
  return {
    dir, cfg, vault, logs,
    backup: (type = 'incremental') => backupComponent(deps, component, type),
    manifest: async (id) => vault.readManifest(await refOf(id)),
    restore: async (id, options) => restoreItem(deps, { component, ref: await refOf(id) }, path.join(dir, `restore-${++n}`), options),
    close: () => fs.rm(dir, { recursive: true, force: true }),
  };
}
