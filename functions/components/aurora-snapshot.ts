// aurora-snapshot: an Aurora (PostgreSQL / MySQL) or Amazon DocumentDB cluster
// backed up by the service's own manual cluster snapshot, copied to the DR
// region under the DR KMS key; the vault keeps the record (see
// snapshot-common.ts for the steps, the error mapping and retention).
//
// DocumentDB goes through the RDS API (@aws-sdk/client-rds), not
// @aws-sdk/client-docdb: DocumentDB's management API *is* the RDS API (same
// endpoint rds.<region>.amazonaws.com, same API version 2014-10-31, same SigV4
// service name "rds", same cross-region pre-signed URL middleware); client-docdb
// is a typed subset of the same operations. One client gives one code path,
// one error mapping and one mock for both engines; the cluster's Engine
// ("docdb", "aurora-postgresql", "aurora-mysql") is recorded and passed back
// on restore, and no Aurora-only parameter is sent unless configured.
//
// Restore always creates a NEW cluster: RestoreDBClusterFromSnapshot (or, with
// target option pointInTime inside EarliestRestorableTime..LatestRestorableTime,
// RestoreDBClusterToPointInTime with a full copy), then CreateDBInstance for its
// members (<clusterId>-1..N, class from the options, the restore defaults, or
// the source writer's class recorded at backup). A retried restore continues a
// cluster it restored itself for the same backup (tag memvault:restored-from).
// Point in time is available in the source region only (Aurora and DocumentDB
// replicate across regions with global clusters, not with automated backups).
import type { DBClusterSnapshot, Tag } from '@aws-sdk/client-rds';
import { z } from 'zod';
import type { DriverRestoreContext, DriverValidateContext, ValidationCheck } from './types.ts';
import { report } from './types.ts';
import {
  type ErrCtx,
  type PruneSnapshotsOptions,
  restoreRegion,
  sharedSnapshotMembers,
  pruneWith,
  type ServiceSnapshotDriver,
  type PruneSnapshotsReport,
  type SnapInfo,
  type SnapshotApi,
  type SnapshotDeps,
  type SourceInfo,
  TAG_COMPONENT,
  TAG_MANAGED,
  call,
  callOrUndefined,
  pages,
  restorableSnapshot,
  validationWait,
  check,
  checkWindow,
  defaultDeps,
  errorCode,
  identifier,
  parsePointInTime,
  parseTarget,
  rdsSdk,
  readMeta,
  restoreTargetShape,
  snapshotCommonShape,
  snapshotIn,
  tagsOf,
  waitForStatus,
} from './snapshot-common.ts';
import { NotFoundError, PermanentError, UsageError } from '../core/errors.ts';

const restoreDefaults = {
  /** Instance class of the restored members. @default the source writer's class */
  instanceClass: z.string().optional(),
  /** Members to create in the restored cluster. @default 1 */
  instances: z.number().int().min(1).max(16).optional(),
  subnetGroup: z.string().optional(),
  securityGroupIds: z.array(z.string()).optional(),
  clusterParameterGroup: z.string().optional(),
  /** DB parameter group of the members (Aurora only). */
  parameterGroup: z.string().optional(),
};

export const auroraSnapshotSchema = z.object({
  /** The source DB cluster identifier (Aurora or DocumentDB). */
  clusterId: identifier,
  ...snapshotCommonShape,
  /** Defaults for restores (target options override them); `dr` overrides them for restores in drRegion. */
  restore: z.object({
    ...restoreDefaults,
    dr: z.object(restoreDefaults).strict().optional(),
  }).strict().default({}),
});
export type AuroraSnapshotSettings = z.infer<typeof auroraSnapshotSchema>;

/** ctx.target.options of a restore / validate. */
export const auroraRestoreTargetSchema = z.object({
  /** Identifier of the NEW cluster; members are <clusterId>-1..N. */
  clusterId: identifier,
  ...restoreTargetShape,
  instances: z.number().int().min(1).max(16).optional(),
  clusterParameterGroup: z.string().optional(),
}).strict();
export type AuroraRestoreTarget = z.infer<typeof auroraRestoreTargetSchema>;

function snapInfo(s: DBClusterSnapshot, region: string): SnapInfo {
  return {
    id: s.DBClusterSnapshotIdentifier ?? '',
    arn: s.DBClusterSnapshotArn ?? '',
    region,
    status: s.Status ?? 'unknown',
    sourceId: s.DBClusterIdentifier ?? '',
    engine: s.Engine,
    engineVersion: s.EngineVersion,
    encrypted: s.StorageEncrypted ?? false,
    kmsKeyId: s.KmsKeyId,
    allocatedGiB: s.AllocatedStorage,
    storageType: s.StorageType,
    createdAt: s.SnapshotCreateTime,
    progress: s.PercentProgress,
    copiedFrom: s.SourceDBClusterSnapshotArn,
    tags: tagsOf(s.TagList),
  };
}

export function clusterApi(deps: SnapshotDeps): SnapshotApi & { describeCluster(c: ErrCtx, id: string): Promise<SourceInfo & { tags: Record<string, string> }> } {
  const rds = async (c: ErrCtx) => deps.client(c.region);
  async function describeCluster(c: ErrCtx, id: string) {
    const R = await rdsSdk();
    const out = await call(c, async () => (await rds(c)).send(new R.DescribeDBClustersCommand({ DBClusterIdentifier: id })));
    const k = out.DBClusters?.[0];
    if (!k) throw new NotFoundError(`DB cluster "${id}" not found in ${c.region}${c.field ? `: check ${c.field}` : ''}`);
    return {
      id, arn: k.DBClusterArn, engine: k.Engine ?? 'unknown', engineVersion: k.EngineVersion, status: k.Status ?? 'unknown',
      encrypted: k.StorageEncrypted ?? false, kmsKeyId: k.KmsKeyId, allocatedGiB: k.AllocatedStorage, storageType: k.StorageType,
      instanceCount: k.DBClusterMembers?.length ?? 0, earliestRestorableTime: k.EarliestRestorableTime, latestRestorableTime: k.LatestRestorableTime,
      tags: tagsOf(k.TagList), writer: k.DBClusterMembers?.find((m) => m.IsClusterWriter)?.DBInstanceIdentifier,
    };
  }
  return {
    resource: 'cluster',
    label: 'DB cluster',
    idField: 'clusterId',
    describeCluster,
    async describeSource(c, id) {
      const R = await rdsSdk();
      const k = await describeCluster(c, id);
      // The writer's class is the restore default; recorded now because the primary region may be gone when we restore.
      let instanceClass: string | undefined;
      if (k.writer) {
        const w = await call({ ...c, op: 'DescribeDBInstances' }, async () => (await rds(c)).send(new R.DescribeDBInstancesCommand({ DBInstanceIdentifier: k.writer })));
        instanceClass = w.DBInstances?.[0]?.DBInstanceClass;
      }
      return { ...k, instanceClass };
    },
    async createSnapshot(c, sourceId, snapshotId, tags) {
      const R = await rdsSdk();
      const out = await call(c, async () => (await rds(c)).send(new R.CreateDBClusterSnapshotCommand({ DBClusterIdentifier: sourceId, DBClusterSnapshotIdentifier: snapshotId, Tags: tags })));
      return snapInfo(out.DBClusterSnapshot ?? { DBClusterSnapshotIdentifier: snapshotId }, c.region);
    },
    async describeSnapshot(c, snapshotId) {
      const R = await rdsSdk();
      const out = await callOrUndefined(c, async () => (await rds(c)).send(new R.DescribeDBClusterSnapshotsCommand({ DBClusterSnapshotIdentifier: snapshotId })));
      const s = out?.DBClusterSnapshots?.[0];
      return s ? snapInfo(s, c.region) : undefined;
    },
    async *listSnapshots(c, sourceId) {
      const R = await rdsSdk();
      for await (const s of pages(c, async (marker) => {
        const out = await (await rds(c)).send(new R.DescribeDBClusterSnapshotsCommand({
          SnapshotType: 'manual', ...(sourceId ? { DBClusterIdentifier: sourceId } : {}), MaxRecords: 100, Marker: marker,
        }));
        return { items: out.DBClusterSnapshots, Marker: out.Marker };
      })) yield snapInfo(s, c.region);
    },
    async copySnapshot(c, o) {
      const R = await rdsSdk();
      const out = await call(c, async () => (await rds(c)).send(new R.CopyDBClusterSnapshotCommand({
        SourceDBClusterSnapshotIdentifier: o.sourceArn,
        TargetDBClusterSnapshotIdentifier: o.targetId,
        // A cluster snapshot copy cannot encrypt an unencrypted snapshot: KmsKeyId with an unencrypted source is an error.
        ...(o.encrypted ? { KmsKeyId: o.kmsKeyId } : {}),
        // The SDK pre-signs the request for the source region (o.sourceRegion, taken from the ARN).
        Tags: o.tags,
      })));
      return snapInfo(out.DBClusterSnapshot ?? { DBClusterSnapshotIdentifier: o.targetId }, c.region);
    },
    async deleteSnapshot(c, snapshotId) {
      const R = await rdsSdk();
      await call(c, async () => (await rds(c)).send(new R.DeleteDBClusterSnapshotCommand({ DBClusterSnapshotIdentifier: snapshotId })));
    },
  };
}

export type AuroraSnapshotDriver = ServiceSnapshotDriver<AuroraSnapshotSettings>;

export function makeAuroraSnapshotDriver(over: Partial<SnapshotDeps> = {}): AuroraSnapshotDriver {
  const deps = defaultDeps(over);
  const api = clusterApi(deps);

  function plan(ctx: DriverRestoreContext<AuroraSnapshotSettings> | DriverValidateContext<AuroraSnapshotSettings>) {
    const o = parseTarget(auroraRestoreTargetSchema, ctx.target.options);
    const meta = readMeta(ctx.manifest, 'cluster');
    const { region, isDr, defaults: d } = restoreRegion(ctx.settings, meta, { region: o.region, name: o.clusterId }, 'clusterId');
    const pick = <K extends keyof AuroraRestoreTarget>(k: K) => (o[k] ?? d[k]) as AuroraRestoreTarget[K];
    const instances = pick('instances') ?? 1;
    const pit = parsePointInTime(o.pointInTime);
    return { o, meta, region, isDr, pick, instances, pit };
  }

  const memberId = (clusterId: string, i: number) => `${clusterId}-${i}`;

  const driver: AuroraSnapshotDriver = {
    kind: 'aurora-snapshot',
    schema: auroraSnapshotSchema,
    ...sharedSnapshotMembers<AuroraSnapshotSettings>(api, deps, (ctx) => driver.validate(ctx)),

    async restore(ctx) {
      const R = await rdsSdk();
      const { o, meta, region, isDr, pick, instances, pit } = plan(ctx);
      const client = await deps.client(region);
      const c = (op: string, subject: string): ErrCtx => ({ component: ctx.component, region, op, subject, field: 'clusterId' });
      const target = `DB cluster "${o.clusterId}"`;
      const instanceClass = pick('instanceClass') ?? meta.instanceClass;
      if (!instanceClass) {
        throw new UsageError(`target.options.instanceClass: required (the backup did not record the source writer's class); or set components.${ctx.component}.restore.instanceClass`);
      }
      const tags: Tag[] = [
        { Key: TAG_MANAGED, Value: 'true' },
        { Key: TAG_COMPONENT, Value: ctx.component },
        { Key: 'memvault:restored-from', Value: ctx.manifest.id },
      ];
      const common = {
        DBClusterIdentifier: o.clusterId,
        DBSubnetGroupName: pick('subnetGroup'),
        VpcSecurityGroupIds: pick('securityGroupIds'),
        DBClusterParameterGroupName: pick('clusterParameterGroup'),
        Port: o.port,
        DeletionProtection: o.deletionProtection,
        Tags: tags,
      };
      let bytes = 0;
      // A retried restore continues the cluster it made for this backup; any other existing cluster is refused.
      const restoring = async (fn: () => Promise<unknown>) => {
        try {
          await fn();
        } catch (err) {
          if (errorCode((err as Error).cause) !== 'DBClusterAlreadyExists') throw err;
          const k = await api.describeCluster(c('DescribeDBClusters', target), o.clusterId);
          if (k.tags['memvault:restored-from'] !== ctx.manifest.id) throw err;
          ctx.log.info('cluster already restored for this backup, continuing', { component: ctx.component, clusterId: o.clusterId });
        }
      };
      if (pit) {
        if (isDr) {
          throw new PermanentError(
            `point-in-time restore of DB cluster "${meta.sourceId}" is only possible in its own region ${meta.region}: ` +
            `Aurora and DocumentDB keep automated backups in one region; in ${region} restore from the DR snapshot copy (omit pointInTime)`,
          );
        }
        const src = await api.describeCluster(c('DescribeDBClusters', `DB cluster "${meta.sourceId}"`), meta.sourceId);
        checkWindow(pit, src.earliestRestorableTime, src.latestRestorableTime, `DB cluster "${meta.sourceId}" in ${region}`);
        await restoring(() => call(c('RestoreDBClusterToPointInTime', target), () => client.send(new R.RestoreDBClusterToPointInTimeCommand({
          SourceDBClusterIdentifier: meta.sourceId, RestoreType: 'full-copy',
          ...(pit === 'latest' ? { UseLatestRestorableTime: true } : { RestoreToTime: pit }), ...common,
        }))));
        bytes = (src.allocatedGiB ?? 0) * 2 ** 30;
      } else {
        const rec = await restorableSnapshot(api, (subject) => c('DescribeDBClusterSnapshots', subject), meta, region, ctx.manifest.id);
        await restoring(() => call(c('RestoreDBClusterFromSnapshot', target), () => client.send(new R.RestoreDBClusterFromSnapshotCommand({
          SnapshotIdentifier: rec.id, Engine: meta.engine, EngineVersion: rec.engineVersion ?? meta.engineVersion, ...common,
        }))));
        bytes = (rec.allocatedGiB ?? 0) * 2 ** 30;
      }
      for (let i = 1; i <= instances; i++) {
        const id = memberId(o.clusterId, i);
        try {
          await call(c('CreateDBInstance', `DB instance "${id}" of ${target}`), () => client.send(new R.CreateDBInstanceCommand({
            DBInstanceIdentifier: id, DBClusterIdentifier: o.clusterId, Engine: meta.engine, DBInstanceClass: instanceClass,
            ...(pick('parameterGroup') ? { DBParameterGroupName: pick('parameterGroup') } : {}), Tags: tags,
          })));
        } catch (err) {
          if (errorCode((err as Error).cause) === 'DBInstanceAlreadyExists') continue; // made by an earlier attempt of this restore
          if (err instanceof PermanentError) {
            throw new PermanentError(`${target} was restored in ${region}, but its instance "${id}" could not be created: ${err.message}; create it by hand or delete the cluster`, { cause: err });
          }
          throw err;
        }
      }
      ctx.log.info('cluster restore started', { component: ctx.component, region, clusterId: o.clusterId, instances, pointInTime: o.pointInTime });
      return { location: `${region}/${o.clusterId}`, bytes, entries: 0 };
    },

    async validate(ctx) {
      const R = await rdsSdk();
      const { o, meta, region, instances, pit } = plan(ctx);
      const client = await deps.client(region);
      const { timeoutMs, intervalMs } = validationWait(o, ctx.settings);
      let cluster: SourceInfo | undefined;
      let members: { id: string; status: string }[] = [];
      const status = await waitForStatus(deps, timeoutMs, intervalMs, async () => {
        cluster = await api.describeCluster({ component: ctx.component, region, op: 'DescribeDBClusters', subject: `DB cluster "${o.clusterId}"` }, o.clusterId);
        const out = await call({ component: ctx.component, region, op: 'DescribeDBInstances' }, () =>
          client.send(new R.DescribeDBInstancesCommand({ Filters: [{ Name: 'db-cluster-id', Values: [o.clusterId] }] })));
        members = (out.DBInstances ?? []).map((i) => ({ id: i.DBInstanceIdentifier ?? '', status: i.DBInstanceStatus ?? 'unknown' }));
        const bad = members.find((m) => m.status !== 'available');
        if (cluster.status !== 'available') return cluster.status;
        if (members.length < instances) return 'creating-instances';
        return bad ? bad.status : 'available';
      });
      const checks: ValidationCheck[] = [check(`DB cluster ${o.clusterId} in ${region} and its instances are available`, 'available', status)];
      if (cluster && status === 'available') {
        const rec = pit ? meta.snapshot : snapshotIn(meta, region, ctx.manifest.id);
        checks.push(check('available instances', `>= ${instances}`, members.length, members.length >= instances));
        checks.push(check('engine', meta.engine, cluster.engine));
        checks.push(check('storage encrypted', rec.encrypted, cluster.encrypted));
        if (!pit && rec.encrypted) checks.push(check('KMS key', rec.kmsKeyId, cluster.kmsKeyId));
        if (!pit) checks.push(check('engine version', rec.engineVersion ?? meta.engineVersion, cluster.engineVersion));
      }
      return report(checks);
    },
  };
  return driver;
}

export const auroraSnapshotDriver = makeAuroraSnapshotDriver();

/** Retention for aurora-snapshot components: deletes only memvault's cluster snapshots the policy forgets, in both regions. */
export function pruneSnapshots(o: PruneSnapshotsOptions, over: Partial<SnapshotDeps> = {}): Promise<PruneSnapshotsReport> {
  const deps = defaultDeps(over);
  return pruneWith(clusterApi(deps), deps, o);
}
