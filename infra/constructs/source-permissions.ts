// What the function groups' roles (infra/function-groups.ts) may do to the
// configured sources and restore targets, beyond the vaults (granted in
// RegionStack). Each capability goes only to the roles that need it:
//   rds-snapshot / aurora-snapshot (instance / cluster snapshots, Aurora and
//   DocumentDB share the RDS API):
//     create        (snapshot group) rds:CreateDB(Cluster)Snapshot on the
//                   configured source ARN and on snapshots named memvault-*
//                   (snapshotIdFor) in its region
//     tag           (snapshot group) rds:AddTagsToResource on memvault-*
//                   snapshots, only with the memvault:managed=true request tag
//     copy to DR    (snapshot group) rds:CopyDB(Cluster)Snapshot from memvault-*
//                   in the region to memvault-* in drRegion; kms:CreateGrant /
//                   kms:DescribeKey on drKmsKeyId, only via RDS in drRegion (and
//                   grants only for AWS resources)
//     retention     (retention group) rds:DeleteDB(Cluster)Snapshot on memvault-*
//                   in both regions, only where the snapshot carries memvault:managed=true
//     restore       (restore group) rds:Restore* and rds:CreateDBInstance (Aurora
//                   members), only with the memvault:managed=true request tag
//                   (restores tag the new instance/cluster); the target's name is
//                   an operator's input, so db:* / cluster:* in the regions involved
//     describe      rds:Describe* of instances, clusters, snapshots, automated
//                   backups: list calls with filters, evaluated on "*"
//   The DR stack's roles get only describe, restore and the key grant in its region.
//   s3-prefix on AWS S3 (backup group, primary): s3:ListBucket on the bucket
//   (under the prefix), s3:GetObject on bucket/prefix*, and kms:Decrypt through
//   S3 on the component's kmsKeyArn. Restores (restore group) write only the
//   bucket/prefix of aws.restoreTargets.<component> (Put, multipart abort, and
//   the reads validation makes); a restore naming another bucket is denied.
//   ssm-config (backup group, primary): ssm:GetParametersByPath / GetParameter(s)
//   on exactly the parameter paths (recursively), ssm:DescribeParameters
//   (not scopable), secretsmanager:GetSecretValue / DescribeSecret on the named
//   secrets and the secret prefixes, ListSecrets (not scopable). Restores with
//   `to: aws` (restore group) may put parameters and put or create secrets
//   under aws.restoreTargets.<component> paths and prefixes, by default the
//   component's own, and read them back.
//   Database credentials (backup and restore groups): GetSecretValue /
//   DescribeSecret on aws.databaseSecrets and on every secretArn of a component.
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { acknowledge } from '../nag.ts';
import { databaseSecretNeeds, type DeployConfig, type S3Source, type SnapshotSource } from '../deploy-config.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import type { RestoreTarget } from '../../functions/core/aws-config.ts';

/** What a group of roles may do with the sources (function-groups.ts decides who). */
export type SourceCapability = 'snapshot-describe' | 'snapshot-create' | 'snapshot-delete' | 'snapshot-restore' | 'source-read' | 'source-restore';

/** An ssm-config component, as the IAM statements need it. */
export interface SsmSource {
  component: string;
  region: string;
  parameterPaths: string[];
  /** Secrets by name or ARN. */
  secrets: string[];
  secretPrefixes: string[];
  /** The drill's scratch parameter path and secret prefix (ssm-config drill). */
  drill?: { region: string; parameterPath: string; secretPrefix: string };
}

export interface SourcePermissionsProps {
  /** The roles that get a capability (none: the capability is not granted). */
  readonly rolesFor: (capability: SourceCapability) => iam.IRole[];
  readonly account: string;
  /** e.g. the stack's partition token. */
  readonly partition: string;
  readonly snapshots: SnapshotSource[];
  readonly s3Sources: S3Source[];
  /** @default none */
  readonly ssmSources?: SsmSource[];
  /** aws.restoreTargets, by component. @default none */
  readonly restoreTargets?: Record<string, RestoreTarget>;
  /** Secrets Manager ARNs of database credentials (aws.databaseSecrets and the components' secretArn fields). @default none */
  readonly databaseSecretArns?: string[];
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
    // A statement is built once per role that gets it (a PolicyStatement belongs to one document).
    const grantTo = (capability: SourceCapability) => (make: () => iam.PolicyStatement) => {
      for (const role of props.rolesFor(capability)) {
        const st = make();
        role.addToPrincipalPolicy(st);
        this.statements.push(st);
      }
    };
    const describe = grantTo('snapshot-describe');
    const creator = grantTo('snapshot-create');
    const deleter = grantTo('snapshot-delete');
    const restorer = grantTo('snapshot-restore');
    const reader = grantTo('source-read');
    const restoreWriter = grantTo('source-restore');
    const snaps = props.regionRole === 'primary'
      ? props.snapshots
      : props.snapshots.filter((s) => s.drRegion !== undefined);
    const snapType = (s: SnapshotSource) => (s.resource === 'instance' ? 'snapshot' : 'cluster-snapshot');
    const srcType = (s: SnapshotSource) => (s.resource === 'instance' ? 'db' : 'cluster');

    if (snaps.length) {
      describe(() => new iam.PolicyStatement({
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
        creator(() => new iam.PolicyStatement({
          sid: `Create${P}Snapshots`,
          actions: [create],
          resources: uniq([...list.map((s) => rds(s.region, srcType(s), s.sourceId)), ...ownSnapshots(['src'])]),
        }));
        creator(() => new iam.PolicyStatement({
          sid: `Tag${P}Snapshots`,
          actions: ['rds:AddTagsToResource'],
          resources: ownSnapshots(['src', 'dr']),
          conditions: { StringEquals: { [`aws:RequestTag/${MANAGED_TAG}`]: 'true' } },
        }));
        const copied = list.filter((s) => s.drRegion);
        if (copied.length) {
          creator(() => new iam.PolicyStatement({
            sid: `Copy${P}SnapshotsToDr`,
            actions: [copy],
            resources: uniq(copied.flatMap((s) => [rds(s.region, snapType(s), SNAPSHOT_NAME_PATTERN), rds(s.drRegion!, snapType(s), SNAPSHOT_NAME_PATTERN)])),
          }));
        }
        deleter(() => new iam.PolicyStatement({
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
      restorer(() => new iam.PolicyStatement({
        sid: 'RestoreIntoNewTaggedDatabases',
        actions,
        resources,
        conditions: { StringEquals: { [`aws:RequestTag/${MANAGED_TAG}`]: 'true' } },
      }));
      restorer(() => new iam.PolicyStatement({
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
      // Copies (primary) and restores from them (both regions) use the DR key through RDS.
      const keyUsers = (make: () => iam.PolicyStatement) => {
        if (props.regionRole === 'primary') creator(make);
        restorer(make);
      };
      if (k.keyArns.size) {
        // kms:GrantIsForAWSResource exists only in a CreateGrant request: a condition on it
        // would deny DescribeKey, so DescribeKey has its own statement (via RDS only).
        keyUsers(() => new iam.PolicyStatement({
          sid: `DrSnapshotKey${pascalRegion}`,
          actions: ['kms:CreateGrant'],
          resources: [...k.keyArns].sort(),
          conditions: { StringEquals: via, Bool: { 'kms:GrantIsForAWSResource': 'true' } },
        }));
        keyUsers(() => new iam.PolicyStatement({
          sid: `DrSnapshotKeyDescribe${pascalRegion}`,
          actions: ['kms:DescribeKey'],
          resources: [...k.keyArns].sort(),
          conditions: { StringEquals: via },
        }));
      }
      if (k.aliases.size) {
        keyUsers(() => new iam.PolicyStatement({
          sid: `DrSnapshotKeyByAlias${pascalRegion}`,
          actions: ['kms:CreateGrant'],
          resources: [`arn:${partition}:kms:${k.region}:${account}:key/*`],
          conditions: {
            StringEquals: via,
            Bool: { 'kms:GrantIsForAWSResource': 'true' },
            'ForAnyValue:StringEquals': { 'kms:ResourceAliases': [...k.aliases].sort() },
          },
        }));
        keyUsers(() => new iam.PolicyStatement({
          sid: `DrSnapshotKeyDescribeByAlias${pascalRegion}`,
          actions: ['kms:DescribeKey'],
          resources: [`arn:${partition}:kms:${k.region}:${account}:key/*`],
          conditions: { StringEquals: via, 'ForAnyValue:StringEquals': { 'kms:ResourceAliases': [...k.aliases].sort() } },
        }));
      }
    }

    const pascalOf = (name: string) => name.split(/[^A-Za-z0-9]+/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
    const s3Arn = (bucket: string, rest = '') => `arn:${partition}:s3:::${bucket}${rest}`;
    if (props.regionRole === 'primary') {
      for (const src of props.s3Sources) {
        const bucketArn = s3Arn(src.bucket);
        const safe = pascalOf(src.component);
        reader(() => new iam.PolicyStatement({
          sid: `ListS3Source${safe}`,
          actions: ['s3:ListBucket'],
          resources: [bucketArn],
          ...(src.prefix ? { conditions: { StringLike: { 's3:prefix': [`${src.prefix}*`] } } } : {}),
        }));
        reader(() => new iam.PolicyStatement({
          sid: `ReadS3Source${safe}`,
          actions: ['s3:GetObject'],
          resources: [`${bucketArn}/${src.prefix}*`],
        }));
        if (src.kmsKeyArn) {
          // SSE-KMS objects decrypt as the caller, through S3 in the key's region.
          reader(() => new iam.PolicyStatement({
            sid: `DecryptS3Source${safe}`,
            actions: ['kms:Decrypt'],
            resources: [src.kmsKeyArn!],
            conditions: { StringEquals: { 'kms:ViaService': `s3.${src.kmsKeyArn!.split(':')[3]}.amazonaws.com` } },
          }));
        }
      }
    }

    // s3-prefix restores into a bucket: only the configured target.
    for (const src of props.s3Sources) {
      const t = props.restoreTargets?.[src.component];
      if (!t?.bucket) continue;
      const safe = pascalOf(src.component);
      const prefix = t.prefix.replace(/^\/+/, '');
      restoreWriter(() => new iam.PolicyStatement({
        sid: `ListS3RestoreTarget${safe}`,
        actions: ['s3:ListBucket'],
        resources: [s3Arn(t.bucket!)],
        ...(prefix ? { conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } } } : {}),
      }));
      restoreWriter(() => new iam.PolicyStatement({
        sid: `WriteS3RestoreTarget${safe}`,
        actions: ['s3:PutObject', 's3:GetObject', 's3:AbortMultipartUpload'],
        resources: [s3Arn(t.bucket!, `/${prefix}*`)],
      }));
      if (t.kmsKeyArn) {
        restoreWriter(() => new iam.PolicyStatement({
          sid: `EncryptS3RestoreTarget${safe}`,
          actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
          resources: [t.kmsKeyArn!],
          conditions: { StringEquals: { 'kms:ViaService': `s3.${t.kmsKeyArn!.split(':')[3]}.amazonaws.com` } },
        }));
      }
    }

    // s3-prefix drills: restore into, validate and empty the scratch prefix.
    for (const src of props.s3Sources) {
      if (!src.drill) continue;
      const safe = pascalOf(src.component);
      const prefix = src.drill.prefix;
      restoreWriter(() => new iam.PolicyStatement({
        sid: `ListS3DrillTarget${safe}`,
        actions: ['s3:ListBucket'],
        resources: [s3Arn(src.drill!.bucket)],
        conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
      }));
      restoreWriter(() => new iam.PolicyStatement({
        sid: `UseS3DrillTarget${safe}`,
        actions: ['s3:PutObject', 's3:GetObject', 's3:DeleteObject', 's3:AbortMultipartUpload'],
        resources: [s3Arn(src.drill!.bucket, `/${prefix}*`)],
      }));
    }

    // ssm-config: parameters by path, secrets by name and prefix.
    const paramArns = (region: string, paths: string[]) => uniq(paths.flatMap((p) => {
      const name = p.replace(/^\/+/, '').replace(/\/+$/, '');
      return [`arn:${partition}:ssm:${region}:${account}:parameter/${name}`, `arn:${partition}:ssm:${region}:${account}:parameter/${name}/*`];
    }));
    const secretArns = (region: string, names: string[], prefixes: string[]) => uniq([
      ...names.map((n) => (n.startsWith('arn:') ? partialSecretArn(n) : `arn:${partition}:secretsmanager:${region}:${account}:secret:${n}-??????`)),
      ...prefixes.map((p) => `arn:${partition}:secretsmanager:${region}:${account}:secret:${p}*`),
    ]);
    const ssm = props.ssmSources ?? [];
    for (const src of ssm) {
      const safe = pascalOf(src.component);
      if (props.regionRole === 'primary') {
        if (src.parameterPaths.length) {
          reader(() => new iam.PolicyStatement({
            sid: `ReadParameters${safe}`,
            actions: ['ssm:GetParametersByPath', 'ssm:GetParameters', 'ssm:GetParameter'],
            resources: paramArns(src.region, src.parameterPaths),
          }));
        }
        if (src.secrets.length || src.secretPrefixes.length) {
          reader(() => new iam.PolicyStatement({
            sid: `ReadSecrets${safe}`,
            actions: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
            resources: secretArns(src.region, src.secrets, src.secretPrefixes),
          }));
        }
      }
      if (src.drill) {
        // Drills restore under the scratch path and prefix, then delete what they made.
        const d = src.drill;
        restoreWriter(() => new iam.PolicyStatement({
          sid: `DrillParameters${safe}`,
          actions: ['ssm:PutParameter', 'ssm:AddTagsToResource', 'ssm:GetParameters', 'ssm:GetParameter', 'ssm:GetParametersByPath', 'ssm:DeleteParameter', 'ssm:DeleteParameters'],
          resources: paramArns(d.region, [d.parameterPath]),
        }));
        restoreWriter(() => new iam.PolicyStatement({
          sid: `DrillSecrets${safe}`,
          actions: ['secretsmanager:PutSecretValue', 'secretsmanager:CreateSecret', 'secretsmanager:TagResource', 'secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret', 'secretsmanager:DeleteSecret'],
          resources: secretArns(d.region, [], [d.secretPrefix]),
        }));
      }
      const t = props.restoreTargets?.[src.component];
      const paths = t?.parameterPaths ?? src.parameterPaths;
      const prefixes = t?.secretPrefixes ?? src.secretPrefixes;
      const names = t?.secretPrefixes ? [] : src.secrets;
      if (paths.length) {
        restoreWriter(() => new iam.PolicyStatement({
          sid: `RestoreParameters${safe}`,
          actions: ['ssm:PutParameter', 'ssm:AddTagsToResource', 'ssm:GetParameters', 'ssm:GetParameter'],
          resources: paramArns(src.region, paths),
        }));
      }
      if (names.length || prefixes.length) {
        restoreWriter(() => new iam.PolicyStatement({
          sid: `RestoreSecrets${safe}`,
          actions: ['secretsmanager:PutSecretValue', 'secretsmanager:CreateSecret', 'secretsmanager:TagResource', 'secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
          resources: secretArns(src.region, names, prefixes),
        }));
      }
    }
    if (ssm.length) {
      if (props.regionRole === 'primary') {
        reader(() => new iam.PolicyStatement({
          sid: 'ListParametersAndSecrets',
          // Neither API takes a resource: the path and name filters are in the request.
          actions: ['ssm:DescribeParameters', 'secretsmanager:ListSecrets'],
          resources: ['*'],
        }));
      }
    }

    // Database credentials, read by the drivers that connect (backups and restores).
    const dbSecrets = uniq((props.databaseSecretArns ?? []).map(partialSecretArn));
    if (dbSecrets.length) {
      const readSecrets = () => new iam.PolicyStatement({
        sid: 'ReadDatabaseSecrets',
        actions: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
        resources: dbSecrets,
      });
      if (props.regionRole === 'primary') reader(readSecrets);
      restoreWriter(readSecrets);
    }

    const roles = new Set<iam.IRole>((['snapshot-describe', 'snapshot-create', 'snapshot-delete', 'snapshot-restore', 'source-read', 'source-restore'] as const).flatMap((c) => props.rolesFor(c)));
    for (const role of roles) {
      acknowledge(role, [{
        rule: 'AwsSolutions-IAM5',
        reason: 'RDS Describe* are list calls with filters that IAM evaluates on "*"; memvault names its snapshots memvault-<component>-<time> (a new name each run), so snapshot ARNs end in memvault-*, and deletes also require the memvault:managed=true tag; a restore creates an instance/cluster whose name the operator chooses at restore time (db:* / cluster:*, subnet and parameter groups by name), allowed only with the memvault:managed=true request tag; the DR key given as an alias is matched with kms:ResourceAliases; an s3-prefix source or restore target is a key prefix; parameter paths are read recursively; secrets by prefix or by name without the random 6-character suffix; ssm:DescribeParameters and secretsmanager:ListSecrets take no resource.',
        findings: [
          /^Resource::\*$/,
          /^Resource::arn:<AWS::Partition>:rds:[a-z0-9-]+:\d{12}:(snapshot|cluster-snapshot):memvault-\*$/,
          /^Resource::arn:<AWS::Partition>:rds:[a-z0-9-]+:\d{12}:(db|cluster|subgrp|pg|cluster-pg|og):\*$/,
          /^Resource::arn:<AWS::Partition>:kms:[a-z0-9-]+:\d{12}:key\/\*$/,
          /^Resource::arn:<AWS::Partition>:s3:::[^/]+\/.*\*$/,
          /^Resource::arn:<AWS::Partition>:ssm:[a-z0-9-]+:\d{12}:parameter\/.*\*$/,
          /^Resource::arn:<AWS::Partition>:secretsmanager:[a-z0-9-]+:\d{12}:secret:.*(\*|-\?\?\?\?\?\?)$/,
          /^Resource::arn:aws[a-z-]*:secretsmanager:.*-\?\?\?\?\?\?$/,
        ],
      }]);
    }
  }
}

/** A secret ARN as IAM matches it: a full ARN ends in a 6-character suffix; a partial one (without it) needs the wildcard. */
export function partialSecretArn(arn: string): string {
  return /-[A-Za-z0-9]{6}$/.test(arn) ? arn : `${arn}-??????`;
}

/** The ssm-config components of the config (region defaults to aws.region). */
export function ssmSources(cfg: DeployConfig): SsmSource[] {
  return Object.entries(cfg.components)
    .filter(([, c]) => c.kind === 'ssm-config')
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([component, c]) => {
      const s = c as unknown as { region?: string; parameterPaths?: string[]; secrets?: string[]; secretPrefixes?: string[]; drill?: { region?: string; parameterPath?: string; secretPrefix?: string } };
      const region = s.region ?? cfg.aws.region;
      const drill = s.drill
        ? { region: s.drill.region ?? region, parameterPath: s.drill.parameterPath ?? '/memvault-drill', secretPrefix: s.drill.secretPrefix ?? 'memvault-drill/' }
        : undefined;
      return { component, region, parameterPaths: s.parameterPaths ?? [], secrets: s.secrets ?? [], secretPrefixes: s.secretPrefixes ?? [], ...(drill ? { drill } : {}) };
    });
}

/** Every Secrets Manager ARN of database credentials: aws.databaseSecrets and any `secretArn` field of a component (nested ones included). */
export function databaseSecretArns(cfg: DeployConfig): string[] {
  // databaseSecretNeeds (deploy-config.ts) knows which setting names a source's
  // secret and which a restore or drill target's; the roles that read secrets
  // (backup, restore) get both.
  const needs = databaseSecretNeeds(cfg);
  return [...new Set([...needs.source, ...needs.restore])].sort();
}

/** aws.restoreTargets, checked against the components they name. Throws ConfigError naming each field. */
export function restoreTargets(cfg: DeployConfig): Record<string, RestoreTarget> {
  const problems: string[] = [];
  for (const [name, t] of Object.entries(cfg.aws.restoreTargets)) {
    const c = cfg.components[name];
    const field = `aws.restoreTargets.${name}`;
    if (!c) {
      problems.push(`${field}: no component named "${name}"; components: ${Object.keys(cfg.components).join(', ')}`);
      continue;
    }
    const s3Fields = t.bucket !== undefined || t.kmsKeyArn !== undefined;
    const ssmFields = t.parameterPaths !== undefined || t.secretPrefixes !== undefined;
    if (c.kind === 's3-prefix') {
      if (ssmFields) problems.push(`${field}: parameterPaths / secretPrefixes are for ssm-config components; ${name} is s3-prefix (give bucket and prefix)`);
      if (!t.bucket) problems.push(`${field}.bucket: name the bucket restores of ${name} may write`);
    } else if (c.kind === 'ssm-config') {
      if (s3Fields) problems.push(`${field}: bucket / kmsKeyArn are for s3-prefix components; ${name} is ssm-config (give parameterPaths and secretPrefixes)`);
    } else {
      problems.push(`${field}: restore targets are for s3-prefix and ssm-config components; ${name} is ${c.kind}`);
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return cfg.aws.restoreTargets;
}
