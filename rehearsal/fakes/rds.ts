// RDS fake (also DocumentDB, which is served by the same API under the rds
// signing name): instances, clusters and their manual snapshots per region,
// with the lifecycles the snapshot drivers poll through:
//   - a snapshot is 'creating' and becomes 'available' after `steps` Describe
//     calls that return it (PercentProgress rising); a cross-region copy is
//     'pending', then 'copying', then 'available'; a restored instance or
//     cluster, or an instance created in a cluster, is 'creating' then
//     'available'; a deleted instance or cluster is 'deleting' then gone;
//   - at most 5 cross-region snapshot copies in flight per destination region
//     (per kind): the 6th is SnapshotQuotaExceeded with AWS's "concurrent"
//     wording; at most `snapshotQuota` manual snapshots a region;
//   - AWS's error codes (the wire codes the SDK turns into *Fault classes):
//     DBInstanceNotFound, DBClusterNotFoundFault, DBSnapshotNotFound,
//     DBClusterSnapshotNotFoundFault, *AlreadyExists, InvalidDBInstanceState
//     (a snapshot of a busy instance, e.g. one in its backup window: see
//     setInstanceStatus), InvalidDBClusterStateFault, InvalidDBSnapshotState,
//     KMSKeyNotAccessibleFault, InvalidRestoreFault, InvalidParameterValue;
//   - Describe* page with MaxRecords (20..100) and Marker.
// IAM: rds:<Operation> on each resource the call names (db, cluster,
// snapshot, cluster-snapshot ARNs, db:* / snapshot:* for unfiltered
// listings), rds:AddTagsToResource for Tags, and for an encrypted copy or
// restore kms:CreateGrant + kms:DescribeKey on the key via rds.REGION.amazonaws.com
// (a denial there is KMSKeyNotAccessibleFault, as RDS reports it).
import { AwsError, XmlList, queryList, queryStructList, type CallContext, type QueryParams, type XmlValue } from './common.ts';
import type { KmsFake } from './kms.ts';

export const RDS_NS = 'http://rds.amazonaws.com/doc/2014-10-31/';

export interface RdsSeed {
  id: string;
  region: string;
  engine: string;
  engineVersion?: string;
  /** KMS key ARN of the storage; unencrypted when absent. */
  kmsKeyId?: string;
  allocatedGiB?: number;
  instanceClass?: string;
}

type Tag = { Key: string; Value: string };

/** What an instance and a cluster both have. */
interface DbResource {
  id: string;
  region: string;
  arn: string;
  engine: string;
  engineVersion: string;
  status: string;
  /** Describe calls left before a pending status turns into the next one. */
  steps: number;
  allocatedGiB: number;
  encrypted: boolean;
  kmsKeyId?: string;
  created: Date;
  tags: Tag[];
}

interface Instance extends DbResource {
  instanceClass: string;
  storageType: string;
  clusterId?: string;
}

type Cluster = DbResource;

interface Snapshot {
  kind: 'instance' | 'cluster';
  id: string;
  region: string;
  arn: string;
  sourceId: string;
  engine: string;
  engineVersion: string;
  status: string;
  steps: number;
  progress: number;
  type: 'manual' | 'automated';
  encrypted: boolean;
  kmsKeyId?: string;
  allocatedGiB: number;
  storageType: string;
  created: Date;
  originalCreated: Date;
  tags: Tag[];
  /** For a copy: the source snapshot's ARN and region. */
  copiedFrom?: { arn: string; region: string; id: string };
}

const VERSIONS: Record<string, string> = {
  postgres: '16.4', mysql: '8.0.39', mariadb: '10.11.9', 'aurora-postgresql': '16.4', 'aurora-mysql': '8.0.mysql_aurora.3.07.1', docdb: '5.0.0',
};

export interface RdsFakeOptions {
  /** Describe calls a creating/copying resource takes to become available. @default 2 */
  steps?: number;
  /** Manual snapshots a region may hold (per kind). @default 100 */
  snapshotQuota?: number;
  /** Cross-region copies in flight per destination region (per kind). @default 5 */
  copyLimit?: number;
}

export class RdsFake {
  private readonly instances: Instance[] = [];
  private readonly clusters: Cluster[] = [];
  private readonly snapshots: Snapshot[] = [];
  private readonly steps: number;
  private readonly quota: number;
  private readonly copyLimit: number;

  constructor(
    readonly account: string,
    seed: { rdsInstances?: RdsSeed[]; rdsClusters?: RdsSeed[] },
    private readonly kms: KmsFake,
    o: RdsFakeOptions = {},
  ) {
    this.steps = o.steps ?? 2;
    this.quota = o.snapshotQuota ?? 100;
    this.copyLimit = o.copyLimit ?? 5;
    for (const s of seed.rdsInstances ?? []) this.instances.push(this.newInstance(s.id, s.region, s, 'available'));
    for (const s of seed.rdsClusters ?? []) {
      this.clusters.push(this.newCluster(s.id, s.region, s, 'available'));
      this.instances.push({ ...this.newInstance(`${s.id}-instance-1`, s.region, s, 'available'), clusterId: s.id });
    }
  }

  private arn(region: string, type: string, id: string): string {
    return `arn:aws:rds:${region}:${this.account}:${type}:${id}`;
  }

  private newInstance(id: string, region: string, s: Partial<RdsSeed> & { engine: string }, status: string): Instance {
    return {
      id, region, arn: this.arn(region, 'db', id), engine: s.engine, engineVersion: s.engineVersion ?? VERSIONS[s.engine] ?? '1.0', status, steps: this.steps,
      instanceClass: s.instanceClass ?? 'db.t4g.medium', allocatedGiB: s.allocatedGiB ?? 20, storageType: 'gp3', encrypted: !!s.kmsKeyId, kmsKeyId: s.kmsKeyId,
      created: new Date(), tags: [],
    };
  }

  private newCluster(id: string, region: string, s: Partial<RdsSeed> & { engine: string }, status: string): Cluster {
    return {
      id, region, arn: this.arn(region, 'cluster', id), engine: s.engine, engineVersion: s.engineVersion ?? VERSIONS[s.engine] ?? '1.0', status, steps: this.steps,
      allocatedGiB: s.allocatedGiB ?? 1, encrypted: !!s.kmsKeyId, kmsKeyId: s.kmsKeyId, created: new Date(), tags: [],
    };
  }

  /** Puts an instance into a state (e.g. 'backing-up' during its backup window) to rehearse what a busy source does. */
  setInstanceStatus(region: string, id: string, status: string): void {
    const i = this.instances.find((x) => x.region === region && x.id === id);
    if (!i) throw new Error(`no RDS instance ${id} in ${region} in the rehearsal`);
    i.status = status;
  }

  /** The snapshots of a region (for assertions). */
  listSnapshots(region: string): { kind: string; id: string; status: string; tags: Tag[]; kmsKeyId?: string }[] {
    return this.snapshots.filter((s) => s.region === region).map((s) => ({ kind: s.kind, id: s.id, status: s.status, tags: s.tags, kmsKeyId: s.kmsKeyId }));
  }

  // ---- lifecycle: each Describe that returns a resource moves it on ----

  private advanceSnapshot(s: Snapshot): void {
    if (s.status === 'available') return;
    s.steps--;
    if (s.copiedFrom && s.status === 'pending') {
      s.status = 'copying';
      return;
    }
    s.progress = Math.min(100, Math.round(100 * (1 - s.steps / this.steps)));
    if (s.steps <= 0) {
      s.status = 'available';
      s.progress = 100;
    }
  }

  private advance(r: Instance | Cluster): void {
    if (r.status === 'creating' || r.status === 'deleting') {
      r.steps--;
      if (r.steps <= 0) {
        if (r.status === 'deleting') {
          if ('instanceClass' in r) this.instances.splice(this.instances.indexOf(r as Instance), 1);
          else this.clusters.splice(this.clusters.indexOf(r as Cluster), 1);
          return;
        }
        r.status = 'available';
      }
    }
  }

  // ---- lookups ----

  private instance(region: string, id: string): Instance {
    const i = this.instances.find((x) => x.region === region && x.id === id);
    if (!i) throw new AwsError('DBInstanceNotFound', `DBInstance ${id} not found.`, 404);
    return i;
  }

  private cluster(region: string, id: string): Cluster {
    const k = this.clusters.find((x) => x.region === region && x.id === id);
    if (!k) throw new AwsError('DBClusterNotFoundFault', `DBCluster ${id} not found.`, 404);
    return k;
  }

  /** A snapshot by id or ARN; an ARN may name another region (the source of a cross-region copy). */
  private snapshot(kind: Snapshot['kind'], region: string, idOrArn: string): Snapshot {
    const m = /^arn:aws[a-z-]*:rds:([a-z0-9-]+):\d{12}:(?:snapshot|cluster-snapshot):(.+)$/.exec(idOrArn);
    const [r, id] = m ? [m[1], m[2]] : [region, idOrArn];
    const s = this.snapshots.find((x) => x.kind === kind && x.region === r && x.id === id);
    if (!s) {
      throw kind === 'instance'
        ? new AwsError('DBSnapshotNotFound', `DBSnapshot ${id} not found.`, 404)
        : new AwsError('DBClusterSnapshotNotFoundFault', `DBClusterSnapshot ${id} not found.`, 404);
    }
    return s;
  }

  private keyCheck(ctx: CallContext, keyId: string): string {
    const k = this.kms.find(keyId, ctx.region);
    if (!k) throw new AwsError('KMSKeyNotAccessibleFault', `The specified KMS key [${keyId}] does not exist, is not enabled or you do not have permissions to access it.`);
    try {
      for (const op of ['CreateGrant', 'DescribeKey']) this.kms.authorize(ctx, op, k, { keyId, viaService: `rds.${ctx.region}.amazonaws.com` });
    } catch (err) {
      if (err instanceof AwsError && err.accessDenied) {
        throw new AwsError('KMSKeyNotAccessibleFault', `The specified KMS key [${keyId}] does not exist, is not enabled or you do not have permissions to access it. (${err.message})`, 400, { accessDenied: true });
      }
      throw err;
    }
    if (k.state !== 'Enabled') throw new AwsError('KMSKeyNotAccessibleFault', `The specified KMS key [${keyId}] does not exist, is not enabled or you do not have permissions to access it.`);
    return k.arn;
  }

  /** A create or restore request's tags as IAM sees them (conditions on aws:RequestTag apply to the whole request). */
  private requestTags(p: QueryParams): Record<string, string | string[]> {
    return requestTagContext(queryStructList(p, 'Tags', 'Tag').map((t) => ({ Key: t.get('Key') ?? '', Value: t.get('Value') ?? '' })));
  }

  private tagsOf(p: QueryParams, ctx: CallContext, resourceArn: string): Tag[] {
    const tags = queryStructList(p, 'Tags', 'Tag').map((t) => ({ Key: t.get('Key') ?? '', Value: t.get('Value') ?? '' }));
    // IAM sees a create's tags as request tags (aws:RequestTag/<key>, aws:TagKeys), as AWS evaluates them.
    if (tags.length > 0) ctx.authorize('rds:AddTagsToResource', resourceArn, requestTagContext(tags));
    return tags;
  }

  private page<T>(p: QueryParams, items: T[]): { page: T[]; marker?: string } {
    const max = p.has('MaxRecords') ? Number(p.get('MaxRecords')) : 100;
    if (!Number.isInteger(max) || max < 20 || max > 100) throw new AwsError('InvalidParameterValue', `Invalid value ${p.get('MaxRecords')} for MaxRecords. Must be between 20 and 100`);
    let start = 0;
    const marker = p.get('Marker');
    if (marker) {
      start = Number(Buffer.from(marker, 'base64url').toString('utf8').replace(/^m:/, ''));
      if (!Number.isInteger(start) || start < 0) throw new AwsError('InvalidParameterValue', 'Invalid Marker');
    }
    const page = items.slice(start, start + max);
    const end = start + page.length;
    return { page, marker: end < items.length ? Buffer.from(`m:${end}`).toString('base64url') : undefined };
  }

  private filters(p: QueryParams): Map<string, string[]> {
    return new Map(queryStructList(p, 'Filters', 'Filter').map((f) => [f.get('Name') ?? '', [...f.entries()].filter(([k]) => k.startsWith('Values.Value.')).map(([, v]) => v)]));
  }

  handle(op: string, p: QueryParams, ctx: CallContext): Record<string, XmlValue> {
    const region = ctx.region;
    switch (op) {
      case 'DescribeDBInstances': {
        const id = p.get('DBInstanceIdentifier');
        const f = this.filters(p);
        ctx.authorize('rds:DescribeDBInstances', this.arn(region, 'db', id ?? '*'));
        let list = this.instances.filter((i) => i.region === region);
        if (id) list = [this.instance(region, id)];
        if (f.has('db-cluster-id')) list = list.filter((i) => i.clusterId && f.get('db-cluster-id')!.some((v) => v === i.clusterId || v === this.arn(region, 'cluster', i.clusterId!)));
        if (f.has('db-instance-id')) list = list.filter((i) => f.get('db-instance-id')!.some((v) => v === i.id || v === i.arn));
        const { page, marker } = this.page(p, list);
        const out = { DBInstances: new XmlList('DBInstance', page.map((i) => this.instanceXml(i))), Marker: marker };
        for (const i of page) this.advance(i);
        return out;
      }
      case 'DescribeDBClusters': {
        const id = p.get('DBClusterIdentifier');
        ctx.authorize('rds:DescribeDBClusters', this.arn(region, 'cluster', id ?? '*'));
        const list = id ? [this.cluster(region, id)] : this.clusters.filter((k) => k.region === region);
        const { page, marker } = this.page(p, list);
        const out = { DBClusters: new XmlList('DBCluster', page.map((k) => this.clusterXml(k))), Marker: marker };
        for (const k of page) this.advance(k);
        return out;
      }
      case 'DescribeDBInstanceAutomatedBackups': {
        const id = p.get('DBInstanceIdentifier');
        ctx.authorize('rds:DescribeDBInstanceAutomatedBackups', this.arn(region, 'auto-backup', '*'));
        const list = this.instances.filter((i) => i.region === region && !i.clusterId && (!id || i.id === id));
        return {
          DBInstanceAutomatedBackups: new XmlList('DBInstanceAutomatedBackup', list.map((i) => ({
            DBInstanceArn: i.arn, DBInstanceIdentifier: i.id, Region: i.region, Status: 'active', Engine: i.engine, AllocatedStorage: i.allocatedGiB,
            RestoreWindow: { EarliestTime: i.created, LatestTime: latestRestorable() },
          }))),
        };
      }
      case 'CreateDBSnapshot':
      case 'CreateDBClusterSnapshot': {
        const cluster = op === 'CreateDBClusterSnapshot';
        const sourceId = p.get(cluster ? 'DBClusterIdentifier' : 'DBInstanceIdentifier') ?? '';
        const id = p.get(cluster ? 'DBClusterSnapshotIdentifier' : 'DBSnapshotIdentifier') ?? '';
        const arn = this.arn(region, cluster ? 'cluster-snapshot' : 'snapshot', id);
        ctx.authorize(`rds:${op}`, this.arn(region, cluster ? 'cluster' : 'db', sourceId));
        ctx.authorize(`rds:${op}`, arn);
        const tags = this.tagsOf(p, ctx, arn);
        const src = cluster ? this.cluster(region, sourceId) : this.instance(region, sourceId);
        if (src.status !== 'available') {
          throw cluster
            ? new AwsError('InvalidDBClusterStateFault', `Cannot create a snapshot because the DB cluster ${sourceId} is not currently in the available state (it is ${src.status}).`)
            : new AwsError('InvalidDBInstanceState', `Cannot create a snapshot because the database instance ${sourceId} is not currently in the available state (it is ${src.status}).`);
        }
        const kind = cluster ? 'cluster' : 'instance';
        if (this.snapshots.some((s) => s.kind === kind && s.region === region && s.id === id)) {
          throw cluster ? new AwsError('DBClusterSnapshotAlreadyExistsFault', `Cannot create the cluster snapshot because one with the identifier ${id} already exists.`)
            : new AwsError('DBSnapshotAlreadyExists', `Cannot create the snapshot because a snapshot with the identifier ${id} already exists.`);
        }
        this.quotaCheck(kind, region);
        const now = new Date();
        const s: Snapshot = {
          kind, id, region, arn, sourceId, engine: src.engine, engineVersion: src.engineVersion, status: 'creating', steps: this.steps, progress: 0, type: 'manual',
          encrypted: src.encrypted, kmsKeyId: src.kmsKeyId, allocatedGiB: src.allocatedGiB, storageType: 'gp3', created: now, originalCreated: now, tags,
        };
        this.snapshots.push(s);
        return cluster ? { DBClusterSnapshot: this.snapshotXml(s) } : { DBSnapshot: this.snapshotXml(s) };
      }
      case 'DescribeDBSnapshots':
      case 'DescribeDBClusterSnapshots': {
        const cluster = op === 'DescribeDBClusterSnapshots';
        const kind = cluster ? 'cluster' : 'instance';
        const id = p.get(cluster ? 'DBClusterSnapshotIdentifier' : 'DBSnapshotIdentifier');
        const sourceId = p.get(cluster ? 'DBClusterIdentifier' : 'DBInstanceIdentifier');
        const type = p.get('SnapshotType');
        const f = this.filters(p);
        ctx.authorize(`rds:${op}`, id ? this.arn(region, cluster ? 'cluster-snapshot' : 'snapshot', id) : sourceId ? this.arn(region, cluster ? 'cluster' : 'db', sourceId) : this.arn(region, cluster ? 'cluster-snapshot' : 'snapshot', '*'));
        let list = this.snapshots.filter((s) => s.kind === kind && s.region === region);
        if (id) list = [this.snapshot(kind, region, id)];
        if (sourceId) list = list.filter((s) => s.sourceId === sourceId);
        if (type) list = list.filter((s) => s.type === type);
        const idFilter = f.get(cluster ? 'db-cluster-snapshot-id' : 'db-snapshot-id');
        if (idFilter) list = list.filter((s) => idFilter.includes(s.id) || idFilter.includes(s.arn));
        const srcFilter = f.get(cluster ? 'db-cluster-id' : 'db-instance-id');
        if (srcFilter) list = list.filter((s) => srcFilter.includes(s.sourceId));
        const typeFilter = f.get('snapshot-type');
        if (typeFilter) list = list.filter((s) => typeFilter.includes(s.type));
        const { page, marker } = this.page(p, list);
        const out = cluster
          ? { DBClusterSnapshots: new XmlList('DBClusterSnapshot', page.map((s) => this.snapshotXml(s))), Marker: marker }
          : { DBSnapshots: new XmlList('DBSnapshot', page.map((s) => this.snapshotXml(s))), Marker: marker };
        for (const s of page) this.advanceSnapshot(s);
        return out;
      }
      case 'CopyDBSnapshot':
      case 'CopyDBClusterSnapshot': {
        const cluster = op === 'CopyDBClusterSnapshot';
        const kind = cluster ? 'cluster' : 'instance';
        const sourceRef = p.get(cluster ? 'SourceDBClusterSnapshotIdentifier' : 'SourceDBSnapshotIdentifier') ?? '';
        const id = p.get(cluster ? 'TargetDBClusterSnapshotIdentifier' : 'TargetDBSnapshotIdentifier') ?? '';
        const arn = this.arn(region, cluster ? 'cluster-snapshot' : 'snapshot', id);
        ctx.authorize(`rds:${op}`, arn);
        const tags = this.tagsOf(p, ctx, arn);
        const src = this.snapshot(kind, region, sourceRef);
        const crossRegion = src.region !== region;
        if (src.status !== 'available') {
          throw cluster ? new AwsError('InvalidDBClusterSnapshotStateFault', `Snapshot ${src.id} is not in available state (it is ${src.status}).`)
            : new AwsError('InvalidDBSnapshotState', `Snapshot ${src.id} is not in available state (it is ${src.status}).`);
        }
        if (this.snapshots.some((s) => s.kind === kind && s.region === region && s.id === id)) {
          throw cluster ? new AwsError('DBClusterSnapshotAlreadyExistsFault', `Cannot copy the cluster snapshot because one with the identifier ${id} already exists.`)
            : new AwsError('DBSnapshotAlreadyExists', `Cannot copy the snapshot because a snapshot with the identifier ${id} already exists.`);
        }
        const keyId = p.get('KmsKeyId');
        if (cluster && keyId && !src.encrypted) {
          throw new AwsError('InvalidParameterCombination', 'KmsKeyId cannot be specified when copying an unencrypted DB cluster snapshot.');
        }
        if (crossRegion && src.encrypted && !keyId) {
          throw new AwsError('InvalidParameterValue', `KmsKeyId is required to copy the encrypted snapshot ${src.id} to ${region}: a KMS key of ${src.region} cannot be used there.`);
        }
        const keyArn = keyId ? this.keyCheck(ctx, keyId) : src.kmsKeyId;
        if (crossRegion) {
          const inFlight = this.snapshots.filter((s) => s.kind === kind && s.region === region && s.copiedFrom && s.copiedFrom.region !== region && s.status !== 'available').length;
          if (inFlight >= this.copyLimit) {
            throw new AwsError('SnapshotQuotaExceeded', `Cannot copy snapshot ${src.id} to ${region}: the maximum number of concurrent cross-region snapshot copies (${this.copyLimit}) to ${region} are in progress.`);
          }
        }
        this.quotaCheck(kind, region);
        const s: Snapshot = {
          ...src, id, region, arn, status: crossRegion ? 'pending' : 'creating', steps: this.steps + (crossRegion ? 1 : 0), progress: 0,
          type: 'manual', encrypted: src.encrypted || !!keyArn, kmsKeyId: keyArn, created: new Date(), tags,
          copiedFrom: { arn: src.arn, region: src.region, id: src.id },
        };
        this.snapshots.push(s);
        return cluster ? { DBClusterSnapshot: this.snapshotXml(s) } : { DBSnapshot: this.snapshotXml(s) };
      }
      case 'DeleteDBSnapshot':
      case 'DeleteDBClusterSnapshot': {
        const cluster = op === 'DeleteDBClusterSnapshot';
        const id = p.get(cluster ? 'DBClusterSnapshotIdentifier' : 'DBSnapshotIdentifier') ?? '';
        ctx.authorize(`rds:${op}`, this.arn(region, cluster ? 'cluster-snapshot' : 'snapshot', id));
        const s = this.snapshot(cluster ? 'cluster' : 'instance', region, id);
        if (s.status !== 'available') {
          throw cluster ? new AwsError('InvalidDBClusterSnapshotStateFault', `Cannot delete the snapshot ${id} because it is ${s.status}.`)
            : new AwsError('InvalidDBSnapshotState', `Cannot delete the snapshot ${id} because it is ${s.status}.`);
        }
        this.snapshots.splice(this.snapshots.indexOf(s), 1);
        const out = { ...this.snapshotXml(s), Status: 'deleted' };
        return cluster ? { DBClusterSnapshot: out } : { DBSnapshot: out };
      }
      case 'AddTagsToResource':
      case 'ListTagsForResource':
      case 'RemoveTagsFromResource': {
        const arn = p.get('ResourceName') ?? '';
        const added = op === 'AddTagsToResource' ? queryStructList(p, 'Tags', 'Tag').map((t) => ({ Key: t.get('Key') ?? '', Value: t.get('Value') ?? '' })) : [];
        ctx.authorize(`rds:${op}`, arn, op === 'AddTagsToResource' ? requestTagContext(added) : undefined);
        const r = this.byArn(arn);
        if (op === 'AddTagsToResource') {
          for (const t of queryStructList(p, 'Tags', 'Tag')) {
            const key = t.get('Key') ?? '';
            r.tags = [...r.tags.filter((x) => x.Key !== key), { Key: key, Value: t.get('Value') ?? '' }];
          }
          return {};
        }
        if (op === 'RemoveTagsFromResource') {
          const keys = queryList(p, 'TagKeys', 'member');
          r.tags = r.tags.filter((x) => !keys.includes(x.Key));
          return {};
        }
        return { TagList: new XmlList('Tag', r.tags) };
      }
      case 'RestoreDBInstanceFromDBSnapshot': {
        const id = p.get('DBInstanceIdentifier') ?? '';
        const snapId = p.get('DBSnapshotIdentifier') ?? '';
        const arn = this.arn(region, 'db', id);
        ctx.authorize(`rds:${op}`, arn, this.requestTags(p));
        ctx.authorize(`rds:${op}`, this.arn(region, 'snapshot', /:snapshot:(.+)$/.exec(snapId)?.[1] ?? snapId), this.requestTags(p));
        const tags = this.tagsOf(p, ctx, arn);
        const s = this.snapshot('instance', region, snapId);
        if (s.status !== 'available') throw new AwsError('InvalidDBSnapshotState', `Snapshot ${s.id} is not available (it is ${s.status}).`);
        return { DBInstance: this.instanceXml(this.restoreInstance(ctx, id, s, p, tags)) };
      }
      case 'RestoreDBInstanceToPointInTime': {
        const id = p.get('TargetDBInstanceIdentifier') ?? '';
        const sourceId = p.get('SourceDBInstanceIdentifier');
        const backupsArn = p.get('SourceDBInstanceAutomatedBackupsArn');
        const arn = this.arn(region, 'db', id);
        ctx.authorize(`rds:${op}`, arn, this.requestTags(p));
        let src: Instance | undefined;
        if (sourceId) {
          ctx.authorize(`rds:${op}`, this.arn(region, 'db', sourceId), this.requestTags(p));
          src = this.instance(region, sourceId);
        } else if (backupsArn) {
          ctx.authorize(`rds:${op}`, backupsArn, this.requestTags(p));
          throw new AwsError('DBInstanceAutomatedBackupNotFound', `Automated backups ${backupsArn} not found: the rehearsal replicates no automated backups.`, 404);
        } else {
          throw new AwsError('InvalidParameterCombination', 'One of SourceDBInstanceIdentifier, SourceDbiResourceId or SourceDBInstanceAutomatedBackupsArn is required.');
        }
        const tags = this.tagsOf(p, ctx, arn);
        this.pointInTime(p, src.created, 'RestoreTime');
        return { DBInstance: this.instanceXml(this.restoreInstance(ctx, id, src, p, tags)) };
      }
      case 'RestoreDBClusterFromSnapshot':
      case 'RestoreDBClusterToPointInTime': {
        const id = p.get('DBClusterIdentifier') ?? '';
        const arn = this.arn(region, 'cluster', id);
        ctx.authorize(`rds:${op}`, arn, this.requestTags(p));
        let from: { engine: string; engineVersion: string; encrypted: boolean; kmsKeyId?: string; allocatedGiB: number };
        if (op === 'RestoreDBClusterFromSnapshot') {
          const snapId = p.get('SnapshotIdentifier') ?? '';
          ctx.authorize(`rds:${op}`, this.arn(region, 'cluster-snapshot', /:cluster-snapshot:(.+)$/.exec(snapId)?.[1] ?? snapId), this.requestTags(p));
          const s = this.snapshot('cluster', region, snapId);
          if (s.status !== 'available') throw new AwsError('InvalidDBClusterSnapshotStateFault', `Snapshot ${s.id} is not available (it is ${s.status}).`);
          if (p.get('Engine') && p.get('Engine') !== s.engine) throw new AwsError('InvalidParameterCombination', `Engine ${p.get('Engine')} does not match the snapshot's engine ${s.engine}.`);
          from = s;
        } else {
          const sourceId = p.get('SourceDBClusterIdentifier') ?? '';
          ctx.authorize(`rds:${op}`, this.arn(region, 'cluster', sourceId), this.requestTags(p));
          const src = this.cluster(region, sourceId);
          this.pointInTime(p, src.created, 'RestoreToTime');
          from = src;
        }
        const tags = this.tagsOf(p, ctx, arn);
        if (this.clusters.some((k) => k.region === region && k.id === id)) throw new AwsError('DBClusterAlreadyExistsFault', `DB Cluster already exists`);
        const keyId = p.get('KmsKeyId');
        const keyArn = keyId ? this.keyCheck(ctx, keyId) : from.kmsKeyId ? this.keyCheck(ctx, from.kmsKeyId) : undefined;
        const k: Cluster = { ...this.newCluster(id, region, { engine: from.engine, engineVersion: p.get('EngineVersion') ?? from.engineVersion, kmsKeyId: keyArn, allocatedGiB: from.allocatedGiB }, 'creating'), tags };
        this.clusters.push(k);
        return { DBCluster: this.clusterXml(k) };
      }
      case 'CreateDBInstance': {
        const id = p.get('DBInstanceIdentifier') ?? '';
        const clusterId = p.get('DBClusterIdentifier');
        const arn = this.arn(region, 'db', id);
        ctx.authorize(`rds:${op}`, arn, this.requestTags(p));
        if (clusterId) ctx.authorize(`rds:${op}`, this.arn(region, 'cluster', clusterId), this.requestTags(p));
        const tags = this.tagsOf(p, ctx, arn);
        if (!clusterId) throw new AwsError('InvalidParameterCombination', `the rehearsal's RDS creates instances only in a cluster (DBClusterIdentifier)`);
        const k = this.cluster(region, clusterId);
        if (this.instances.some((i) => i.region === region && i.id === id)) throw new AwsError('DBInstanceAlreadyExists', 'DB instance already exists');
        const engine = p.get('Engine') ?? k.engine;
        if (engine !== k.engine) throw new AwsError('InvalidParameterCombination', `Engine ${engine} does not match the cluster's engine ${k.engine}.`);
        const i: Instance = {
          ...this.newInstance(id, region, { engine, engineVersion: k.engineVersion, kmsKeyId: k.kmsKeyId, instanceClass: p.get('DBInstanceClass') }, 'creating'),
          clusterId, tags,
        };
        this.instances.push(i);
        return { DBInstance: this.instanceXml(i) };
      }
      case 'DeleteDBInstance': {
        const id = p.get('DBInstanceIdentifier') ?? '';
        ctx.authorize(`rds:${op}`, this.arn(region, 'db', id));
        const i = this.instance(region, id);
        if (i.status !== 'available') throw new AwsError('InvalidDBInstanceState', `Instance ${id} is not in available state (it is ${i.status}).`);
        if (!i.clusterId && p.get('SkipFinalSnapshot') !== 'true' && !p.get('FinalDBSnapshotIdentifier')) {
          throw new AwsError('InvalidParameterCombination', 'FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.');
        }
        i.status = 'deleting';
        i.steps = this.steps;
        return { DBInstance: this.instanceXml(i) };
      }
      case 'DeleteDBCluster': {
        const id = p.get('DBClusterIdentifier') ?? '';
        ctx.authorize(`rds:${op}`, this.arn(region, 'cluster', id));
        const k = this.cluster(region, id);
        if (this.instances.some((i) => i.region === region && i.clusterId === id && i.status !== 'deleting')) {
          throw new AwsError('InvalidDBClusterStateFault', 'Cluster cannot be deleted, it still contains DB instances in non-deleting state.');
        }
        if (p.get('SkipFinalSnapshot') !== 'true' && !p.get('FinalDBSnapshotIdentifier')) {
          throw new AwsError('InvalidParameterCombination', 'FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.');
        }
        k.status = 'deleting';
        k.steps = this.steps;
        return { DBCluster: this.clusterXml(k) };
      }
    }
    throw new AwsError('InvalidAction', `the rehearsal's RDS does not implement ${op}`, 400);
  }

  private quotaCheck(kind: Snapshot['kind'], region: string): void {
    const n = this.snapshots.filter((s) => s.kind === kind && s.region === region && s.type === 'manual').length;
    if (n >= this.quota) throw new AwsError('SnapshotQuotaExceeded', `Cannot create more than ${this.quota} manual snapshots.`);
  }

  private pointInTime(p: QueryParams, earliest: Date, field: string): void {
    if (p.get('UseLatestRestorableTime') === 'true') return;
    const t = p.get(field);
    if (!t) throw new AwsError('InvalidParameterCombination', `${field} or UseLatestRestorableTime is required.`);
    const when = new Date(t);
    if (Number.isNaN(when.getTime()) || when < earliest || when > latestRestorable()) {
      throw new AwsError('InvalidRestoreFault', `Restore time ${t} is outside the restorable window ${earliest.toISOString()} .. ${latestRestorable().toISOString()}.`);
    }
  }

  private restoreInstance(ctx: CallContext, id: string, from: Pick<Snapshot, 'engine' | 'engineVersion' | 'encrypted' | 'kmsKeyId' | 'allocatedGiB'>, p: QueryParams, tags: Tag[]): Instance {
    if (this.instances.some((i) => i.region === ctx.region && i.id === id)) throw new AwsError('DBInstanceAlreadyExists', 'DB instance already exists');
    const keyArn = from.kmsKeyId ? this.keyCheck(ctx, from.kmsKeyId) : undefined;
    const i: Instance = {
      ...this.newInstance(id, ctx.region, {
        engine: from.engine, engineVersion: from.engineVersion, kmsKeyId: keyArn, allocatedGiB: from.allocatedGiB, instanceClass: p.get('DBInstanceClass'),
      }, 'creating'),
      tags,
    };
    this.instances.push(i);
    return i;
  }

  private byArn(arn: string): { tags: Tag[] } {
    const r = [...this.instances, ...this.clusters, ...this.snapshots].find((x) => x.arn === arn);
    if (r) return r;
    const type = /:rds:[^:]+:\d{12}:([a-z-]+):/.exec(arn)?.[1];
    if (type === 'snapshot') throw new AwsError('DBSnapshotNotFound', `DBSnapshot ${arn} not found.`, 404);
    if (type === 'cluster-snapshot') throw new AwsError('DBClusterSnapshotNotFoundFault', `DBClusterSnapshot ${arn} not found.`, 404);
    if (type === 'cluster') throw new AwsError('DBClusterNotFoundFault', `DBCluster ${arn} not found.`, 404);
    throw new AwsError('DBInstanceNotFound', `DBInstance ${arn} not found.`, 404);
  }

  private instanceXml(i: Instance): Record<string, XmlValue> {
    return {
      DBInstanceIdentifier: i.id, DBInstanceArn: i.arn, DBInstanceClass: i.instanceClass, Engine: i.engine, EngineVersion: i.engineVersion,
      DBInstanceStatus: i.status, AllocatedStorage: i.allocatedGiB, StorageType: i.storageType, StorageEncrypted: i.encrypted, KmsKeyId: i.kmsKeyId,
      DBClusterIdentifier: i.clusterId, InstanceCreateTime: i.created, LatestRestorableTime: i.clusterId ? undefined : latestRestorable(),
      TagList: new XmlList('Tag', i.tags),
    };
  }

  private clusterXml(k: Cluster): Record<string, XmlValue> {
    const members = this.instances.filter((i) => i.region === k.region && i.clusterId === k.id);
    return {
      DBClusterIdentifier: k.id, DBClusterArn: k.arn, Engine: k.engine, EngineVersion: k.engineVersion, Status: k.status, AllocatedStorage: k.allocatedGiB,
      StorageEncrypted: k.encrypted, KmsKeyId: k.kmsKeyId, ClusterCreateTime: k.created, EarliestRestorableTime: k.created, LatestRestorableTime: latestRestorable(),
      DBClusterMembers: new XmlList('DBClusterMember', members.map((m, n) => ({ DBInstanceIdentifier: m.id, IsClusterWriter: n === 0 }))),
      TagList: new XmlList('Tag', k.tags),
    };
  }

  private snapshotXml(s: Snapshot): Record<string, XmlValue> {
    const common = {
      Engine: s.engine, EngineVersion: s.engineVersion, Status: s.status, PercentProgress: s.progress, SnapshotType: s.type, StorageEncrypted: undefined as boolean | undefined,
      Encrypted: undefined as boolean | undefined, KmsKeyId: s.kmsKeyId, AllocatedStorage: s.allocatedGiB, SnapshotCreateTime: s.created, TagList: new XmlList('Tag', s.tags),
    };
    if (s.kind === 'cluster') {
      return {
        DBClusterSnapshotIdentifier: s.id, DBClusterSnapshotArn: s.arn, DBClusterIdentifier: s.sourceId, ...common, StorageEncrypted: s.encrypted,
        SourceDBClusterSnapshotArn: s.copiedFrom?.arn,
      };
    }
    return {
      DBSnapshotIdentifier: s.id, DBSnapshotArn: s.arn, DBInstanceIdentifier: s.sourceId, ...common, Encrypted: s.encrypted, StorageType: s.storageType,
      OriginalSnapshotCreateTime: s.originalCreated, SourceDBSnapshotIdentifier: s.copiedFrom?.arn, SourceRegion: s.copiedFrom?.region,
    };
  }
}

/** RDS restores to within about five minutes of now. */
function latestRestorable(): Date {
  return new Date(Math.floor((Date.now() - 5 * 60_000) / 1000) * 1000);
}

/** The IAM request context of tags a request adds. */
function requestTagContext(tags: Tag[]): Record<string, string | string[]> {
  return { ...Object.fromEntries(tags.map((t) => [`aws:RequestTag/${t.Key}`, t.Value])), 'aws:TagKeys': tags.map((t) => t.Key) };
}
