// write-manifest: the last step of a snapshot backup. The driver's finish step
// records the snapshot ids (primary and DR region) and validation figures;
// the manifest is written last, so a snapshot without one is not a backup.
// Idempotent like merge-partitions: the backup id comes from the execution,
// run, component and snapshot start (runBackupId), and a retry after the
// manifest was written returns it without finishing the snapshot again.
import os from 'node:os';
import { manifestKey, type Manifest } from '../core/manifest.ts';
import { acquireBackupLock, commitBackup } from '../core/backup.ts';
import { UsageError } from '../core/errors.ts';
import { type HandlerDeps, emitMetrics, invocationLog, json, lazyHandler, parseEvent } from './deps.ts';
import { snapshotContext, snapshotStepInput } from './snapshot-common.ts';
import { alreadyRecorded, backupMetrics, resultOf, runBackupId, type BackupResult } from './export-stream.ts';

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<BackupResult> => {
    const e = parseEvent(snapshotStepInput, event, 'write-manifest input');
    if (!e.snapshot) throw new UsageError('write-manifest input: snapshot: required (the output of snapshot-poll)');
    const log = invocationLog(deps, 'write-manifest', e);
    const { driver, ctx } = await snapshotContext(deps, e, log);
    const started = new Date(e.snapshot.startedAt);
    const id = runBackupId(started, [e.executionId, e.runId, e.component, e.snapshot.startedAt]);
    const key = manifestKey(e.component, started, e.type, id);
    const vault = ctx.writer.vault;
    const earlier = await alreadyRecorded(vault, key, e.runId);
    if (earlier) {
      log.info('snapshot backup already recorded by an earlier attempt: not written again', { backupId: id });
      return json(resultOf(earlier.manifest, key, earlier.manifest.stats.bytesStored + earlier.bytes));
    }
    const result = await driver.finish(ctx, e.snapshot.state);
    const finished = deps.clock.now();
    const manifest: Manifest = {
      format: 'memvault-manifest/1', id, component: e.component, kind: driver.kind, type: e.type, runId: e.runId,
      startedAt: started.toISOString(), finishedAt: finished.toISOString(), host: os.hostname(),
      entries: result.entries, driver: result.meta,
      stats: { bytesRead: 0, bytesTotal: 0, bytesUnchanged: 0, newBytes: 0, bytesStored: 0, chunksTotal: 0, chunksNew: 0, entries: result.entries.length, durationMs: finished.getTime() - started.getTime() },
      warnings: result.warnings,
    };
    // No chunks to protect (the service keeps the data), but the chain and head are written under a lock too.
    const lock = await acquireBackupLock(vault, 30_000);
    try {
      manifest.stats.bytesStored = (await commitBackup(vault, key, manifest, { lock, now: finished })).bytes;
    } finally {
      await lock.release().catch(() => undefined); // expires on its own; never hides the outcome
    }
    log.info('snapshot backup recorded', { backupId: id });
    // The service keeps the data: nothing new in the vault but the manifest.
    emitMetrics(deps, backupMetrics(e.component, 0, manifest.stats.durationMs));
    return json(resultOf(manifest, key, manifest.stats.bytesStored));
  };
}

export const handler = lazyHandler(makeHandler);
