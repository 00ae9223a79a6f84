// export-stream: backs up one component whose driver streams its data into the
// vault (sqlite, files, postgres, ...): the core backup (shared vault lock,
// parent lookup, chunks, manifest written last). Also used for the safety
// backup before an in-place restore. A prune holding the vault makes it throw
// LockedError after a short wait, which the state machine retries.
//
// Retries record nothing twice. A step that writes a manifest can be run again
// after it wrote it (a Lambda timeout or crash after the write, a Retry of a
// transient error reported late): merge-partitions and write-manifest name
// the backup deterministically (runBackupId: the execution, run and component)
// and return the manifest an earlier attempt wrote (alreadyRecorded); here, a
// manifest of the component already recorded by this run (same runId and type)
// is returned instead of a second backup.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { backupComponent } from '../core/backup.ts';
import { BACKUP_TYPES, parseCompactTime, parseManifestKey, type BackupType, type Manifest, type ManifestHeader } from '../core/manifest.ts';
import { IntegrityError, PermanentError } from '../core/errors.ts';
import { headKey, writeHead } from '../core/catalog.ts';
import { MAX_MANIFEST_BYTES, type Vault } from '../core/vault.ts';
import { type HandlerDeps, componentSettings, emitMetrics, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { METRICS, seconds } from './metrics.ts';

export const exportStreamInput = z.object({
  component: z.string(),
  type: z.enum(BACKUP_TYPES as [BackupType, ...BackupType[]]),
  runId: z.string().optional(),
  ...traced,
});

export interface BackupResult {
  component: string;
  kind: string;
  backupId: string;
  manifestKey: string;
  type: BackupType;
  parent: string | null;
  startedAt: string;
  finishedAt: string;
  bytesRead: number;
  bytesTotal: number;
  newBytes: number;
  bytesStored: number;
  durationMs: number;
  warnings: string[];
  incomplete: boolean;
}

/** NewBytes and BackupDurationSeconds of one finished backup (stream, snapshot or partitioned). */
export function backupMetrics(component: string, newBytes: number, durationMs: number) {
  return [
    { name: METRICS.newBytes, value: newBytes, dimension: component },
    { name: METRICS.backupDuration, value: seconds(durationMs), dimension: component },
  ];
}

/** The id of a run's backup of one component: the same on every attempt of the step that writes it. */
export function runBackupId(started: Date, identity: (string | undefined)[]): string {
  const h = createHash('sha256').update(identity.map((x) => x ?? '').join('\n')).digest('hex').slice(0, 8);
  return `${started.toISOString().slice(0, 10).replaceAll('-', '')}-${h}`;
}

/**
 * The manifest at `key` when an earlier attempt of this step wrote it (it must
 * open under the vault key and belong to this run), with its head written if
 * that attempt stopped between the two; null when there is none yet.
 */
export async function alreadyRecorded(vault: Vault, key: string, runId: string | undefined): Promise<{ manifest: ManifestHeader; bytes: number } | null> {
  if (!(await vault.storage.has(key))) return null;
  const { manifest, digest } = await vault.readManifestWithDigest(key);
  if (manifest.runId !== runId) throw new IntegrityError(`${key} is already in ${vault.storage.url} for run ${manifest.runId ?? '(none)'}, not ${runId ?? '(none)'}; nothing written`, key);
  if (manifest.chain && !(await vault.storage.has(headKey(manifest.component, manifest.chain.seq, manifest.id)))) {
    await writeHead(vault, manifest.component, manifest.chain, key, manifest.id, digest, manifest.startedAt);
  }
  const bytes = (await vault.storage.get(key, { maxBytes: MAX_MANIFEST_BYTES })).length;
  return { manifest, bytes };
}

/** The step result of a recorded backup, from its manifest alone (so a retry returns what the first attempt did). */
export function resultOf(m: ManifestHeader, key: string, bytesStored: number): BackupResult {
  return {
    component: m.component, kind: m.kind, backupId: m.id, manifestKey: key, type: m.type, parent: m.parent ?? null,
    startedAt: m.startedAt, finishedAt: m.finishedAt,
    bytesRead: m.stats.bytesRead, bytesTotal: m.stats.bytesTotal, newBytes: m.stats.newBytes, bytesStored,
    durationMs: m.stats.durationMs, warnings: m.warnings ?? [], incomplete: (m.warnings ?? []).length > 0,
  };
}

/** A backup of `component` that run `runId` recorded already (an earlier attempt of this step), or null. */
async function recordedByRun(vault: Vault, component: string, type: BackupType, runId: string | undefined): Promise<BackupResult | null> {
  // plan-backup names runs run-<start time>: only manifests from then on can be this run's.
  const m = runId ? /^run-(\d{8}T\d{9}Z)(?:-[0-9a-f]{8})?$/.exec(runId) : null;
  if (!m) return null;
  const since = parseCompactTime(m[1]);
  if (!since) return null;
  for await (const o of vault.storage.list(`manifests/${component}/`)) {
    const ref = parseManifestKey(o.key);
    if (!ref || ref.type !== type || ref.time < since) continue;
    let found;
    try {
      found = await alreadyRecorded(vault, o.key, runId);
    } catch (err) {
      if (err instanceof IntegrityError) continue; // another run's, or not ours: never this run's backup
      throw err;
    }
    // The manifest records what its chunks took; the step's result adds the manifest itself.
    if (found) return resultOf(found.manifest, o.key, found.manifest.stats.bytesStored + found.bytes);
  }
  return null;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<BackupResult> => {
    const e = parseEvent(exportStreamInput, event, 'export-stream input');
    const log = invocationLog(deps, 'export-stream', e);
    const settings = componentSettings(deps.cfg, e.component);
    if (deps.driverFor(settings.kind).mode !== 'stream') {
      throw new PermanentError(`component ${e.component} (kind ${settings.kind}) is backed up by a service snapshot, not a stream export`);
    }
    const vault = await deps.openVault('primary');
    const earlier = await recordedByRun(vault, e.component, e.type, e.runId);
    if (earlier) {
      log.info('backup already recorded by an earlier attempt of this run: not taken again', { backupId: earlier.backupId });
      return json(earlier);
    }
    const o = await backupComponent({ cfg: deps.cfg, vault, driverFor: deps.driverFor, log, clock: deps.clock, lockWaitMs: 30_000 }, e.component, e.type, e.runId);
    emitMetrics(deps, backupMetrics(e.component, o.stats.newBytes, o.stats.durationMs));
    return json({
      component: o.component, kind: o.kind, backupId: o.backupId, manifestKey: o.manifestKey, type: o.type, parent: o.parent ?? null,
      startedAt: o.startedAt, finishedAt: o.finishedAt,
      bytesRead: o.stats.bytesRead, bytesTotal: o.stats.bytesTotal, newBytes: o.stats.newBytes, bytesStored: o.stats.bytesStored,
      durationMs: o.stats.durationMs, warnings: o.warnings, incomplete: o.warnings.length > 0,
    });
  };
}

export const handler = lazyHandler(makeHandler);
