// merge-partitions: the last step of a fanned-out backup. Concatenates every
// partition's entries (inline, or read back from their staging objects) in key
// order into ONE manifest (its entries in parts when there are many), written
// last as for every backup, then removes the
// run's staging objects. Two partitions naming the same object would mean
// overlapping ranges: an IntegrityError, nothing written. With "discard": true
// (the failure path) it only removes the staging objects of the run.
//
// Idempotent: the backup id comes from the execution, run, component and
// staging prefix (runBackupId), so a retried merge (a Lambda retry after a
// timeout, a Retry after a transient error) finds the manifest its first
// attempt wrote, returns the same result and records no second backup.
import os from 'node:os';
import { z } from 'zod';
import { BACKUP_TYPES, manifestKey, parseManifestKey, type BackupType, type Entry, type ManifestHeader } from '../core/manifest.ts';
import { EntryLog } from '../core/entry-log.ts';
import { BackupWriter } from '../core/writer.ts';
import { acquireBackupLock, commitBackup } from '../core/backup.ts';
import { IntegrityError } from '../core/errors.ts';
import { appendAll } from '../core/arrays.ts';
import { type HandlerDeps, componentSettings, emitMetrics, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { getStaged, removeStaging } from './partition-common.ts';
import { alreadyRecorded, backupMetrics, resultOf, runBackupId, type BackupResult } from './export-stream.ts';
import type { WriterStats } from '../core/writer.ts';
import { normPrefix } from '../components/s3-prefix.ts';

const outcome = z.object({
  index: z.number().int(),
  objects: z.number(),
  unchanged: z.number(),
  bytes: z.number(),
  stats: z.record(z.string(), z.number()),
  warnings: z.array(z.string()),
  entries: z.array(z.record(z.string(), z.unknown())).nullable(),
  stagingKey: z.string().nullable(),
});

export const mergePartitionsInput = z.object({
  component: z.string(),
  type: z.enum(BACKUP_TYPES as [BackupType, ...BackupType[]]),
  runId: z.string(),
  startedAt: z.string().optional(),
  parentKey: z.string().nullable().optional(),
  stagingPrefix: z.string().startsWith('staging/'),
  partitions: z.array(outcome).default([]),
  discard: z.boolean().default(false),
  ...traced,
});

const STAT_KEYS: (keyof WriterStats)[] = ['bytesRead', 'bytesTotal', 'bytesUnchanged', 'newBytes', 'bytesStored', 'chunksTotal', 'chunksNew', 'entries'];

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<BackupResult | { discarded: number }> => {
    const e = parseEvent(mergePartitionsInput, event, 'merge-partitions input');
    const log = invocationLog(deps, 'merge-partitions', e);
    const vault = await deps.openVault('primary');
    if (e.discard) {
      const n = await removeStaging(vault, e.stagingPrefix);
      log.info('staging discarded after a failure', { objects: n });
      return { discarded: n };
    }
    const settings = componentSettings(deps.cfg, e.component);
    if (!e.startedAt) throw new IntegrityError(`merge-partitions input: startedAt: required (from plan-partitions)`);
    const started = new Date(e.startedAt);
    const id = runBackupId(started, [e.executionId, e.runId, e.component, e.stagingPrefix]);
    const key = manifestKey(e.component, started, e.type, id);
    const earlier = await alreadyRecorded(vault, key, e.runId);
    if (earlier) {
      // An earlier attempt recorded it; its staging may be partly removed already.
      const removed = await removeStaging(vault, e.stagingPrefix);
      log.info('partitioned backup already recorded by an earlier attempt: not written again', { backupId: id, stagingRemoved: removed });
      return json(resultOf(earlier.manifest, key, earlier.manifest.stats.bytesStored + earlier.bytes));
    }
    const parts = [...e.partitions].sort((a, b) => a.index - b.index);
    const warnings: string[] = [];
    const stats = Object.fromEntries(STAT_KEYS.map((k) => [k, 0])) as unknown as WriterStats;
    let unchanged = 0;
    let objects = 0;
    let bytes = 0;
    // The partitions' chunks are in no manifest yet; retention kept them while the run's staging
    // plan was alive. Under a backup lock (the entry parts written here are new chunks too), a
    // plan that is gone (retention took the run for dead) means they must be confirmed present
    // before the manifest is written.
    const lock = await acquireBackupLock(vault, 30_000);
    let manifest: ManifestHeader;
    try {
      // Entries go out in parts as they are read, one partition at a time: a prefix of a million
      // objects is never one list in memory. Partitions list their objects in key order, so the
      // run's entries are in strictly increasing key order; anything else means overlapping ranges.
      const writer = new BackupWriter(vault, await vault.listChunks());
      const out = new EntryLog(writer);
      let last: Buffer | null = null;
      try {
        for (const p of parts) {
          const staged = p.entries
            ? { entries: p.entries as unknown as Entry[], warnings: p.warnings }
            : await getStaged<{ entries: Entry[]; warnings: string[] }>(vault, p.stagingKey ?? `${e.stagingPrefix}${p.index}`);
          appendAll(warnings, staged.warnings);
          for (const en of staged.entries) {
            const k = Buffer.from(en.path);
            if (last && Buffer.compare(last, k) >= 0) {
              throw new IntegrityError(`${e.component}: object ${en.path} ${last.equals(k) ? 'is in more than one partition' : 'is out of key order'} of run ${e.runId}; no manifest written`);
            }
            last = k;
            objects++;
            bytes += en.size;
            await out.add(en);
          }
          for (const k of STAT_KEYS) stats[k] += p.stats[k] ?? 0;
          unchanged += p.unchanged;
        }
        const stored = await out.finish();
        await writer.drain();
        stats.bytesStored += writer.stats.bytesStored;
        stats.chunksNew += writer.stats.chunksNew;
        const finished = deps.clock.now();
        const s = settings as { bucket?: string; prefix?: string };
        manifest = {
          format: stored.entryParts ? 'memvault-manifest/2' : 'memvault-manifest/1', id, component: e.component, kind: settings.kind, type: e.type, runId: e.runId,
          startedAt: started.toISOString(), finishedAt: finished.toISOString(), parent: e.parentKey ? parseManifestKey(e.parentKey)?.id : undefined,
          host: os.hostname(),
          ...(stored.entryParts ? { entryParts: stored.entryParts } : { entries: stored.entries }),
          driver: { source: `s3://${s.bucket}/${normPrefix(s.prefix ?? '')}`, partitions: parts.length, unchanged, objects, bytes },
          stats: { ...stats, entries: objects, durationMs: finished.getTime() - started.getTime() },
          warnings,
        };
      } finally {
        await writer.close().catch(() => undefined);
      }
      const planAlive = await vault.storage.has(`${e.stagingPrefix}plan`);
      // The staging objects were vault objects too, but they are removed now: count only what stays.
      manifest.stats.bytesStored += (await commitBackup(vault, key, manifest, {
        lock, now: new Date(manifest.finishedAt), recheck: planAlive ? undefined : `the run's staging plan ${e.stagingPrefix}plan was removed (the run outlived its time limit)`,
      })).bytes;
    } finally {
      await lock.release().catch(() => undefined); // expires on its own; never hides the outcome
    }
    const removed = await removeStaging(vault, e.stagingPrefix);
    log.info('partitioned backup finished', { backupId: id, partitions: parts.length, objects, stagingRemoved: removed });
    emitMetrics(deps, backupMetrics(e.component, stats.newBytes, manifest.stats.durationMs));
    return json(resultOf(manifest, key, manifest.stats.bytesStored));
  };
}

export const handler = lazyHandler(makeHandler);
