// RDS fake through the gateway with the real SDK client and memvault's real
// rds-snapshot driver: snapshot lifecycle and the cross-region copy under the
// DR key, a busy source, the 5-copies-in-flight limit, Marker pagination,
// Aurora restores with their instances, and the IAM checks of each call.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RDSClient, CopyDBSnapshotCommand, CreateDBSnapshotCommand, CreateDBClusterSnapshotCommand, CreateDBInstanceCommand, DeleteDBClusterCommand,
  DeleteDBSnapshotCommand, DescribeDBClusterSnapshotsCommand, DescribeDBClustersCommand, DescribeDBInstancesCommand, DescribeDBSnapshotsCommand,
  ListTagsForResourceCommand, RestoreDBClusterFromSnapshotCommand,
} from '@aws-sdk/client-rds';
import { startGateway, type Gateway } from '../../rehearsal/gateway.ts';
import { makeRdsSnapshotDriver, rdsSnapshotSchema } from '../../functions/components/rds-snapshot.ts';
import { mapRdsError, SnapshotCopyLimitError, SourceBusyError, type ServiceSnapshotState, type SnapshotMeta } from '../../functions/components/snapshot-common.ts';
import { componentBaseSchema } from '../../functions/core/config.ts';

const ACCOUNT = '111122223333';
const P = 'us-east-1';
const D = 'us-west-2';
const SNAPSHOT_ROLE = `arn:aws:iam::${ACCOUNT}:role/memvault-snapshot`;
const PLANNER = `arn:aws:iam::${ACCOUNT}:role/memvault-planner`;
const SRC_KEY = `arn:aws:kms:${P}:${ACCOUNT}:key/aaaaaaaa-1111-2222-3333-444444444444`;
const DR_KEY = `arn:aws:kms:${D}:${ACCOUNT}:key/bbbbbbbb-1111-2222-3333-444444444444`;
const silent = { info() {}, warn() {}, error() {} };

let gw: Gateway;
const rds = (role: string, region: string) => new RDSClient({ endpoint: gw.url, region, credentials: gw.credentialsFor(role) });
async function nameOf(p: Promise<unknown>): Promise<string> {
  return p.then(() => 'no error', (e: Error) => e.name);
}

beforeAll(async () => {
  gw = await startGateway({
    account: ACCOUNT,
    region: P,
    s3Endpoint: 'http://127.0.0.1:9',
    principals: [
      {
        roleArn: SNAPSHOT_ROLE,
        policies: [{
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Action: [
                'rds:DescribeDBInstances', 'rds:DescribeDBClusters', 'rds:CreateDBSnapshot', 'rds:CreateDBClusterSnapshot', 'rds:DescribeDBSnapshots',
                'rds:DescribeDBClusterSnapshots', 'rds:CopyDBSnapshot', 'rds:AddTagsToResource', 'rds:ListTagsForResource', 'rds:RestoreDBClusterFromSnapshot',
                'rds:CreateDBInstance', 'rds:DeleteDBCluster',
              ],
              Resource: [`arn:aws:rds:*:${ACCOUNT}:db:*`, `arn:aws:rds:*:${ACCOUNT}:cluster:*`, `arn:aws:rds:*:${ACCOUNT}:snapshot:*`, `arn:aws:rds:*:${ACCOUNT}:cluster-snapshot:*`],
            },
            { Effect: 'Allow', Action: ['kms:CreateGrant', 'kms:DescribeKey'], Resource: [SRC_KEY, DR_KEY], Condition: { StringLike: { 'kms:ViaService': 'rds.*.amazonaws.com' } } },
          ],
        }],
      },
      {
        roleArn: PLANNER,
        policies: [{ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'rds:DescribeDBSnapshots', Resource: '*' }] }],
      },
    ],
    resourcePolicies: [],
    kmsKeys: [
      { keyArn: SRC_KEY, region: P, aliases: [] },
      { keyArn: DR_KEY, region: D, aliases: ['alias/memvault-dr'] },
    ],
    topics: [],
    seed: {
      rdsInstances: [
        { id: 'memdb', region: P, engine: 'postgres', kmsKeyId: SRC_KEY, allocatedGiB: 100 },
        { id: 'busydb', region: P, engine: 'postgres' },
        { id: 'bulkdb', region: P, engine: 'mysql' },
      ],
      rdsClusters: [{ id: 'vectors', region: P, engine: 'aurora-postgresql', kmsKeyId: SRC_KEY }],
    },
  });
});

afterAll(async () => {
  await gw?.close();
});

function settingsOf(over: Record<string, unknown> = {}) {
  return componentBaseSchema.extend(rdsSnapshotSchema.shape).strict().parse({
    kind: 'rds-snapshot', instanceId: 'memdb', region: P, drRegion: D, drKmsKeyId: DR_KEY, engine: 'postgres', ...over,
  }) as never;
}

describe('RDS fake with the rds-snapshot driver', () => {
  const driver = makeRdsSnapshotDriver({ client: (r) => rds(SNAPSHOT_ROLE, r), sleep: async () => {}, clock: { now: () => new Date('2026-03-01T03:00:00Z') } });
  const ctx = (over: Record<string, unknown> = {}) =>
    ({ component: 'memory-db', settings: settingsOf(over), type: 'full', writer: undefined as never, resolve: (p: string) => p, log: silent }) as never;

  it('snapshots, waits through creating, copies to the DR region under the DR key, and records both', async () => {
    let state: ServiceSnapshotState = JSON.parse(JSON.stringify(await driver.start(ctx())));
    const seen: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await driver.poll(ctx(), state);
      state = JSON.parse(JSON.stringify(r.state));
      seen.push(state.waitingFor ?? state.phase);
      if (r.ready) break;
    }
    expect(seen.at(-1)).toBe('done');
    expect(seen.some((s) => s.startsWith('snapshot creating'))).toBe(true);
    expect(seen.some((s) => s.startsWith(`copy to ${D}`))).toBe(true);
    const m = (await driver.finish(ctx(), state)).meta as SnapshotMeta;
    expect(m.snapshot).toMatchObject({ id: 'memvault-memory-db-20260301-030000', region: P, kmsKeyId: SRC_KEY, encrypted: true, allocatedGiB: 100, status: 'available' });
    expect(m.drCopy).toMatchObject({ id: 'memvault-memory-db-20260301-030000', region: D, kmsKeyId: DR_KEY, status: 'available' });
    expect(gw.rds.listSnapshots(D)[0].tags).toEqual(expect.arrayContaining([{ Key: 'memvault:managed', Value: 'true' }, { Key: 'memvault:component', Value: 'memory-db' }]));
    // The copy was checked against the DR key, through RDS.
    expect(gw.calls.find((c) => c.operation === 'CopyDBSnapshot')!.checks.map((c) => c.action)).toEqual(['rds:CopyDBSnapshot', 'rds:AddTagsToResource', 'kms:CreateGrant', 'kms:DescribeKey']);
    const tags = await rds(SNAPSHOT_ROLE, D).send(new ListTagsForResourceCommand({ ResourceName: m.drCopy!.arn! }));
    expect(tags.TagList).toEqual(expect.arrayContaining([{ Key: 'memvault:managed', Value: 'true' }]));
  });

  it('a source in its backup window is InvalidDBInstanceState, which the driver retries as SourceBusyError', async () => {
    gw.rds.setInstanceStatus(P, 'busydb', 'backing-up');
    await expect(driver.start(ctx({ instanceId: 'busydb', drKmsKeyId: undefined }))).rejects.toBeInstanceOf(SourceBusyError);
    expect(gw.calls.filter((c) => c.operation === 'CreateDBSnapshot').at(-1)).toMatchObject({ error: 'InvalidDBInstanceState', status: 400 });
    expect(await nameOf(driver.start(ctx({ instanceId: 'nodb', drKmsKeyId: undefined })))).toBe('NotFoundError');
  });
});

describe('RDS fake', () => {
  it('refuses a sixth cross-region copy in flight with the error the driver retries as SnapshotCopyLimitError', async () => {
    const p = rds(SNAPSHOT_ROLE, P);
    const d = rds(SNAPSHOT_ROLE, D);
    for (let i = 0; i < 6; i++) await p.send(new CreateDBSnapshotCommand({ DBInstanceIdentifier: 'bulkdb', DBSnapshotIdentifier: `bulk-${i}` }));
    // Describe until available (each Describe moves a creating snapshot on).
    for (let i = 0; i < 3; i++) await p.send(new DescribeDBSnapshotsCommand({ DBInstanceIdentifier: 'bulkdb' }));
    const arn = (i: number) => `arn:aws:rds:${P}:${ACCOUNT}:snapshot:bulk-${i}`;
    for (let i = 0; i < 5; i++) await d.send(new CopyDBSnapshotCommand({ SourceDBSnapshotIdentifier: arn(i), TargetDBSnapshotIdentifier: `bulk-${i}` }));
    const err = await d.send(new CopyDBSnapshotCommand({ SourceDBSnapshotIdentifier: arn(5), TargetDBSnapshotIdentifier: 'bulk-5' })).catch((e: Error) => e);
    expect((err as Error).name).toBe('SnapshotQuotaExceededFault');
    expect(mapRdsError(err, { component: 'bulk', region: D, op: 'CopyDBSnapshot' })).toBeInstanceOf(SnapshotCopyLimitError);
    // Copies finish on later Describes, and a slot frees.
    for (let i = 0; i < 4; i++) await d.send(new DescribeDBSnapshotsCommand({ DBInstanceIdentifier: 'bulkdb' }));
    const copy = await d.send(new CopyDBSnapshotCommand({ SourceDBSnapshotIdentifier: arn(5), TargetDBSnapshotIdentifier: 'bulk-5' }));
    expect(copy.DBSnapshot).toMatchObject({ Status: 'pending', SourceRegion: P });
  });

  it('pages DescribeDBSnapshots with MaxRecords and Marker, and rejects MaxRecords under 20', async () => {
    const p = rds(SNAPSHOT_ROLE, P);
    for (let i = 0; i < 20; i++) await p.send(new CreateDBSnapshotCommand({ DBInstanceIdentifier: 'bulkdb', DBSnapshotIdentifier: `page-${String(i).padStart(2, '0')}` }));
    const ids: string[] = [];
    let marker: string | undefined;
    let pages = 0;
    do {
      const out = await p.send(new DescribeDBSnapshotsCommand({ DBInstanceIdentifier: 'bulkdb', SnapshotType: 'manual', MaxRecords: 20, Marker: marker }));
      ids.push(...(out.DBSnapshots ?? []).map((s) => s.DBSnapshotIdentifier!));
      marker = out.Marker;
      pages++;
    } while (marker);
    expect(pages).toBe(2);
    expect(ids).toHaveLength(26);
    expect(await nameOf(p.send(new DescribeDBSnapshotsCommand({ MaxRecords: 5 })))).toBe('InvalidParameterValue');
    expect(await nameOf(p.send(new DescribeDBSnapshotsCommand({ DBSnapshotIdentifier: 'nope' })))).toBe('DBSnapshotNotFoundFault');
  });

  it('denies what the role has no statement for with AccessDenied', async () => {
    expect(await nameOf(rds(PLANNER, P).send(new DeleteDBSnapshotCommand({ DBSnapshotIdentifier: 'bulk-0' })))).toBe('AccessDenied');
    expect(await nameOf(rds(SNAPSHOT_ROLE, P).send(new DeleteDBSnapshotCommand({ DBSnapshotIdentifier: 'bulk-0' })))).toBe('AccessDenied');
    expect(gw.calls.at(-1)).toMatchObject({ service: 'rds', action: 'rds:DeleteDBSnapshot', allowed: false, status: 403 });
  });

  it('restores an Aurora cluster from its snapshot, creates its instance, and both become available', async () => {
    const p = rds(SNAPSHOT_ROLE, P);
    await p.send(new CreateDBClusterSnapshotCommand({ DBClusterIdentifier: 'vectors', DBClusterSnapshotIdentifier: 'vectors-1' }));
    expect(await nameOf(p.send(new RestoreDBClusterFromSnapshotCommand({ DBClusterIdentifier: 'vectors-drill', SnapshotIdentifier: 'vectors-1', Engine: 'aurora-postgresql' })))).toBe('InvalidDBClusterSnapshotStateFault');
    for (let i = 0; i < 2; i++) await p.send(new DescribeDBClusterSnapshotsCommand({ DBClusterSnapshotIdentifier: 'vectors-1' }));
    const k = await p.send(new RestoreDBClusterFromSnapshotCommand({ DBClusterIdentifier: 'vectors-drill', SnapshotIdentifier: 'vectors-1', Engine: 'aurora-postgresql' }));
    expect(k.DBCluster).toMatchObject({ Status: 'creating', StorageEncrypted: true, KmsKeyId: SRC_KEY });
    expect(await nameOf(p.send(new RestoreDBClusterFromSnapshotCommand({ DBClusterIdentifier: 'vectors-drill', SnapshotIdentifier: 'vectors-1', Engine: 'aurora-postgresql' })))).toBe('DBClusterAlreadyExistsFault');
    await p.send(new CreateDBInstanceCommand({ DBInstanceIdentifier: 'vectors-drill-1', DBClusterIdentifier: 'vectors-drill', Engine: 'aurora-postgresql', DBInstanceClass: 'db.r6g.large' }));
    const statuses: string[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await p.send(new DescribeDBClustersCommand({ DBClusterIdentifier: 'vectors-drill' }));
      const m = await p.send(new DescribeDBInstancesCommand({ Filters: [{ Name: 'db-cluster-id', Values: ['vectors-drill'] }] }));
      statuses.push(`${c.DBClusters![0].Status}/${m.DBInstances!.map((x) => x.DBInstanceStatus).join(',')}`);
    }
    // Each Describe that returns a creating resource moves it on; two to become available.
    expect(statuses).toEqual(['creating/creating', 'creating/creating', 'available/available']);
    const c = await p.send(new DescribeDBClustersCommand({ DBClusterIdentifier: 'vectors-drill' }));
    expect(c.DBClusters![0].DBClusterMembers).toEqual([{ DBInstanceIdentifier: 'vectors-drill-1', IsClusterWriter: true }]);
    expect(await nameOf(p.send(new DeleteDBClusterCommand({ DBClusterIdentifier: 'vectors-drill', SkipFinalSnapshot: true })))).toBe('InvalidDBClusterStateFault');
  });
});
