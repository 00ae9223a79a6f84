// What the backup service role may do to the configured sources, beyond the
// vaults (granted in RegionStack):
//   rds-snapshot / aurora-snapshot (instance / cluster snapshots, Aurora and
//   DocumentDB share the RDS API):
//     create        rds:CreateDB(Cluster)Snapshot on the configured source ARN
//                   and on snapshots named memvault-* (snapshotIdFor) in its region
//     tag           rds:AddTagsToResource on memvault-* snapshots, only with the
//                   memvault:managed=true request tag
//     copy to DR    rds:CopyDB(Cluster)Snapshot from memvault-* in the region to
//                   memvault-* in drRegion; kms:CreateGrant / kms:DescribeKey on
//                   drKmsKeyId, only via RDS in drRegion (and grants only for AWS resources)
//     retention     rds:DeleteDB(Cluster)Snapshot on memvault-* in both regions,
//                   only where the snapshot carries memvault:managed=true
//     restore       rds:Restore* and rds:CreateDBInstance (Aurora members), only
//                   with the memvault:managed=true request tag (restores tag the
//                   new instance/cluster); the target's name is an operator's
//                   input, so db:* / cluster:* in the regions involved
//     describe      rds:Describe* of instances, clusters, snapshots, automated
//                   backups: list calls with filters, evaluated on "*"
//   The DR stack's role gets only describe, restore and the key grant in its region.
//   s3-prefix on AWS S3: s3:ListBucket on the bucket (under the prefix) and
//   s3:GetObject on bucket/prefix*.
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { acknowledge } from '../nag.ts';
import type { S3Source, SnapshotSource } from '../deploy-config.ts';

export interface SourcePermissionsProps {
  readonly role: iam.IRole;
  readonly account: string;
  /** e.g. the stack's partition token. */
  readonly partition: string;
  readonly snapshots: SnapshotSource[];
  readonly s3Sources: S3Source[];
  /**
   * 'primary': snapshots, copies, retention and restores in both regions;
   * 'dr': restores (and describes) in `drRegion` only.
   */
  readonly regionRole: 'primary' | 'dr';
}

export const MANAGED_TAG = 'memvault:managed';
export const SNAPSHOT_NAME_PATTERN = 'memvault-*';

const RESTORE_ACTIONS = {
  instance: ['rds:RestoreDBInstanceFromDBSnapshot', 'rds:RestoreDBInstanceToPointInTime'],
  cluster: ['rds:RestoreDBClusterFromSnapshot', 'rds:RestoreDBClusterToPointInTime', 'rds:CreateDBInstance'],
};

export const RDS_DESCRIBE_ACTIONS = [
  'rds:DescribeDBInstances', 'rds:DescribeDBClusters', 'rds:DescribeDBSnapshots', 'rds:DescribeDBClusterSnapshots',
  'rds:DescribeDBInstanceAutomatedBackups', 'rds:DescribeDBClusterAutomatedBackups',
];

export class SourcePermissions extends Construct {
  /** The statements added to the role (for inspection). */
  public readonly statements: iam.PolicyStatement[] = [];

  constructor(scope: Construct, id: string, props: SourcePermissionsProps) {
    super(scope, id);
    const { account, partition } = props;
    const rds = (region: string, type: string, name: string) => `arn:${partition}:rds:${region}:${account}:${type}:${name}`;
    const uniq = (xs: string[]) => [...new Set(xs)].sort();
    const add = (s: iam.PolicyStatement) => {
      props.role.addToPrincipalPolicy(s);
      this.statements.push(s);
    };
    const snaps = props.regionRole === 'primary'
      ? props.snapshots
      : props.snapshots.filter((s) => s.drRegion !== undefined);
    const snapType = (s: SnapshotSource) => (s.resource === 'instance' ? 'snapshot' : 'cluster-snapshot');
    const srcType = (s: SnapshotSource) => (s.resource === 'instance' ? 'db' : 'cluster');

    if (snaps.length) {
      add(new iam.PolicyStatement({
        sid: 'DescribeDatabasesAndSnapshots',
        actions: RDS_DESCRIBE_ACTIONS,
        resources: ['*'],
      }));
    }

    if (props.regionRole === 'primary') {
      for (const resource of ['instance', 'cluster'] as const) {
        const list = snaps.filter((s) => s.resource === resource);
        if (!list.length) continue;
        const P = resource === 'instance' ? 'Instance' : 'Cluster';
        const create = resource === 'instance' ? 'rds:CreateDBSnapshot' : 'rds:CreateDBClusterSnapshot';
        const copy = resource === 'instance' ? 'rds:CopyDBSnapshot' : 'rds:CopyDBClusterSnapshot';
        const del = resource === 'instance' ? 'rds:DeleteDBSnapshot' : 'rds:DeleteDBClusterSnapshot';
        const ownSnapshots = (regions: (string | undefined)[]) =>
          uniq(list.flatMap((s) => regions.map((r) => (r === 'src' ? s.region : r === 'dr' ? s.drRegion : r)).filter((r): r is string => !!r).map((r) => rds(r, snapType(s), SNAPSHOT_NAME_PATTERN))));
        add(new iam.PolicyStatement({
          sid: `Create${P}Snapshots`,
          actions: [create],
          resources: uniq([...list.map((s) => rds(s.region, srcType(s), s.sourceId)), ...ownSnapshots(['src'])]),
        }));
        add(new iam.PolicyStatement({
          sid: `Tag${P}Snapshots`,
          actions: ['rds:AddTagsToResource'],
          resources: ownSnapshots(['src', 'dr']),
          conditions: { StringEquals: { [`aws:RequestTag/${MANAGED_TAG}`]: 'true' } },
        }));
        const copied = list.filter((s) => s.drRegion);
        if (copied.length) {
          add(new iam.PolicyStatement({
            sid: `Copy${P}SnapshotsToDr`,
            actions: [copy],
            resources: uniq(copied.flatMap((s) => [rds(s.region, snapType(s), SNAPSHOT_NAME_PATTERN), rds(s.drRegion!, snapType(s), SNAPSHOT_NAME_PATTERN)])),
          }));
        }
        add(new iam.PolicyStatement({
          sid: `DeleteOwn${P}Snapshots`,
          actions: [del],
          resources: ownSnapshots(['src', 'dr']),
          conditions: { StringEquals: { [`aws:ResourceTag/${MANAGED_TAG}`]: 'true' } },
        }));
      }
    }

    // Restores into new instances/clusters, tagged as memvault's.
    const restoreRegions = (s: SnapshotSource) => (props.regionRole === 'primary' ? [s.region, s.drRegion] : [s.drRegion]).filter((r): r is string => !!r);
    if (snaps.length) {
      const actions = uniq(snaps.flatMap((s) => RESTORE_ACTIONS[s.resource]));
      const resources = uniq(snaps.flatMap((s) => restoreRegions(s).flatMap((r) => [
        rds(r, srcType(s), '*'),
        rds(r, snapType(s), SNAPSHOT_NAME_PATTERN),
        rds(r, 'subgrp', '*'),
        rds(r, s.resource === 'instance' ? 'pg' : 'cluster-pg', '*'),
        ...(s.resource === 'instance' ? [rds(r, 'og', '*')] : [rds(r, 'pg', '*')]),
      ])));
      add(new iam.PolicyStatement({
        sid: 'RestoreIntoNewTaggedDatabases',
        actions,
        resources,
        conditions: { StringEquals: { [`aws:RequestTag/${MANAGED_TAG}`]: 'true' } },
      }));
      add(new iam.PolicyStatement({
        sid: 'TagRestoredDatabases',
        actions: ['rds:AddTagsToResource'],
        resources: uniq(snaps.flatMap((s) => restoreRegions(s).map((r) => rds(r, srcType(s), '*')))),
        conditions: { StringEquals: { [`aws:RequestTag/${MANAGED_TAG}`]: 'true' } },
      }));
    }

    // The DR key that encrypts the copies (and that restores from them use).
    const drKeys = new Map<string, { region: string; keyArns: Set<string>; aliases: Set<string> }>();
    for (const s of snaps) {
      if (!s.drRegion || !s.drKmsKeyId) continue;
      const k = drKeys.get(s.drRegion) ?? { region: s.drRegion, keyArns: new Set<string>(), aliases: new Set<string>() };
      const id = s.drKmsKeyId;
      if (/^arn:[^:]+:kms:[^:]+:\d{12}:key\//.test(id)) k.keyArns.add(id);
      else if (/^arn:[^:]+:kms:[^:]+:\d{12}:alias\//.test(id)) k.aliases.add(id.slice(id.indexOf(':alias/') + 1));
      else if (id.startsWith('alias/')) k.aliases.add(id);
      else k.keyArns.add(`arn:${partition}:kms:${s.drRegion}:${account}:key/${id}`);
      drKeys.set(s.drRegion, k);
    }
    for (const k of drKeys.values()) {
      const via = { 'kms:ViaService': `rds.${k.region}.amazonaws.com` };
      const pascalRegion = k.region.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
      if (k.keyArns.size) {
        add(new iam.PolicyStatement({
          sid: `DrSnapshotKey${pascalRegion}`,
          actions: ['kms:CreateGrant', 'kms:DescribeKey'],
          resources: [...k.keyArns].sort(),
          conditions: { StringEquals: via, Bool: { 'kms:GrantIsForAWSResource': 'true' } },
        }));
      }
      if (k.aliases.size) {
        add(new iam.PolicyStatement({
          sid: `DrSnapshotKeyByAlias${pascalRegion}`,
          actions: ['kms:CreateGrant', 'kms:DescribeKey'],
          resources: [`arn:${partition}:kms:${k.region}:${account}:key/*`],
          conditions: {
            StringEquals: via,
            Bool: { 'kms:GrantIsForAWSResource': 'true' },
            'ForAnyValue:StringEquals': { 'kms:ResourceAliases': [...k.aliases].sort() },
          },
        }));
      }
    }

    if (props.regionRole === 'primary') {
      for (const src of props.s3Sources) {
        const bucketArn = `arn:${partition}:s3:::${src.bucket}`;
        const safe = src.component.split(/[^A-Za-z0-9]+/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
        add(new iam.PolicyStatement({
          sid: `ListS3Source${safe}`,
          actions: ['s3:ListBucket'],
          resources: [bucketArn],
          ...(src.prefix ? { conditions: { StringLike: { 's3:prefix': [`${src.prefix}*`] } } } : {}),
        }));
        add(new iam.PolicyStatement({
          sid: `ReadS3Source${safe}`,
          actions: ['s3:GetObject'],
          resources: [`${bucketArn}/${src.prefix}*`],
        }));
      }
    }

    acknowledge(props.role, [{
      rule: 'AwsSolutions-IAM5',
      reason: 'RDS Describe* are list calls with filters that IAM evaluates on "*"; memvault names its snapshots memvault-<component>-<time> (a new name each run), so snapshot ARNs end in memvault-*, and deletes also require the memvault:managed=true tag; a restore creates an instance/cluster whose name the operator chooses at restore time (db:* / cluster:*, subnet and parameter groups by name), allowed only with the memvault:managed=true request tag; the DR key given as an alias is matched with kms:ResourceAliases; an s3-prefix source is read under its prefix.',
      findings: [
        /^Resource::\*$/,
        /^Resource::arn:<AWS::Partition>:rds:[a-z0-9-]+:\d{12}:(snapshot|cluster-snapshot):memvault-\*$/,
        /^Resource::arn:<AWS::Partition>:rds:[a-z0-9-]+:\d{12}:(db|cluster|subgrp|pg|cluster-pg|og):\*$/,
        /^Resource::arn:<AWS::Partition>:kms:[a-z0-9-]+:\d{12}:key\/\*$/,
        /^Resource::arn:<AWS::Partition>:s3:::[^/]+\/.*\*$/,
      ],
    }]);
  }
}
