// verify-drill with a service-snapshot component: the drill checks that the
// snapshot and its DR copy recorded in the manifest are still there and
// available, without creating (and paying for) a database; a missing copy
// fails the drill with an alert naming the component.
import { describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { DescribeDBSnapshotsCommand, RDSClient, RestoreDBInstanceFromDBSnapshotCommand } from '@aws-sdk/client-rds';
import { manifestKey, type Manifest } from '../../functions/core/manifest.ts';
import { openVault } from '../../functions/services.ts';
import { makeRdsSnapshotDriver } from '../../functions/components/rds-snapshot.ts';
import { driverFor } from '../../functions/components/registry.ts';
import { alerts, platformFixture, run } from './helpers.ts';

const SNAP = 'memvault-orders-db-20260101-020000';
const rec = (region: string) => ({ id: SNAP, arn: `arn:aws:rds:${region}:111111111111:snapshot:${SNAP}`, region, status: 'available', encrypted: true, kmsKeyId: `arn:aws:kms:${region}:111111111111:key/k`, allocatedGiB: 20 });
const described = (region: string, status = 'available') => ({
  DBSnapshots: [{ DBSnapshotIdentifier: SNAP, DBSnapshotArn: rec(region).arn, DBInstanceIdentifier: 'orders', Status: status, Encrypted: true, SnapshotType: 'manual' }],
});

async function setup() {
  const f = await platformFixture({
    'orders-db': { kind: 'rds-snapshot', instanceId: 'orders', region: 'eu-west-1', drRegion: 'eu-central-1', drKmsKeyId: 'arn:aws:kms:eu-central-1:111111111111:key/k2' },
  });
  const vault = await openVault(f.cfg, 'primary');
  const t = new Date('2026-01-01T02:00:00Z');
  const m: Manifest = {
    format: 'memvault-manifest/1', id: '20260101-0rd3r5db', component: 'orders-db', kind: 'rds-snapshot', type: 'full',
    startedAt: t.toISOString(), finishedAt: t.toISOString(), host: 'test', entries: [], warnings: [],
    stats: { bytesRead: 0, bytesTotal: 0, bytesUnchanged: 0, newBytes: 0, bytesStored: 0, chunksTotal: 0, chunksNew: 0, entries: 0, durationMs: 0 },
    driver: { resource: 'instance', sourceId: 'orders', engine: 'postgres', region: 'eu-west-1', startedAt: t.toISOString(), readyAt: t.toISOString(), reused: false, snapshot: rec('eu-west-1'), drCopy: rec('eu-central-1') },
  };
  await vault.writeManifest(manifestKey('orders-db', t, 'full', m.id), m);
  const primary = new RDSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
  const dr = new RDSClient({ region: 'eu-central-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
  const driver = makeRdsSnapshotDriver({ client: (region) => (region === 'eu-west-1' ? primary : dr) });
  return { f, pm: mockClient(primary), dm: mockClient(dr), deps: { driverFor: (k: string) => (k === 'rds-snapshot' ? driver : driverFor(k)) } };
}

describe('verify-drill of a service-snapshot component', () => {
  it('checks the snapshot and its DR copy, and restores no database', async () => {
    const { f, pm, dm, deps } = await setup();
    pm.on(DescribeDBSnapshotsCommand).resolves(described('eu-west-1'));
    dm.on(DescribeDBSnapshotsCommand).resolves(described('eu-central-1'));
    const r = await run(f, 'verify-drill', { components: ['orders-db'] }, { deps });
    expect(r.status, r.cause).toBe('SUCCEEDED');
    expect(pm.commandCalls(DescribeDBSnapshotsCommand)[0].args[0].input).toMatchObject({ DBSnapshotIdentifier: SNAP });
    expect(dm.commandCalls(DescribeDBSnapshotsCommand)).toHaveLength(1);
    expect(pm.commandCalls(RestoreDBInstanceFromDBSnapshotCommand)).toHaveLength(0);
  });

  it('fails and alerts, naming the component, when the DR copy is gone', async () => {
    const { f, pm, dm, deps } = await setup();
    pm.on(DescribeDBSnapshotsCommand).resolves(described('eu-west-1'));
    dm.on(DescribeDBSnapshotsCommand).rejects(Object.assign(new Error(`DBSnapshot ${SNAP} not found.`), { name: 'DBSnapshotNotFoundFault', $metadata: { httpStatusCode: 404 } }));
    const r = await run(f, 'verify-drill', { components: ['orders-db'] }, { deps });
    expect(r.status).toBe('FAILED');
    const a = await alerts(f);
    expect(a.some((x) => x.component === 'orders-db' && /eu-central-1/.test(`${x.message} ${x.cause ?? ''}`))).toBe(true);
  });
});
