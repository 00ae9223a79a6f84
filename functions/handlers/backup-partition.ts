// backup-partition: one iteration of the BackupPartitions Map: backs up the
// objects of one key range into the vault (unchanged objects reuse the parent
// backup's chunks) under the vault's shared backup lock (a running prune makes
// it throw LockedError, which the state machine retries). Returns the
// partition's entries inline when they fit its share of the state payload,
// else writes them to staging/<run>/<component>/<n> (sealed) and returns the key.
import { z } from 'zod';
import { BACKUP_TYPES, type BackupType, type Entry } from '../core/manifest.ts';
import { BackupWriter, type WriterStats } from '../core/writer.ts';
import { PermanentError } from '../core/errors.ts';
import { type HandlerDeps, componentSettings, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { isPartitionedDriver, putStaged } from './partition-common.ts';

export const backupPartitionInput = z.object({
  component: z.string(),
  type: z.enum(BACKUP_TYPES as [BackupType, ...BackupType[]]),
  runId: z.string(),
  parentKey: z.string().nullable(),
  stagingPrefix: z.string().startsWith('staging/'),
  inlineLimitBytes: z.number().int().min(0),
  partition: z.object({ index: z.number().int().min(0), startAfter: z.string().nullable(), endKey: z.string().nullable() }).passthrough(),
  ...traced,
});

export interface PartitionOutcome {
  index: number;
  objects: number;
  unchanged: number;
  bytes: number;
  stats: WriterStats;
  warnings: string[];
  /** The entries, when they fit inline. */
  entries: Entry[] | null;
  /** Else the staging object holding { entries, warnings }. */
  stagingKey: string | null;
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<PartitionOutcome> => {
    const e = parseEvent(backupPartitionInput, event, 'backup-partition input');
    const log = invocationLog(deps, 'backup-partition', e);
    const settings = componentSettings(deps.cfg, e.component);
    const driver = deps.driverFor(settings.kind);
    if (!isPartitionedDriver(driver)) throw new PermanentError(`component ${e.component} (kind ${settings.kind}) cannot be backed up in partitions`);
    const vault = await deps.openVault('primary');
    const lock = await vault.lock('backup');
    try {
      const parent = e.parentKey ? await vault.readManifest(e.parentKey) : undefined;
      const writer = new BackupWriter(vault, await vault.listChunks());
      const r = await driver.backupPartition(settings, { startAfter: e.partition.startAfter ?? undefined, endKey: e.partition.endKey ?? undefined }, {
        component: e.component, type: e.type, parent, writer, log,
      });
      await writer.drain();
      const base = { index: e.partition.index, objects: r.objects, unchanged: r.unchanged, bytes: r.bytes, stats: { ...writer.stats } };
      const inline = Buffer.byteLength(JSON.stringify(r.entries)) + Buffer.byteLength(JSON.stringify(r.warnings)) <= e.inlineLimitBytes;
      let out: PartitionOutcome;
      if (inline) {
        out = { ...base, warnings: r.warnings, entries: r.entries, stagingKey: null };
      } else {
        const key = `${e.stagingPrefix}${e.partition.index}`;
        await putStaged(vault, key, { entries: r.entries, warnings: r.warnings });
        out = { ...base, warnings: r.warnings.slice(0, 10), entries: null, stagingKey: key };
      }
      log.info('partition backed up', { partition: e.partition.index, objects: r.objects, unchanged: r.unchanged, newBytes: writer.stats.newBytes, staged: !inline });
      return json(out);
    } finally {
      await lock.release().catch(() => undefined); // expires on its own; never hides the outcome
    }
  };
}

export const handler = lazyHandler(makeHandler);
