// CloudTrail data events of a vault bucket: every GetObject, PutObject and
// DeleteObject on the vault's objects, who made it and from where, in a trail
// of the vault's region. The log files go to the access-log bucket under
// cloudtrail/ (kept as long as the S3 access logs) with log file validation,
// so a log file changed or removed after delivery shows in
// `aws cloudtrail validate-logs`. Management events are left to the account's
// own trail (one per account is the norm); this trail records only the vault.
import * as cloudtrail from 'aws-cdk-lib/aws-cloudtrail';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { acknowledge } from '../nag.ts';

export interface VaultAuditTrailProps {
  readonly trailName: string;
  /** The vault bucket and the key prefix of its objects (without the trailing slash). */
  readonly vaultBucket: s3.IBucket;
  readonly vaultPrefix: string;
  /** Where the log files go (the vault's access-log bucket). */
  readonly logBucket: s3.IBucket;
}

export class VaultAuditTrail extends Construct {
  public readonly trail: cloudtrail.Trail;

  constructor(scope: Construct, id: string, props: VaultAuditTrailProps) {
    super(scope, id);
    this.trail = new cloudtrail.Trail(this, 'Trail', {
      trailName: props.trailName,
      bucket: props.logBucket,
      s3KeyPrefix: 'cloudtrail',
      enableFileValidation: true,
      includeGlobalServiceEvents: false,
      isMultiRegionTrail: false,
      managementEvents: cloudtrail.ReadWriteType.NONE,
    });
    this.trail.addS3EventSelector([{ bucket: props.vaultBucket, objectPrefix: `${props.vaultPrefix}/` }], {
      readWriteType: cloudtrail.ReadWriteType.ALL,
      includeManagementEvents: false,
    });
    acknowledge(this.trail, [
      { rule: 'AwsSolutions-S1', reason: 'The trail writes into the access-log bucket, which is the log destination itself.' },
    ]);
  }
}
