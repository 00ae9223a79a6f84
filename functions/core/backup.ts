// Backup of one component: lock the vault (shared), find the parent backup,
// let the driver stream its data through a BackupWriter, wait for every chunk
// upload, and only then write the manifest. A backup killed at any point
// before the manifest leaves no backup, only chunks the next one reuses.
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Vault } from './vault.ts';
import { listCatalog } from './vault.ts';
import { BackupWriter, type WriterStats } from './writer.ts';
import { type BackupType, type Manifest, manifestKey } from './manifest.ts';
import type { ComponentConfig, MemvaultConfig } from './config.ts';
import { resolvePath } from './config.ts';
import type { Driver, Logger } from '../components/types.ts';
import { LockedError, NotFoundError, UsageError } from './errors.ts';
import type { Clock } from './ports.ts';
import { systemClock } from './ports.ts';

export interface BackupOutcome {
  component: string;
  kind: string;
  backupId: string;
  manifestKey: string;
  type: BackupType;
  parent?: string;
  startedAt: string;
  finishedAt: string;
  stats: Manifest['stats'];
  warnings: string[];
}

export interface BackupDeps {
  cfg: MemvaultConfig;
  vault: Vault;
  driverFor(kind: string): Driver<any>;
  log: Logger;
  clock?: Clock;
  /** Chunk ids known to be in the vault; shared across the components of one run. */
  known?: Set<string>;
  /** Wait this long for a running prune to finish. @default 10 minutes */
  lockWaitMs?: number;
  onProgress?: (component: string, s: WriterStats) => void;
}

export function newBackupId(now: Date): string {
  return `${now.toISOString().slice(0, 10).replaceAll('-', '')}-${randomBytes(4).toString('hex')}`;
}

/** Which components a run covers: named ones, or all (only critical ones for `critical`). */
export function selectComponents(cfg: MemvaultConfig, type: BackupType, names: string[] = []): string[] {
  const all = Object.keys(cfg.components);
  for (const n of names) {
    if (!cfg.components[n]) throw new UsageError(`unknown component "${n}"; configured components: ${all.join(', ')}`);
  }
  let chosen = names.length > 0 ? names : all;
  if (type === 'critical') chosen = chosen.filter((n) => cfg.components[n].critical);
  if (chosen.length === 0) throw new UsageError(`no component to back up${type === 'critical' ? ' (none is marked critical: true)' : ''}`);
  return chosen;
}

async function acquireBackupLock(vault: Vault, waitMs: number) {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      return await vault.lock('backup');
    } catch (err) {
      if (!(err instanceof LockedError) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

export async function backupComponent(deps: BackupDeps, component: string, type: BackupType, runId?: string): Promise<BackupOutcome> {
  const { cfg, vault, log } = deps;
  const clock = deps.clock ?? systemClock;
  const settings: ComponentConfig | undefined = cfg.components[component];
  if (!settings) throw new NotFoundError(`unknown component "${component}"; configured: ${Object.keys(cfg.components).join(', ')}`);
  const driver = deps.driverFor(settings.kind);
  const started = clock.now();
  const lock = await acquireBackupLock(vault, deps.lockWaitMs ?? 10 * 60_000);
  try {
    const known = deps.known ?? new Set((await vault.listChunks()).keys());
    const latest = (await listCatalog(vault.storage, component))[0];
    const parent = latest && type !== 'full' ? await vault.readManifest(latest) : undefined;
    const writer = new BackupWriter(vault, known);
    if (deps.onProgress) writer.onProgress = (s) => deps.onProgress!(component, s);
    log.info('backup started', { component, type, parent: parent?.id });
    const result = await driver.backup({
      component,
      settings,
      type,
      parent,
      writer,
      resolve: (p) => resolvePath(cfg, p),
      log,
    });
    await writer.drain();
    await writer.close();
    const finished = clock.now();
    const id = newBackupId(started);
    const key = manifestKey(component, started, type, id);
    const manifest: Manifest = {
      format: 'memvault-manifest/1',
      id,
      component,
      kind: settings.kind,
      type,
      runId,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      parent: parent?.id,
      host: os.hostname(),
      entries: result.entries,
      driver: result.meta,
      stats: { ...writer.stats, durationMs: finished.getTime() - started.getTime() },
      warnings: result.warnings,
    };
    manifest.stats.bytesStored += await vault.writeManifest(key, manifest);
    log.info('backup finished', { component, backupId: id, ...manifest.stats, warnings: result.warnings.length });
    return {
      component, kind: settings.kind, backupId: id, manifestKey: key, type, parent: parent?.id,
      startedAt: manifest.startedAt, finishedAt: manifest.finishedAt, stats: manifest.stats, warnings: result.warnings,
    };
  } finally {
    await lock.release();
  }
}
