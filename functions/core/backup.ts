// Backup of one component: lock the vault (shared), read the chunk index, find
// the parent backup, let the driver stream its data through a BackupWriter,
// wait until every new chunk is in a durable pack and an index object names it
// (writer.drain), and only then write the manifest. A backup killed at any
// point before the manifest leaves no backup, only packs (indexed: the next
// one reuses their chunks; not indexed: prune removes them).
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Vault } from './vault.ts';
import type { VaultLock } from './lock.ts';
import { nextLink, newestBackup, writeHead } from './catalog.ts';
import { BackupWriter, type WriterStats } from './writer.ts';
import { type BackupType, type Entry, type Manifest, type ManifestHeader, manifestKey } from './manifest.ts';
import { EntryLog, manifestChunks, readEntries, type StoredEntries } from './entry-log.ts';
import type { ComponentConfig, MemvaultConfig } from './config.ts';
import { resolvePath } from './config.ts';
import type { Driver, Logger } from '../components/types.ts';
import { BackupRacedError, LockedError, NotFoundError, UsageError } from './errors.ts';
import type { Clock } from './ports.ts';
import { systemClock } from './ports.ts';
import { pausePoint } from './pause.ts';
import type { KnownChunks } from './chunk-index.ts';
import { runAfterHooks, runBeforeHooks } from '../components/hooks.ts';

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
  /**
   * A backup lock the caller holds for the whole run, and the chunk ids it listed
   * under that lock (shared by the components of the run). Without them each
   * component takes its own lock and lists the chunks under it.
   */
  held?: { lock: VaultLock; known: KnownChunks };
  /** Wait this long for a running prune to finish. @default 10 minutes */
  lockWaitMs?: number;
  onProgress?: (component: string, s: WriterStats) => void;
}

async function* noEntries(): AsyncGenerator<Entry> {}

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

export async function acquireBackupLock(vault: Vault, waitMs: number, kind: 'backup' | 'replicate' = 'backup'): Promise<VaultLock> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      return await vault.lock(kind);
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
  const where = String((settings as { path?: unknown }).path ?? '');
  await runBeforeHooks(settings, 'beforeBackup', { component, kind: settings.kind, location: where });
  let outcome: BackupOutcome | undefined;
  try {
    outcome = await backupUnderLock(deps, component, type, runId, settings, driver);
  } finally {
    // After-hooks run whatever happened (a service stopped before the backup starts again).
    const failed = await runAfterHooks(settings, 'afterBackup', { component, kind: settings.kind, location: where, result: outcome ? 'ok' : 'failed' });
    if (failed.length && outcome) outcome.warnings.push(...failed);
    else if (failed.length) log.warn('afterBackup hooks failed after a failed backup', { component, failed });
  }
  return outcome;
}

async function backupUnderLock(deps: BackupDeps, component: string, type: BackupType, runId: string | undefined, settings: ComponentConfig, driver: Driver<any>): Promise<BackupOutcome> {
  const { cfg, vault, log } = deps;
  const clock = deps.clock ?? systemClock;
  const started = clock.now();
  // What the backup skips as already stored is decided under its lock, never from an earlier list.
  const own = deps.held ? undefined : await acquireBackupLock(vault, deps.lockWaitMs ?? 10 * 60_000);
  const lock = deps.held?.lock ?? own!;
  try {
    const known = deps.held?.known ?? await vault.listChunks();
    if (!deps.held) pausePoint('backup-listed');
    const latest = type !== 'full' ? await newestBackup(vault, component, started) : null;
    const parent = latest ? await vault.readManifestHeader(latest.key) : undefined;
    const writer = new BackupWriter(vault, known);
    const entryLog = new EntryLog(writer);
    if (deps.onProgress) writer.onProgress = (s) => deps.onProgress!(component, s);
    log.info('backup started', { component, type, parent: parent?.id });
    let result;
    let stored: StoredEntries;
    try {
      result = await driver.backup({
        component,
        settings,
        type,
        parent,
        parentEntries: () => (parent ? readEntries(vault, parent) : noEntries()),
        entries: entryLog,
        writer,
        resolve: (p) => resolvePath(cfg, p),
        log,
      });
      // A driver adds its entries to the log as it goes (files) or returns them (the others).
      for (const e of result.entries) await entryLog.add(e);
      stored = await entryLog.finish();
      await writer.drain();
    } finally {
      // The chunk-pool workers stop on every path (a long-running scheduler keeps none idle).
      await writer.close().catch(() => undefined);
    }
    const finished = clock.now();
    const id = newBackupId(started);
    const key = manifestKey(component, started, type, id);
    const manifest: ManifestHeader = {
      format: stored.entryParts ? 'memvault-manifest/2' : 'memvault-manifest/1',
      id,
      component,
      kind: settings.kind,
      type,
      runId,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      parent: parent?.id,
      host: os.hostname(),
      ...(stored.entryParts ? { entryParts: stored.entryParts } : { entries: stored.entries }),
      driver: result.meta,
      stats: { ...writer.stats, durationMs: finished.getTime() - started.getTime() },
      warnings: result.warnings,
    };
    manifest.stats.bytesStored += (await commitBackup(vault, key, manifest, { lock, now: finished })).bytes;
    log.info('backup finished', { component, backupId: id, ...manifest.stats, warnings: result.warnings.length });
    return {
      component, kind: settings.kind, backupId: id, manifestKey: key, type, parent: parent?.id,
      startedAt: manifest.startedAt, finishedAt: manifest.finishedAt, stats: manifest.stats, warnings: result.warnings,
    };
  } finally {
    // A lock that cannot be removed (storage down) expires on its own; it must not hide the
    // backup's own outcome or error.
    await own?.release().catch((err: unknown) => log.warn('vault lock not released', { component, error: (err as Error).message }));
  }
}

/**
 * Records a finished backup: links it into its component's chain, writes the
 * manifest and then the head. If the lock the backup ran under may have been
 * taken as dead (process paused, lock object removed), or `recheck` asks for
 * it, every chunk the manifest needs is first confirmed present: a prune that
 * ran meanwhile makes the backup fail, never record chunks that are gone.
 */
export async function commitBackup(vault: Vault, key: string, manifest: ManifestHeader, o: { lock?: VaultLock; recheck?: string; now?: Date } = {}): Promise<{ bytes: number; digest: string }> {
  const why = o.recheck ?? (o.lock && !(await o.lock.held()) ? `its vault lock lapsed (${o.lock.lostReason})` : undefined);
  if (why) await confirmChunks(vault, manifest, why);
  manifest.chain = await nextLink(vault, manifest.component, o.now);
  const w = await vault.writeManifest(key, manifest);
  await writeHead(vault, manifest.component, manifest.chain, key, manifest.id, w.digest, manifest.startedAt);
  return w;
}

async function confirmChunks(vault: Vault, m: ManifestHeader, why: string): Promise<void> {
  const present = await vault.listChunks();
  const missing = new Set<string>();
  for await (const c of manifestChunks(vault, m)) if (!present.has(c.id)) missing.add(c.id);
  if (missing.size > 0) {
    throw new BackupRacedError(
      `backup of ${m.component} not recorded: ${missing.size} chunk(s) it needs (e.g. ${[...missing][0]}) are no longer in ${vault.storage.url}; ${why}, and a prune removed them meanwhile. Run the backup again`,
    );
  }
}
