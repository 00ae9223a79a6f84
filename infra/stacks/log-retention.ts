import * as logs from 'aws-cdk-lib/aws-logs';

/** A config's retention in days (validated against CloudWatch's list) as RetentionDays. */
export function logRetention(days: number): logs.RetentionDays {
  return days as logs.RetentionDays;
}
