// Shared by plan-partitions, backup-partition and merge-partitions (not a
// handler itself): what a partitioned driver is, the inline budget of the
// state payload, and the staging area (core/staging.ts).
import type { Driver } from '../components/types.ts';
import type { Partition, PartitionContext, PartitionResult } from '../components/s3-prefix.ts';

export { STAGING_ROOT, STAGING_MAX_AGE_MS, stagingPrefix, putStaged, getStaged, removeStaging, listStaging, planMarker, type PlanMarker, type StagingRun } from '../core/staging.ts';

/** Budget of all partitions' inline entries together in the state (the rest of 256 KiB is for everything else). */
export const INLINE_BUDGET_BYTES = 96 * 1024;

/** A driver that can back up in partitions (s3-prefix). */
export interface PartitionedDriver extends Driver<any> {
  planPartitions(settings: unknown): Promise<Partition[]>;
  backupPartition(settings: unknown, partition: Pick<Partition, 'startAfter' | 'endKey'>, ctx: PartitionContext): Promise<PartitionResult>;
}

export function isPartitionedDriver(d: Driver<any>): d is PartitionedDriver {
  return typeof (d as Partial<PartitionedDriver>).planPartitions === 'function' && typeof (d as Partial<PartitionedDriver>).backupPartition === 'function';
}
