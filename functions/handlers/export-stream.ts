// export-stream: backs up one component whose driver streams its data into the
// vault (sqlite, files, postgres, ...): the core backup (shared vault lock,
// parent lookup, chunks, manifest written last). Also used for the safety
// backup before an in-place restore. A prune holding the vault makes it throw
// LockedError after a short wait, which the state machine retries.
import { z } from 'zod';
import { backupComponent } from '../core/backup.ts';
import { BACKUP_TYPES, type BackupType } from '../core/manifest.ts';
import { PermanentError } from '../core/errors.ts';
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

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<BackupResult> => {
    const e = parseEvent(exportStreamInput, event, 'export-stream input');
    const log = invocationLog(deps, 'export-stream', e);
    const settings = componentSettings(deps.cfg, e.component);
    if (deps.driverFor(settings.kind).mode !== 'stream') {
      throw new PermanentError(`component ${e.component} (kind ${settings.kind}) is backed up by a service snapshot, not a stream export`);
    }
    const vault = await deps.openVault('primary');
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
