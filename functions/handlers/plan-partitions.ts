// plan-partitions: the first step of a fanned-out backup (s3-prefix). Lists
// the source once and cuts it into contiguous key ranges of at most
// maxObjectsPerPartition objects (the Map items of BackupPartitions, from the
// state input, so the Map can run DISTRIBUTED), fixes the parent backup and
// the start time every partition and the merge share, and writes the staging
// plan marker that keeps retention from pruning the run's chunks before its
// manifest exists. Each partition's share of the inline budget decides whether
// its entries travel in the state or in a staging object.
import { z } from 'zod';
import { BACKUP_TYPES, type BackupType } from '../core/manifest.ts';
import { newestBackup } from '../core/catalog.ts';
import { PermanentError } from '../core/errors.ts';
import { type HandlerDeps, componentSettings, invocationLog, json, lazyHandler, parseEvent, traced } from './deps.ts';
import { INLINE_BUDGET_BYTES, isPartitionedDriver, putStaged, stagingPrefix, type PlanMarker } from './partition-common.ts';

export const planPartitionsInput = z.object({
  component: z.string(),
  type: z.enum(BACKUP_TYPES as [BackupType, ...BackupType[]]),
  runId: z.string(),
  ...traced,
});

export interface PartitionItem {
  index: number;
  startAfter: string | null;
  endKey: string | null;
  objects: number;
  bytes: number;
}

export interface PartitionPlan {
  component: string;
  startedAt: string;
  parentKey: string | null;
  stagingPrefix: string;
  /** Entries of one partition up to this many bytes of JSON go back inline; more go to a staging object. */
  inlineLimitBytes: number;
  partitions: PartitionItem[];
}

export function makeHandler(deps: HandlerDeps) {
  return async (event: unknown): Promise<PartitionPlan> => {
    const e = parseEvent(planPartitionsInput, event, 'plan-partitions input');
    const log = invocationLog(deps, 'plan-partitions', e);
    const settings = componentSettings(deps.cfg, e.component);
    const driver = deps.driverFor(settings.kind);
    if (!isPartitionedDriver(driver)) throw new PermanentError(`component ${e.component} (kind ${settings.kind}) cannot be backed up in partitions; only s3-prefix can`);
    const startedAt = deps.clock.now();
    const vault = await deps.openVault('primary');
    const latest = e.type === 'full' ? undefined : (await newestBackup(vault, e.component, deps.clock.now())) ?? undefined;
    const parts = await driver.planPartitions(settings);
    const prefix = stagingPrefix(e.runId, e.component);
    const marker: PlanMarker = { createdAt: startedAt.toISOString(), runId: e.runId, component: e.component, partitions: parts.length };
    await putStaged(vault, `${prefix}plan`, marker);
    log.info('partitions planned', { partitions: parts.length, objects: parts.reduce((a, p) => a + p.objects, 0), parent: latest?.id });
    return json({
      component: e.component, startedAt: startedAt.toISOString(), parentKey: latest?.key ?? null, stagingPrefix: prefix,
      inlineLimitBytes: Math.floor(INLINE_BUDGET_BYTES / Math.max(1, parts.length)),
      partitions: parts.map((p) => ({ index: p.index, startAfter: p.startAfter ?? null, endKey: p.endKey ?? null, objects: p.objects, bytes: p.bytes })),
    });
  };
}

export const handler = lazyHandler(makeHandler);
