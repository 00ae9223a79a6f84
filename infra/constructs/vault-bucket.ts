// The vault bucket of one region and the bucket receiving its server access
// logs. The vault bucket: SSE-KMS with the region's vault key (bucket keys on,
// fewer KMS calls), versioning, all public access blocked, TLS-only policy,
// access logs, optional Object Lock with a default retention, and lifecycle
// rules that
//   - move pack files (packs/) to colder instant-read classes (STANDARD_IA, GLACIER_IR)
//     only where the retention keeps them long enough (deploy-config.ts);
//   - never expire a current object: what a live manifest references is
//     deleted only by the engine's retention/prune, which knows the references;
//   - expire noncurrent versions (left by prune and lock release) after a
//     grace period, clean up expired delete markers, abort incomplete uploads.
// Replication to the DR region is the engine's replicate step, not S3
// replication (see infra/README-deploy.md).
// The bucket policy, besides TLS only, denies deleting vault objects to every
// principal but the retention role(s) (locks/ and staging/ excepted: every
// writer removes its own lock, a partitioned backup its staging) and denies
// deleting object versions and audit records (vault/audit/, the append-only
// audit log) to everyone: noncurrent versions leave only by
// lifecycle, after the grace period. An explicit deny holds whatever IAM
// policy a principal has.
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { acknowledge } from '../nag.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import type { LifecyclePlan } from '../deploy-config.ts';

export interface VaultBucketProps {
  readonly bucketName: string;
  readonly accessLogBucketName: string;
  /** Key prefix of the vault in the bucket (objects live under `<prefix>/`). */
  readonly vaultPrefix: string;
  /** The region's vault key. */
  readonly encryptionKey: kms.IKey;
  /** The only principals (role ARNs) that may delete vault objects other than locks and staging. */
  readonly deleterRoleArns: string[];
  readonly lifecycle: LifecyclePlan;
  /** S3 Object Lock default retention. @default no Object Lock */
  readonly objectLock?: { readonly mode: 'governance' | 'compliance'; readonly days: number };
  /** Days access logs are kept. @default 365 */
  readonly accessLogRetentionDays?: number;
  /** @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

const BUCKET_NAME = /^(?!xn--)(?!.*-s3alias$)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

export class VaultBucket extends Construct {
  public readonly bucket: s3.Bucket;
  public readonly accessLogBucket: s3.Bucket;
  public readonly vaultPrefix: string;

  constructor(scope: Construct, id: string, props: VaultBucketProps) {
    super(scope, id);
    for (const [field, name] of [['bucketName', props.bucketName], ['accessLogBucketName', props.accessLogBucketName]] as const) {
      if (!BUCKET_NAME.test(name)) {
        throw new ConfigError(`${id}.${field}: "${name}" is not a valid S3 bucket name (3-63 lowercase letters, digits and -); shorten aws.stackPrefix`);
      }
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9/_.-]*[^/]$/.test(props.vaultPrefix)) {
      throw new ConfigError(`${id}.vaultPrefix: expected a key prefix without a trailing slash, got "${props.vaultPrefix}"`);
    }
    const l = props.lifecycle;
    if (l.infrequentAccessAfterDays !== undefined && l.glacierInstantRetrievalAfterDays !== undefined &&
        l.glacierInstantRetrievalAfterDays < l.infrequentAccessAfterDays + 30) {
      throw new ConfigError(
        `aws.lifecycle.glacierInstantRetrievalAfterDays: ${l.glacierInstantRetrievalAfterDays} must be at least 30 days after ` +
          `infrequentAccessAfterDays (${l.infrequentAccessAfterDays}); S3 keeps objects in STANDARD_IA for 30 days first`,
      );
    }
    this.vaultPrefix = props.vaultPrefix;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;

    this.accessLogBucket = new s3.Bucket(this, 'AccessLogs', {
      bucketName: props.accessLogBucketName,
      // Server access logging delivers only to SSE-S3 buckets.
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy,
      lifecycleRules: [{
        id: 'expire-access-logs',
        expiration: Duration.days(props.accessLogRetentionDays ?? 365),
        noncurrentVersionExpiration: Duration.days(1),
        abortIncompleteMultipartUploadAfter: Duration.days(1),
      }],
    });
    acknowledge(this.accessLogBucket, [
      { rule: 'AwsSolutions-S1', reason: 'This bucket is the server access log destination of the vault bucket; logging it into itself would loop.' },
    ]);

    // Pack files (memvault/2: tens of MiB each, well above the 128 KiB minimum billable size of
    // the colder classes) go colder; the chunk index (index/) is read by every backup and stays.
    const packs = `${props.vaultPrefix}/packs/`;
    const transitions: s3.Transition[] = [];
    if (l.infrequentAccessAfterDays !== undefined) {
      transitions.push({ storageClass: s3.StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(l.infrequentAccessAfterDays) });
    }
    if (l.glacierInstantRetrievalAfterDays !== undefined) {
      transitions.push({ storageClass: s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, transitionAfter: Duration.days(l.glacierInstantRetrievalAfterDays) });
    }
    const lifecycleRules: s3.LifecycleRule[] = [
      {
        id: 'noncurrent-versions-and-uploads',
        // No `expiration` here or anywhere: current objects are removed only by prune.
        noncurrentVersionExpiration: Duration.days(l.noncurrentVersionDays),
        expiredObjectDeleteMarker: true,
        abortIncompleteMultipartUploadAfter: Duration.days(1),
      },
    ];
    if (transitions.length) {
      lifecycleRules.push({ id: 'colder-chunks', prefix: packs, transitions });
    }

    this.bucket = new s3.Bucket(this, 'Vault', {
      bucketName: props.bucketName,
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: props.encryptionKey,
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogBucket,
      serverAccessLogsPrefix: `${props.bucketName}/`,
      objectLockEnabled: props.objectLock !== undefined,
      objectLockDefaultRetention: props.objectLock
        ? props.objectLock.mode === 'compliance'
          ? s3.ObjectLockRetention.compliance(Duration.days(props.objectLock.days))
          : s3.ObjectLockRetention.governance(Duration.days(props.objectLock.days))
        : undefined,
      lifecycleRules,
      removalPolicy,
    });
    this.node.addMetadata('memvault:lifecycle', l.reason);
    if (props.deleterRoleArns.length === 0) throw new ConfigError(`${id}.deleterRoleArns: name the retention role that prunes the vault`);
    const vaultObjects = this.bucket.arnForObjects(`${props.vaultPrefix}/*`);
    this.bucket.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'OnlyRetentionDeletesVaultObjects',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['s3:DeleteObject'],
      notResources: [
        this.bucket.arnForObjects(`${props.vaultPrefix}/locks/*`),
        this.bucket.arnForObjects(`${props.vaultPrefix}/staging/*`),
      ],
      conditions: { ArnNotEquals: { 'aws:PrincipalArn': props.deleterRoleArns } },
    }));
    // The audit log is append-only: no principal, the retention role included, deletes a record.
    this.bucket.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'NoAuditLogDeletes',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['s3:DeleteObject'],
      resources: [this.bucket.arnForObjects(`${props.vaultPrefix}/audit/*`)],
    }));
    this.bucket.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'NoVersionDeletes',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['s3:DeleteObjectVersion'],
      resources: [vaultObjects],
    }));
  }

  /** ARN pattern of the vault's objects. */
  vaultObjectsArn(): string {
    return this.bucket.arnForObjects(`${this.vaultPrefix}/*`);
  }
}
