// What the database driver tests share: a query helper on a fresh connection, a
// vault of their own in a temp dir, and a full backup of one component.
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseConfig, type MemvaultConfig } from '../../functions/core/config.ts';
import { driverFor, kindSchemas } from '../../functions/components/registry.ts';
import { initVaults } from '../../functions/ops.ts';
import { openVault } from '../../functions/services.ts';
import { backupComponent } from '../../functions/core/backup.ts';
import { parseManifestKey, type Manifest } from '../../functions/core/manifest.ts';
import type { Vault } from '../../functions/core/vault.ts';
import { silentLogger } from '../../functions/logger.ts';

/** Runs one statement on a new connection (session time zone UTC, plus `session` SQL) and returns its rows. */
export function pgQuery(url: string, session = "SET TimeZone = 'UTC'") {
  return async <T extends pg.QueryResultRow = any>(sql: string, params: unknown[] = []): Promise<T[]> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(session);
      return (await c.query<T>(sql, params)).rows;
    } finally {
      await c.end();
    }
  };
}

export interface Setup { dir: string; cfg: MemvaultConfig; vault: Vault }

/** A file:// vault and key in a new temp dir, with these components. */
export async function vaultSetup(components: Record<string, unknown>, prefix = 'memvault-dbtest-'): Promise<Setup> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  const cfg = parseConfig({ vault: { primary: `file://${dir}/vault` }, encryption: { key: `${dir}/memvault.key` }, components }, kindSchemas, dir);
  await initVaults(cfg);
  return { dir, cfg, vault: await openVault(cfg) };
}

/** A full backup of one component; its outcome, manifest ref and manifest. */
export async function fullBackup(s: Setup, component: string) {
  const out = await backupComponent({ cfg: s.cfg, vault: s.vault, driverFor, log: silentLogger }, component, 'full');
  const ref = parseManifestKey(out.manifestKey)!;
  return { out, ref, manifest: await s.vault.readManifest(ref) as Manifest };
}
